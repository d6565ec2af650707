"""Generated proxies: signatures, docstrings, setters, classmethods, coverage."""

from __future__ import annotations

import functools
import inspect
import sys
import traceback
import types
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from models import User
from sqlalchemy import orm
from sqlalchemy.orm import Session, sessionmaker

from scoped import (
    AnyScopedSession,
    UnavailableMemberError,
    _sqlalchemy,
    scoped_session,
)
from scoped.proxies import Kind, Member, Releases, proxied_doc, proxy_class
from scoped.proxies._unavailable import Unavailable
from scoped.registry._lookup import LOCAL


class MyHttpClient:
    """A session-like class that has nothing to do with SQLAlchemy."""

    def __init__(self, base: str = "http://example.test") -> None:
        self.base = base
        self.closed = False

    def get(self, path: str, *, timeout: float = 1.0) -> tuple[str, float]:
        """Fetch *path* relative to the base URL.

        The timeout is in seconds.

        Returns the URL and the timeout.
        """
        return self.base + path, timeout

    def head(self, path: str) -> str:
        """Ask for the headers of *path*."""
        return path

    def options(self, path: str) -> str:
        return path

    def boom(self) -> None:
        """Fail, to show where."""
        raise ValueError("boom")

    @property
    def status(self) -> str:
        """Whether the client is closed."""
        return "closed" if self.closed else "open"

    @classmethod
    def default_base(cls) -> str:
        """The base URL clients use by default."""
        return "http://example.test"

    def close(self) -> None:
        """Release the client."""
        self.closed = True


#: What the "Proxied for" note names for classes that are not SQLAlchemy's.
CLIENT_REF = f"{MyHttpClient.__module__}.{MyHttpClient.__qualname__}"
SCOPED_REF = "scoped.session.scoped_session"


def _note(target: str, proxy: str, margin: str) -> str:
    return (
        f"{margin}.. container:: class_bases\n"
        "\n"
        f"{margin}    Proxied for the :class:`{target}` class on\n"
        f"{margin}    behalf of the :class:`{proxy}` class."
    )


@pytest.fixture
def client() -> Iterator[AnyScopedSession[MyHttpClient]]:
    """A scoped_session of a plain, non-SQLAlchemy class."""
    client = scoped_session(MyHttpClient)
    yield client
    client.remove()


# SQLAlchemy 2.1's own proxy lists; the names that 2.0 lacks are optional.
SA21_METHODS = [
    "__contains__", "__iter__", "add", "add_all", "begin", "begin_nested", "close",
    "reset", "commit", "connection", "delete", "delete_all", "execute", "expire",
    "expire_all", "expunge", "expunge_all", "flush", "get", "get_one", "get_bind",
    "is_modified", "bulk_save_objects", "bulk_insert_mappings",
    "bulk_update_mappings", "merge", "merge_all", "query", "refresh", "rollback",
    "scalar", "scalars",
]  # fmt: skip
SA21_ATTRIBUTES = [
    "bind", "binds", "dirty", "deleted", "new", "identity_map", "is_active",
    "autoflush", "no_autoflush", "info", "execution_options",
]  # fmt: skip
SA21_CLASSMETHODS = ["object_session", "identity_key"]
EXTRAS = [
    "in_transaction", "in_nested_transaction", "get_transaction",
    "get_nested_transaction", "invalidate", "prepare", "bind_mapper", "bind_table",
]  # fmt: skip
#: Added after SQLAlchemy 2.0; forwarded wherever the installed Session has
#: them, and raising UnavailableMemberError where it does not.
NEWER = {"binds", "delete_all", "merge_all", "execution_options"}
#: SQLAlchemy 2.0's deprecated classmethod, removed in 2.1.
OLDER = {"close_all"}


def _session_has(name: str) -> bool:
    return hasattr(Session(), name)


def _present(names: list[str]) -> list[str]:
    return [n for n in names if n not in NEWER or _session_has(n)]


def test_the_pinned_lists_are_sqlalchemys() -> None:
    """The pinned names are exactly what the installed SQLAlchemy's class proxies."""
    pinned = {*SA21_METHODS, *SA21_ATTRIBUTES, *SA21_CLASSMETHODS}
    theirs = {
        name
        for name in vars(orm.scoped_session)
        if not name.startswith("_") or name in {"__contains__", "__iter__"}
    } - {"configure", "remove", "query_property"}

    assert (32, 11, 2) == (
        len(SA21_METHODS),
        len(SA21_ATTRIBUTES),
        len(SA21_CLASSMETHODS),
    )
    if _session_has("merge_all"):
        assert pinned == theirs
    else:
        # 2.0 still proxies the deprecated close_all and lacks the newer names.
        assert ({"close_all"}, NEWER) == (theirs - pinned, pinned - theirs)


@pytest.mark.parametrize(
    "name", [*SA21_METHODS, *SA21_ATTRIBUTES, *SA21_CLASSMETHODS, *EXTRAS, *OLDER]
)
def test_every_session_member_is_generated(
    db: scoped_session[Session], name: str
) -> None:
    """Each name SQLAlchemy proxies in any supported release, plus the extras,
    is generated on our class, whichever release is installed."""
    assert name in vars(type(db))


def test_the_spec_lists_the_members_of_every_supported_release() -> None:
    """2.1's names are marked as added in 2.1, close_all as removed in 2.1."""
    releases = {
        member.name: member.releases
        for member in _sqlalchemy.session_spec()
        if member.releases is not None
    }

    assert {
        **dict.fromkeys(NEWER, Releases("SQLAlchemy", since="2.1")),
        **dict.fromkeys(OLDER, Releases("SQLAlchemy", until="2.1")),
    } == releases


@pytest.mark.parametrize("name", sorted(NEWER | OLDER))
def test_a_member_the_installed_release_lacks_names_the_release_it_needs(
    db: scoped_session[Session], name: str
) -> None:
    """Forwarded where Session has it; elsewhere reading, setting or calling it
    raises an AttributeError naming the release, so hasattr() stays truthful."""
    session_has = _session_has(name)
    needs = "was removed in" if name in OLDER else "requires"

    assert session_has == hasattr(db, name)
    if session_has:
        assert not isinstance(vars(type(db))[name], Unavailable)
        return
    with pytest.raises(UnavailableMemberError) as caught:
        getattr(db, name)
    assert isinstance(caught.value, AttributeError)
    assert (name, db) == (caught.value.name, caught.value.obj)
    assert f"scoped_session[Session].{name} {needs} SQLAlchemy 2.1" in str(caught.value)
    assert f"SQLAlchemy {sa.__version__} is installed" in str(caught.value)
    with pytest.raises(UnavailableMemberError, match=f"{needs} SQLAlchemy 2.1"):
        setattr(db, name, None)


@pytest.mark.parametrize("name", sorted(NEWER | OLDER))
def test_release_dependent_members_say_so_in_their_docstring(
    db: scoped_session[Session], name: str
) -> None:
    """Read from the class, present or not, the member's docstring carries the
    proxy note and the release that added or removed it."""
    doc = inspect.cleandoc(getattr(type(db), name).__doc__)
    change = "Removed" if name in OLDER else "Added"

    assert ":class:`_orm.scoping.scoped_session` class." in doc
    assert (
        f"{change} in SQLAlchemy 2.1. Where the installed release lacks it,\n"
        "using it raises :exc:`scoped.UnavailableMemberError`."
    ) in doc


def test_a_spec_member_the_target_lacks_is_generated_as_unavailable() -> None:
    """Any proxied class can take a spec: members its target lacks raise,
    naming the library release; the rest, and the target's own extras, forward."""
    spec = (
        Member("get", Kind.METHOD),
        Member("fetch_all", Kind.METHOD, releases=Releases("httpkit", since="3.0")),
        Member("timeout", Kind.ATTRIBUTE, releases=Releases("httpkit", until="2.0")),
    )
    lookup = LOCAL
    proxy = proxy_class(
        scoped_session, MyHttpClient, lookup, spec=spec, proxy_ref=SCOPED_REF
    )
    client = scoped_session(MyHttpClient)
    instance: Any = object.__new__(proxy)
    instance._scoped_attach(client.registry)

    with pytest.raises(
        UnavailableMemberError, match=r"fetch_all requires httpkit 3\.0 or later$"
    ):
        instance.fetch_all()
    with pytest.raises(
        UnavailableMemberError, match=r"timeout was removed in httpkit 2\.0$"
    ):
        instance.timeout = 3
    assert ("http://example.test/x", 1.0) == instance.get("/x")
    assert "open" == instance.status
    assert "Added in httpkit 3.0." in vars(proxy)["fetch_all"].__doc__
    client.remove()


def test_an_equal_spec_finds_the_same_generated_class() -> None:
    """Specs are compared by value, so a fresh but equal list reuses the class."""
    lookup = LOCAL
    spec = [Member("get", Kind.METHOD), Member("extra", Kind.METHOD)]

    first = proxy_class(scoped_session, MyHttpClient, lookup, spec=spec)

    assert first is proxy_class(scoped_session, MyHttpClient, lookup, spec=list(spec))
    assert first is not proxy_class(scoped_session, MyHttpClient, lookup, spec=spec[:1])


def test_newer_names_follow_the_installed_sqlalchemy() -> None:
    """binds, delete_all, merge_all and execution_options exist in 2.1 and not 2.0."""
    expected = sa.__version__ >= "2.1"

    assert dict.fromkeys(sorted(NEWER), expected) == {
        name: _session_has(name) for name in sorted(NEWER)
    }


def test_nothing_falls_back_to_sqlalchemys_own_proxies(
    db: scoped_session[Session],
) -> None:
    """Every public member of SQLAlchemy's scoped_session is defined by scoped."""
    theirs = {
        name
        for name in vars(orm.scoped_session)
        if not name.startswith("_") or name in {"__contains__", "__iter__"}
    }
    ours = set().union(
        *(vars(k) for k in type(db).__mro__ if k.__module__.startswith("scoped"))
    )

    assert set() == theirs - ours


def test_method_signatures_match_the_session(db: scoped_session[Session]) -> None:
    """inspect.signature of every forwarded method equals the bound Session method's."""
    session = db()
    methods = [
        name for name, member in vars(type(db)).items() if inspect.isfunction(member)
    ]

    assert {name: inspect.signature(getattr(session, name)) for name in methods} == {
        name: inspect.signature(getattr(db, name)) for name in methods
    }
    assert set(_present(SA21_METHODS + EXTRAS)) <= set(methods)


@pytest.mark.parametrize("name", SA21_CLASSMETHODS)
def test_classmethod_signatures_match_the_session(
    db: scoped_session[Session], name: str
) -> None:
    """Forwarded classmethods have the Session classmethod's signature."""
    assert inspect.signature(getattr(Session, name)) == inspect.signature(
        getattr(db, name)
    )


class Fetcher:
    """A class whose method uses every kind of parameter."""

    def fetch(
        self, a: int, /, b: int, *args: int, c: int = 3, **kw: int
    ) -> tuple[Any, ...]:
        """Every kind of parameter at once."""
        return a, b, args, c, kw

    def close(self) -> None:
        """Nothing to release."""


def test_signature_keeps_every_parameter_kind() -> None:
    """Positional-only, *args, keyword-only and **kw survive, and calls forward."""
    fetcher = scoped_session(Fetcher)
    unbound = inspect.signature(Fetcher.fetch)
    without_self = unbound.replace(parameters=list(unbound.parameters.values())[1:])

    assert without_self == inspect.signature(fetcher.fetch)
    assert (1, 2, (9,), 4, {"z": 5}) == fetcher.fetch(1, 2, 9, c=4, z=5)
    assert (1, 2, (), 3, {}) == fetcher.fetch(1, b=2)


@pytest.mark.iterations(1)  # changes the fixture's client, which iterations share
def test_a_plain_class_forwards_its_methods(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """scoped_session(MyHttpClient).get(...) reaches the current thread's client."""
    assert ("http://example.test/x", 2.0) == client.get("/x", timeout=2.0)
    assert "open" == client.status
    client().base = "http://other.test"
    assert ("http://other.test/y", 1.0) == client.get("/y")


def test_a_plain_class_gets_its_classmethods(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """Classmethods of a plain class work on the proxy without creating an object."""
    assert "http://example.test" == client.default_base()
    assert "http://example.test" == type(client).default_base()  # type: ignore[attr-defined]
    assert not client.registry.has()


def test_proxied_doc_puts_the_note_after_the_first_paragraph() -> None:
    """The note follows the first paragraph; the rest is kept verbatim."""
    doc = """Return an instance,
        or ``None``.

        E.g.::

            thing = session.get(Thing, 5)

        More text.
        """

    expected = (
        "Return an instance,\n"
        "        or ``None``.\n"
        "\n" + _note("T", "P", "        ") + "\n"
        "\n"
        "        E.g.::\n"
        "\n"
        "            thing = session.get(Thing, 5)\n"
        "\n"
        "        More text.\n"
        "        "
    )
    assert expected == proxied_doc(doc, "T", "P")


def test_proxied_doc_of_a_one_line_docstring_ends_with_the_note() -> None:
    """A one-line docstring gets a blank line, then the note."""
    assert "Do it.\n\n" + _note("T", "P", "") + "\n" == proxied_doc("Do it.", "T", "P")


@pytest.mark.parametrize("doc", [None, "", "   \n  "])
def test_proxied_doc_without_a_docstring_is_the_note(doc: str | None) -> None:
    """A member without a docstring gets just the note."""
    assert _note("T", "P", "") == proxied_doc(doc, "T", "P")


@pytest.mark.parametrize("name", ["get", "head", "options", "boom"])
def test_generated_methods_carry_the_proxied_doc(
    client: AnyScopedSession[MyHttpClient], name: str
) -> None:
    """Generated members use proxied_doc on the target's own docstring."""
    doc = getattr(type(client), name).__doc__

    assert (
        proxied_doc(getattr(MyHttpClient, name).__doc__, CLIENT_REF, SCOPED_REF) == doc
    )
    assert f"Proxied for the :class:`{CLIENT_REF}` class on" in doc


def test_multi_paragraph_doc_through_a_generated_member(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """help() on a proxy shows the summary, the note, then the original rest."""
    doc = type(client).get.__doc__
    summary, rest = MyHttpClient.get.__doc__.split("\n\n", 1)  # type: ignore[union-attr]
    # Python 3.13 strips docstring indentation at compile time.
    margin = rest[: len(rest) - len(rest.lstrip(" "))]

    assert doc.startswith(summary + "\n\n" + _note(CLIENT_REF, SCOPED_REF, margin))
    assert doc.endswith("\n\n" + rest)


def test_session_docs_use_sqlalchemys_references(db: scoped_session[Session]) -> None:
    """Session proxies use the Sphinx references SQLAlchemy's own proxies use."""
    doc = type(db).expunge_all.__doc__

    assert doc == proxied_doc(
        Session.expunge_all.__doc__, "_orm.Session", "_orm.scoping.scoped_session"
    )
    rest = Session.expunge_all.__doc__.split("\n\n", 1)[1]  # type: ignore[union-attr]
    margin = rest[: len(rest) - len(rest.lstrip(" "))]
    assert doc.startswith(
        "Remove all object instances from this ``Session``.\n\n"
        + _note("_orm.Session", "_orm.scoping.scoped_session", margin)
    )


def test_attributes_without_a_docstring_get_a_proxy_note(
    db: scoped_session[Session],
) -> None:
    """Plain instance attributes such as bind are documented as proxied attributes."""
    assert (
        "Proxy for the :attr:`_orm.Session.bind` attribute on\n"
        "behalf of the :class:`_orm.scoping.scoped_session` class.\n"
    ) == type(db).bind.__doc__


def test_properties_keep_their_docstring(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """A proxied property's docstring is the target property's plus the note."""
    expected = proxied_doc(MyHttpClient.status.__doc__, CLIENT_REF, SCOPED_REF)

    assert expected == type(client).status.__doc__  # type: ignore[attr-defined]


WRITABLE = ["bind", "identity_map", "autoflush", "execution_options", "binds"]


def _writable_values(engine: sa.Engine) -> dict[str, Any]:
    values: dict[str, Any] = {
        "bind": engine,
        "identity_map": type(Session().identity_map)(),
        "autoflush": False,
        "execution_options": sa.util.immutabledict({"x": 1}),
        "binds": {User: engine},
    }
    return {name: values[name] for name in _present(WRITABLE)}


def test_setters_write_to_the_current_session(db: scoped_session[Session]) -> None:
    """Assigning a writable attribute on the proxy sets it on the current session."""
    other = sa.create_engine("sqlite://")
    values = _writable_values(other)

    for name, value in values.items():
        setattr(db, name, value)

    session = db()
    assert dict.fromkeys(values, True) == {
        name: getattr(session, name) is value for name, value in values.items()
    }
    assert dict.fromkeys(values, True) == {
        name: getattr(db, name) is value for name, value in values.items()
    }
    other.dispose()


def test_setters_exist_exactly_for_writable_attributes(
    db: scoped_session[Session],
) -> None:
    """Only bind, identity_map, autoflush, execution_options, binds have setters."""
    writable = {
        name
        for name in _present(SA21_ATTRIBUTES)
        if type(db).__dict__[name].fset is not None
    }

    assert set(_present(WRITABLE)) == writable


@pytest.mark.parametrize(
    "name", ["dirty", "deleted", "new", "is_active", "no_autoflush", "info"]
)
def test_read_only_attributes_refuse_assignment(
    db: scoped_session[Session], name: str
) -> None:
    """Setting a read-only proxied attribute raises AttributeError."""
    with pytest.raises(AttributeError):
        setattr(db, name, object())


@pytest.mark.thread_unsafe(
    reason="flushes into the fixture's SQLite file and keeps the transaction open"
)
def test_classmethods_work_on_the_class_and_the_instance(
    db: scoped_session[Session],
) -> None:
    """object_session and identity_key answer on the proxy class and instance."""
    user = User(name="w")
    db.add(user)
    db.flush()

    assert db() is db.object_session(user)
    assert db() is type(db).object_session(user)
    assert (User, (user.id,), None) == db.identity_key(User, user.id)
    assert Session.identity_key(instance=user) == type(db).identity_key(instance=user)


def test_classmethods_need_no_session() -> None:
    """Calling a forwarded classmethod never creates a session."""
    db = scoped_session(sessionmaker())

    assert db.object_session(User(name="w")) is None
    assert not db.registry.has()


class GreetingSession(Session):
    """A user's Session subclass with its own public API."""

    def greet(self, name: str, *, punctuation: str = "!") -> str:
        """Say hello from this session."""
        return f"hello {name}{punctuation} from {id(self)}"

    @property
    def flavour(self) -> str:
        """A subclass property."""
        return "greeting"


def test_subclass_methods_are_proxied() -> None:
    """Public methods and properties a Session subclass adds are forwarded."""
    db = scoped_session(sessionmaker(class_=GreetingSession))

    assert f"hello x? from {id(db())}" == db.greet("x", punctuation="?")  # type: ignore[attr-defined]
    assert "greeting" == db.flavour  # type: ignore[attr-defined]
    assert inspect.signature(db().greet) == inspect.signature(db.greet)  # type: ignore[attr-defined]
    assert "greet" in vars(type(db))
    db.remove()


class AuditedScope(scoped_session[Session]):
    """A scoped_session subclass that overrides a forwarded member."""

    audit: list[object]

    def add(self, instance: object, _warn: bool = True) -> None:
        self.audit.append(instance)
        self.registry().add(instance, _warn=_warn)


def test_a_scoped_session_subclass_keeps_its_override() -> None:
    """Generation never replaces a member the scoped_session subclass defines."""
    db = AuditedScope(sessionmaker())
    db.audit = []
    user = User(name="w")

    db.add(user)

    assert [user] == db.audit
    assert user in db
    assert isinstance(db, AuditedScope)
    assert "add" not in vars(type(db))
    assert "commit" in vars(type(db))
    db.remove()


def test_generation_is_cached_per_class() -> None:
    """Factories of the same session class share one generated proxy class."""
    one = scoped_session(sessionmaker(sa.create_engine("sqlite://")))
    two = scoped_session(sessionmaker(sa.create_engine("sqlite://")))
    three = scoped_session(Session)
    four = scoped_session(functools.partial(Session, autoflush=False))

    assert type(one) is type(two)
    assert type(one) is type(three)
    assert type(one) is type(four)
    assert type(one).add is type(two).add


def test_each_registry_kind_has_its_own_generated_class() -> None:
    """Thread-local and custom-scope proxies inline different lookups."""
    factory = sessionmaker()
    threaded = scoped_session(factory)
    keyed = scoped_session(factory, lambda: "k")

    assert type(threaded) is not type(keyed)
    assert type(keyed) is type(scoped_session(factory, lambda: "other"))


@pytest.mark.iterations(1)  # needs the fixture's scope empty: the creating path
def test_tracebacks_show_the_generated_source(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """A traceback through a generated method shows its source line."""
    with pytest.raises(ValueError, match="boom") as caught:
        client.boom()

    frames = traceback.extract_tb(caught.value.__traceback__)
    generated = [f for f in frames if f.filename.startswith("<scoped generated")]
    assert 1 == len(generated)
    assert "return session.boom()" == generated[0].line
    assert "return session.boom()" in "".join(traceback.format_exception(caught.value))


def test_generated_source_is_inspectable(
    client: AnyScopedSession[MyHttpClient],
) -> None:
    """inspect.getsource works on generated members, as on hand-written ones."""
    source = inspect.getsource(type(client).head)  # type: ignore[attr-defined]

    assert source.startswith("def head(self, path):")
    assert "session.head(path)" in source


def test_a_session_subclass_elsewhere_does_not_read_its_package_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The release named for a member the installed SQLAlchemy lacks is
    SQLAlchemy's, never read from the subclass's own package (whose module
    attributes may warn, as Flask-SQLAlchemy's ``__version__`` does)."""
    package = types.ModuleType("warning_package")

    def _getattr(name: str) -> object:
        raise AssertionError(f"read warning_package.{name}")

    package.__getattr__ = _getattr  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "warning_package", package)
    subclass = type("PackagedSession", (Session,), {"__module__": "warning_package.s"})
    db = scoped_session(subclass)
    missing = [
        name for name in ("close_all", "delete_all") if not hasattr(Session, name)
    ]
    for name in missing:
        with pytest.raises(AttributeError, match="SQLAlchemy"):
            getattr(db, name)
