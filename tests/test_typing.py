"""Type checkers see the generated proxies: the committed source and mypy."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from scoped import _sqlalchemy, scoped_session
from scoped.proxies import Kind, Member, Releases
from scoped.proxies._codegen import render_params
from scoped.proxies._unavailable import Unavailable

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "scoped_tools_proxies", ROOT / "tools" / "proxies.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _series(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


INSTALLED = ".".join(map(str, _series(sa.__version__)))
needs_311 = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="measuring needs typing.get_overloads (3.11+)"
)
sqlalchemy_21 = pytest.mark.skipif(
    _series(sa.__version__) < (2, 1),
    reason=f"the user modules are checked against SQLAlchemy 2.1's annotations; "
    f"{sa.__version__} is installed",
)


@needs_311
def test_committed_files_are_fresh() -> None:
    """The committed spec and typed proxies are what the generator writes now,
    under whichever supported SQLAlchemy is installed (the 2.0 and 2.1 test runs
    both check it, so the files are the same from either)."""
    problem = tool.check()

    assert problem is None, problem


@needs_311
def test_check_reports_a_stale_file_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check fails with the command to run and a diff; --write fixes it."""
    spec = tmp_path / "_session_spec.py"
    shutil.copy(tool.SPEC, spec)
    target = tmp_path / "_session_typing.py"
    target.write_text("class SessionProxies: ...\n", encoding="utf-8")
    paths = ["--spec", str(spec), "--output", str(target)]

    assert 1 == tool.main(["--check", *paths])
    err = capsys.readouterr().err
    assert "_session_typing.py is stale" in err
    assert "_session_spec.py is stale" not in err
    assert "run `make proxies`" in err
    assert "-class SessionProxies: ...\n" in err

    assert 0 == tool.main(["--write", *paths])
    assert 0 == tool.main(["--check", *paths])
    assert tool.OUTPUT.read_text(encoding="utf-8") == target.read_text(encoding="utf-8")


def test_the_typed_source_comes_from_the_spec_alone() -> None:
    """Rendering reads no SQLAlchemy: the committed file, re-rendered from the
    committed spec and laid out by ruff, is unchanged."""
    spec = tool.load(tool.SPEC)

    rendered = tool.ruff(tool.render_typed(spec), tool.OUTPUT)

    assert tool.OUTPUT.read_text(encoding="utf-8") == rendered
    assert "2.0" in spec.series
    assert "2.1" in spec.series


def _member(name: str, doc: str, **fields: Any) -> Member:
    return Member(name, Kind.METHOD, doc=doc, signature="(self) -> None", **fields)


def test_merging_an_older_series_keeps_the_newer_text() -> None:
    """Measuring 2.0 records which members 2.0 has, never 2.0's text for a
    member 2.1 also has; a member only 2.0 has keeps 2.0's text."""
    spec = tool.Spec(
        ("2.1",),
        (_member("add", "2.1 text"), _member("delete_all", "2.1 text")),
        {"2.1": ("stream",)},
    )
    measured = [_member("add", "2.0 text"), _member("close_all", "2.0 text")]

    merged = tool.merge(spec, "2.0", measured, ("close_all",))

    assert ("2.0", "2.1") == merged.series
    assert {
        "add": ("2.1 text", None),
        "close_all": ("2.0 text", Releases("SQLAlchemy", until="2.1")),
        "delete_all": ("2.1 text", Releases("SQLAlchemy", since="2.1")),
    } == {m.name: (m.doc, m.releases) for m in merged.members}
    assert {"2.0": ("close_all",), "2.1": ("stream",)} == merged.async_names
    assert merged == tool.merge(merged, "2.0", measured, ("close_all",))


def test_merging_the_newest_series_takes_its_text() -> None:
    """Measuring the newest series updates the text of the members it has and
    drops those no series has any more."""
    spec = tool.Spec(
        ("2.0", "2.1"),
        (
            _member("add", "old"),
            _member("gone", "old", releases=Releases("SQLAlchemy", since="2.1")),
        ),
        {},
    )

    merged = tool.merge(spec, "2.1", [_member("add", "new")], ())

    assert [("add", "new", None)] == [
        (m.name, m.doc, m.releases) for m in merged.members
    ]


def test_a_member_that_comes_and_goes_is_an_error() -> None:
    """Presence must be one range of series, or the releases cannot say it."""
    spec = tool.Spec(
        ("2.0", "2.1", "2.2"),
        (_member("odd", "x", releases=Releases("SQLAlchemy", until="2.1")),),
        {},
    )

    with pytest.raises(tool.SourceError, match=r"Session\.odd comes and goes"):
        tool.merge(spec, "2.2", [_member("odd", "x")], ())


def test_names_resolve_to_their_defining_module() -> None:
    """Re-imports, also under ``if TYPE_CHECKING:``, lead to the definition."""
    ref, resolve = tool.Ref, tool.resolve
    # session.py: "if typing.TYPE_CHECKING: from ..engine import Result".
    assert ref("sqlalchemy.engine.result", "Result") == resolve(
        "sqlalchemy.orm.session", "Result"
    )
    assert ref("sqlalchemy.orm.session", "Session") == resolve(
        "sqlalchemy.orm.session", "Session"
    )
    assert ref("typing", "Optional") == resolve("sqlalchemy.orm.session", "Optional")
    assert ref("sqlalchemy.util", None) == resolve("sqlalchemy.orm.session", "util")
    assert ref("builtins", "object") == resolve("sqlalchemy.orm.session", "object")


def test_render_params_writes_annotations_and_keeps_positional_only_markers() -> None:
    """Annotated parameters get spaced defaults; "/" follows a leading self."""
    param = inspect.Parameter
    params = [
        param("self", param.POSITIONAL_OR_KEYWORD),
        param("key", param.POSITIONAL_ONLY, annotation="str"),
        param("value", param.POSITIONAL_OR_KEYWORD, default="None", annotation="int"),
        param("flag", param.KEYWORD_ONLY, default="True"),
        param("kw", param.VAR_KEYWORD, annotation="Any"),
    ]

    assert (
        "self, key: str, /, value: int = None, *, flag=True, **kw: Any"
        == render_params(params, str, annotation=str)
    )
    assert "self, key, /, value=None, *, flag=True, **kw" == render_params(params, str)


def test_an_unknown_name_is_a_clear_error() -> None:
    """A name bound nowhere is reported with the module it was used in."""
    with pytest.raises(
        tool.SourceError, match=r"'NoSuchName', used in sqlalchemy\.orm"
    ):
        tool.resolve("sqlalchemy.orm.session", "NoSuchName")


def _has(member: Member) -> bool:
    releases = member.releases or Releases("SQLAlchemy")
    key = _series
    return (releases.since is None or key(INSTALLED) >= key(releases.since)) and (
        releases.until is None or key(INSTALLED) < key(releases.until)
    )


def test_the_spec_matches_the_installed_session() -> None:
    """The installed Session has exactly the spec members whose releases
    include it, of the kind the spec says, and nothing the spec leaves out."""
    from scoped.proxies._members import discover

    installed = {m.name: m for m in discover(sa.orm.Session, _sqlalchemy.EXCLUDED)}
    spec = _sqlalchemy.session_spec()

    assert {m.name for m in spec if _has(m)} == set(installed)
    assert {m.name: m.kind for m in spec if _has(m)} == {
        name: m.kind for name, m in installed.items()
    }


def _clean(doc: str | None) -> list[str]:
    return [line.rstrip() for line in inspect.cleandoc(doc or "").splitlines()]


def test_typed_members_match_the_runtime_proxies() -> None:
    """Every generated member has its typed twin: kind, setter and docstring,
    and the signature wherever the spec's text is the installed release's."""
    from scoped.proxies._session_typing import SessionProxies

    runtime = type(scoped_session(sa.orm.sessionmaker(sa.create_engine("sqlite://"))))
    spec = tool.load(tool.SPEC)
    newest = INSTALLED == spec.series[-1]

    assert len(spec.members) > 50
    for member in spec.members:
        generated = inspect.getattr_static(runtime, member.name)
        typed = inspect.getattr_static(SessionProxies, member.name)
        if isinstance(generated, Unavailable):
            assert not _has(member), member.name
            assert _clean(generated.__doc__) == _clean(
                getattr(SessionProxies, member.name).__doc__
            ), member.name
            continue
        # A typed property stands for a property or for the compiled
        # descriptor of scoped._speedups; both have fset and __doc__.
        assert isinstance(typed, property) or type(generated) is type(typed), (
            member.name
        )
        if isinstance(typed, property):
            assert hasattr(type(generated), "__set__"), member.name
            assert (generated.fset is None) == (typed.fset is None), member.name
            if newest:
                assert _clean(generated.__doc__) == _clean(typed.__doc__), member.name
            continue
        generated_fn = getattr(runtime, member.name)
        typed_fn = getattr(SessionProxies, member.name)
        if newest:
            assert inspect.signature(generated_fn) == inspect.signature(typed_fn), (
                member.name
            )
            assert _clean(generated_fn.__doc__) == _clean(typed_fn.__doc__), member.name


def _mypy(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-error-summary",
            "--hide-error-context",
            str(module.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _canonical(revealed: str) -> str:
    """``Union[m.User, None]`` and ``m.User | None`` both read ``User | None``."""
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", revealed)
    text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", text)
    return re.sub(r"^Union\[(.*), None\]$", r"\1 | None", text)


@sqlalchemy_21
def test_mypy_accepts_a_user_module_and_infers_session_types() -> None:
    """mypy --strict passes a user module and infers what SQLAlchemy's own would."""
    result = _mypy(TYPING / "user_module.py")

    revealed = re.findall(r'note: Revealed type is "(.*)"', result.stdout)
    assert [
        "User | None",  # db.get(User, 1)
        "User",  # db.get_one(User, 1)
        "Sequence[User]",  # db.execute(select(User)).scalars().all()
        "str | None",  # db.scalars(select(User.name)).first()
        "User | None",  # db.query(User).first()
        "Session",  # db()
        "Session | None",  # scoped_session.object_session(...)
        "MySession",  # scoped_session[MySession](...)()
        "MySession",  # ScopedSession[MySession] annotation
        "str",  # a MySession method on the returned session
    ] == [_canonical(t) for t in revealed], result.stdout + result.stderr
    assert 0 == result.returncode, result.stdout + result.stderr
    assert " error: " not in result.stdout


@sqlalchemy_21
def test_mypy_accepts_proxies_of_another_class() -> None:
    """A class other than a SQLAlchemy session gets members typed Any, not
    Session's (whose get() would reject get("/health")); async alike."""
    result = _mypy(TYPING / "other_class.py")

    revealed = re.findall(r'note: Revealed type is "(.*)"', result.stdout)
    assert [
        "AnyScopedSession[HttpClient]",  # scoped_session(HttpClient)
        "HttpClient",  # http()
        "Any",  # http.get("/health")
        "dict[str, int]",  # the registry's own API stays typed
        "AnyAsyncScopedSession[Client]",  # async_scoped_session(Client, ...)
        "Any",  # await clients.fetch("/health")
    ] == [_canonical(t) for t in revealed], result.stdout + result.stderr
    assert 0 == result.returncode, result.stdout + result.stderr


@sqlalchemy_21
def test_mypy_rejects_wrong_calls_through_the_proxies() -> None:
    """Wrong arguments, types and names are reported on exactly the marked lines."""
    module = TYPING / "wrong_calls.py"
    expected = {
        number: code
        for number, line in enumerate(module.read_text().splitlines(), 1)
        for code in re.findall(r"# error: ([\w-]+)$", line)
    }

    result = _mypy(module)

    errors = re.findall(r":(\d+): error: .*\[([\w-]+)\]$", result.stdout, re.M)
    reported = {int(number): code for number, code in errors}
    assert expected == reported, result.stdout + result.stderr
    assert 1 == result.returncode
    assert 'Missing positional argument "ident" in call to "get"' in result.stdout
