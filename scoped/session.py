"""``scoped_session``: one session per scope behind one global name."""

from __future__ import annotations

import functools
import inspect
import operator
import typing
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, overload

from scoped import _sqlalchemy
from scoped.errors import AlreadyPresentError, ScopedWarning, describe, require_callable
from scoped.events import REGISTRY_CONFIGURED
from scoped.lifecycle import Events, mask_url
from scoped.proxies import proxy_class
from scoped.registry import Frame, Registry, for_scope

_S = TypeVar("_S")
_T = TypeVar("_T")

if TYPE_CHECKING:
    # Type checkers cannot see members generated at run time, so they get
    # the same generator's output for SQLAlchemy's Session, as source.
    from typing import TypedDict

    from sqlalchemy.orm import Session
    from typing_extensions import Unpack

    from scoped.proxies._session_typing import AnyProxies, SessionProxies

    class _Base(SessionProxies, Generic[_S]): ...

    class _Options(TypedDict, total=False):
        """The keyword arguments of :class:`scoped_session` after *class_*."""

        close_method: str | None
        name: str | None
        logger: Any | None
        log: bool
        leak_after: float | None
        max_scopes: int | None

else:
    _Base = Generic

#: A SQLAlchemy session class: its proxies are typed as ``Session``'s.
_Session = TypeVar("_Session", bound="Session")

__all__ = [
    "AnyScopedSession",
    "QueryProperty",
    "ScopeBlock",
    "ScopedSession",
    "scoped_session",
]


# SQLAlchemy's wording first: code and tests match on it.
_ALREADY_PRESENT = (
    "Scoped session is already present; no new arguments may be specified."
)
_CONFIGURE_TOO_LATE = "At least one scoped session is already present."


_TRIVIAL = frozenset(
    {"__module__", "__doc__", "__dict__", "__weakref__", "__qualname__"}
)


def _unwrap_trivial(cls: type) -> type:
    """Skip empty subclasses such as the one every ``sessionmaker`` creates.

    They add nothing to proxy, and unwrapping them lets one generated class
    serve every factory of the same session class.
    """
    while len(cls.__bases__) == 1 and set(vars(cls)) <= _TRIVIAL:
        cls = cls.__bases__[0]
    return cls


def infer_target(factory: Callable[..., Any], class_: type | None) -> type:
    """Find the class whose members a scoped proxy forwards.

    In order: an explicit *class_*; a ``sessionmaker``-like factory's
    ``class_``; the factory itself when it is a class; a
    :func:`functools.partial` of a class; the factory's return annotation;
    SQLAlchemy's ``Session`` when SQLAlchemy is installed (as SQLAlchemy's own
    ``scoped_session`` assumes).
    """
    if class_ is not None:
        # Checked although annotated: untyped callers pass anything.
        if not isinstance(cast(object, class_), type):
            msg = f"class_ must be a class, got {describe(class_)}"
            raise TypeError(msg)
        return class_
    made = getattr(factory, "class_", None)
    if isinstance(made, type):
        return _unwrap_trivial(made)
    if isinstance(factory, type):
        return factory
    if isinstance(factory, functools.partial) and isinstance(factory.func, type):
        return factory.func
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # noqa: BLE001 - unresolvable hints just mean "unknown"
        hints = {}
    returned = hints.get("return")
    if isinstance(returned, type):
        return returned
    default = _sqlalchemy.default_target()
    if default is None:
        msg = (
            f"cannot tell which class the session factory {describe(factory)} "
            "makes; pass class_=TheClass to scoped_session()"
        )
        raise TypeError(msg)
    return default


class _DefaultClose(str):
    """The type of the default *close_method*, told apart from an explicit one."""

    __slots__ = ()


#: ``close_method`` when none is given: a method the class may lack.
_DEFAULT_CLOSE: str = _DefaultClose("close")


class _MissingClose:
    """The close of a class without the default close method.

    SQLAlchemy accepts such a factory; closing its objects then fails with
    this error, after the object is discarded.
    """

    __slots__ = ("_target",)

    def __init__(self, target: type) -> None:
        self._target = target

    def __call__(self, obj: object) -> object:
        close = getattr(obj, "close", None)
        if callable(close):
            return close()
        msg = (
            f"remove() cannot close {describe(obj)}: {self._target.__qualname__} "
            "has no close() method, the default close_method; pass "
            "close_method='name' for the method that closes it, or "
            "close_method=None to discard without closing (the object was "
            "discarded)"
        )
        raise TypeError(msg)


def _call_close(obj: Any) -> object:
    """``obj.close()``, the default close method, called as Python code calls
    it: on CPython 3.11 that costs less than ``operator.methodcaller``, which
    builds an argument tuple and a bound method on every session's end."""
    return obj.close()


def _closer(target: type, close_method: str | None) -> Callable[[Any], object] | None:
    """How the registry closes *target* objects, checked against the class.

    An explicit *close_method* must name a method of *target*. The default
    may be missing, as SQLAlchemy allows: then removing fails, clearly.
    """
    if close_method is None:
        return None
    if callable(getattr(target, close_method, None)):
        if close_method == "close":
            return _call_close
        return operator.methodcaller(close_method)
    if close_method is _DEFAULT_CLOSE:
        return _MissingClose(target)
    msg = (
        f"close_method={close_method!r}, but {target.__qualname__} has no "
        "such method; name its close method or pass close_method=None"
    )
    raise TypeError(msg)


def _loggable(key: str, value: object) -> str:
    """Render a configuration value for a log line, hiding credentials."""
    url = getattr(value, "url", None)
    if url is not None:
        return mask_url(url)
    return mask_url(value)


class ScopeBlock:
    """The context manager :meth:`scoped.scoped_session.scope` returns."""

    __slots__ = ("_frame", "_registry")

    def __init__(self, registry: Registry[Any]) -> None:
        self._registry = registry
        self._frame: Frame | None = None

    def __enter__(self) -> ScopeBlock:
        if self._frame is not None:
            msg = "this scope block is already open; call scope() again to nest"
            raise RuntimeError(msg)
        self._frame = self._registry.push()
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        frame = self._frame
        if frame is None:
            msg = "this scope block was not opened"
            raise RuntimeError(msg)
        try:
            self._registry.pop(frame)
        except Exception:
            if exc is None:
                raise
            # The block's own exception matters more than a failure to close
            # its session, which the registry has already logged.
        self._frame = None

    async def __aenter__(self) -> ScopeBlock:
        return self.__enter__()

    async def __aexit__(
        self, kind: object, exc: BaseException | None, tb: object
    ) -> None:
        self.__exit__(kind, exc, tb)


class QueryProperty:
    """Class-level ``Model.query`` that queries through the current session."""

    __slots__ = ("_query_cls", "_scoped")

    def __init__(self, scoped: scoped_session[Any], query_cls: type | None) -> None:
        self._scoped = scoped
        self._query_cls = query_cls

    def __get__(self, instance: object, owner: type) -> Any:
        session = self._scoped.registry()
        if self._query_cls is not None:
            return self._query_cls(owner, session=session)
        return session.query(owner)


class _ScopedSessionType(type):
    """Gives the classes themselves SQLAlchemy's two session classmethods.

    ``scoped_session.object_session(obj)`` and ``identity_key(...)`` work on
    SQLAlchemy's class, not only on its instances. Defined here, they shadow
    nothing: a generated proxy class forwards its own session class's, and
    this is only consulted when the class has no such member.
    """

    _SESSION_CLASSMETHODS: ClassVar[frozenset[str]] = frozenset(
        {"object_session", "identity_key"}
    )

    if not TYPE_CHECKING:
        # Type checkers find the two on the generated proxies' types, and
        # must not take every other class attribute for one.

        def __getattr__(cls, name: str) -> Any:
            if name in _ScopedSessionType._SESSION_CLASSMETHODS:
                session = _sqlalchemy.default_target()
                if session is not None:
                    return getattr(session, name)
            msg = f"type object {cls.__qualname__!r} has no attribute {name!r}"
            raise AttributeError(msg)


class scoped_session(_Base[_S], metaclass=_ScopedSessionType):  # noqa: N801 - SQLAlchemy's name
    """One session per scope, reached through one global object.

    ``scoped_session(sessionmaker(bind=engine))`` hands each thread (or each
    scope that *scopefunc* identifies) its own session, created on first use.
    The public methods and attributes of the session class are generated on
    this class and forward to the current scope's session; call the object
    for the session itself, and :meth:`remove` at the end of the scope.

    Args:
        session_factory: Makes a session: a ``sessionmaker``, a class, or any
            callable.
        scopefunc: Returns the current scope's hashable key. ``None`` (the
            default) scopes sessions to the current thread.
        class_: The class to proxy, when it cannot be inferred from the
            factory.
        close_method: The method :meth:`remove` calls before discarding a
            session, or ``None`` to discard without closing.
        name: Names this registry in lifecycle events (default: the session
            class's name).
        logger: A structlog logger for lifecycle events, instead of
            ``structlog.get_logger("scoped")``.
        log: ``False`` turns lifecycle events off.
        leak_after: Warn (``session.leak_suspected``) about sessions older
            than this many seconds; nothing is closed.
        max_scopes: Warn when more scopes than this hold a session at once.

    *scopefunc* may be one of the ready scopes in :mod:`scoped.scopes`
    (thread, task, greenlet, context), whose sessions are closed when their
    scope ends. ``threading.get_ident`` and ``asyncio.current_task`` are
    mapped to the thread and task scopes, which they would otherwise imitate
    unsafely (thread ids are reused; finished tasks would be kept alive).

    When the factory makes SQLAlchemy sessions the object is also an instance
    of :class:`sqlalchemy.orm.scoped_session`, so ``sqlalchemy.event.listen``
    and extensions that check for it accept it.
    """

    _scoped_base: ClassVar[type]
    #: The scope when none is given; ``None``: the current thread.
    _scoped_default_scope: ClassVar[Callable[[], Any] | None] = None
    _scoped_registry: Registry[_S]
    _scoped_lookup: Callable[[], _S]
    _scoped_storage: Any
    _scoped_scopefunc: Callable[[], Any] | None
    _scoped_handles: tuple[Any, Callable[[], Any] | None]
    _scoped_sqlalchemy: bool
    session_factory: Callable[..., _S]

    # Type checkers learn the proxied members from the factory: SQLAlchemy
    # sessions get Session's typed proxies, any other class members typed Any.
    @overload
    def __new__(  # type: ignore[overload-overlap]
        cls,
        session_factory: Callable[..., _Session],
        scopefunc: Callable[[], Any] | None = None,
        *,
        class_: type[_Session] | None = None,
        **options: Unpack[_Options],
    ) -> scoped_session[_Session]: ...
    @overload
    def __new__(
        cls,
        session_factory: Callable[..., _T],
        scopefunc: Callable[[], Any] | None = None,
        *,
        class_: type[_T] | None = None,
        **options: Unpack[_Options],
    ) -> AnyScopedSession[_T]: ...
    def __new__(
        cls,
        session_factory: Callable[..., Any],
        scopefunc: Callable[[], Any] | None = None,
        *,
        class_: type | None = None,
        close_method: str | None = _DEFAULT_CLOSE,
        name: str | None = None,
        logger: Any | None = None,
        log: bool = True,
        leak_after: float | None = None,
        max_scopes: int | None = None,
    ) -> scoped_session[Any]:
        require_callable(session_factory, "session_factory")
        if not scopefunc and cls._scoped_default_scope is not None:
            scopefunc = cls._scoped_default_scope
        if scopefunc is not None:
            require_callable(scopefunc, "scopefunc")
        target = infer_target(session_factory, class_)
        scopefunc = scopefunc or None  # SQLAlchemy tests it for truth
        events = Events(name or target.__qualname__, logger=logger, enabled=log)
        registry = for_scope(
            session_factory,
            scopefunc,
            close=_closer(target, close_method),
            events=events,
            leak_after=leak_after,
            max_scopes=max_scopes,
        )
        base = cls.__dict__.get("_scoped_base", cls)
        options = cls._sqlalchemy_options(target)
        proxy = cls._proxy_class(base, target, registry, options)
        self: scoped_session[Any] = object.__new__(proxy)
        self.session_factory = session_factory
        self._scoped_sqlalchemy = options is not None
        self._scoped_attach(registry)
        return self

    if not TYPE_CHECKING:
        # Type checkers must read __new__, whose overloads pick the typed
        # proxies; an __init__ of this class would take precedence.

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Everything happens in __new__, which must pick the generated
            # class before the instance exists; this keeps SQLAlchemy's
            # __init__ from running.
            pass

    @classmethod
    def _sqlalchemy_options(cls, target: type) -> dict[str, Any] | None:
        """How the proxies of a SQLAlchemy session class match SQLAlchemy's
        own scoped session (bases, exclusions, docstring references), or
        ``None`` for other classes."""
        return _sqlalchemy.proxy_options(target)

    @staticmethod
    def _proxy_class(
        base: type,
        target: type,
        registry: Registry[Any],
        options: dict[str, Any] | None = None,
    ) -> type:
        return proxy_class(base, target, registry.lookup, **(options or {}))

    def _scoped_attach(self, registry: Registry[_S]) -> None:
        # Generated proxies read these two handles directly: one attribute
        # load each instead of a call into the registry on every access.
        self._scoped_registry = registry
        # A bound method: the interpreter runs it inline, where calling the
        # registry object itself re-enters the interpreter from C.
        self._scoped_lookup = registry._lookup_call()
        self._scoped_storage = registry._storage
        self._scoped_scopefunc = registry._scopefunc
        # Both at once, for the compiled attributes of scoped._speedups.
        self._scoped_handles = (registry._storage, registry._scopefunc)

    @property
    def registry(self) -> Registry[_S]:
        """The registry holding one session per scope."""
        return self._scoped_registry

    @registry.setter
    def registry(self, registry: Registry[_S]) -> None:
        current = self._scoped_registry
        if registry.lookup != current.lookup:
            msg = (
                f"cannot replace a {type(current).__name__} with a "
                f"{type(registry).__name__}: the generated proxies read the "
                "registry's storage directly; create a new scoped_session instead"
            )
            raise TypeError(msg)
        self._scoped_attach(registry)

    @property
    def _proxied(self) -> _S:  # type: ignore[override]  # typed proxies say Session
        return self._scoped_lookup()

    def __call__(self, **kw: Any) -> _S:
        """Return the current scope's session, creating it on first use.

        Keyword arguments are passed to the session factory; they are only
        allowed while the scope has no session yet, since they could not
        apply to an existing one.
        """
        if not kw:
            return self._scoped_lookup()
        try:
            return self._scoped_registry.create(
                functools.partial(self.session_factory, **kw)
            )
        except AlreadyPresentError:
            error = (
                _sqlalchemy.already_present_error()
                if self._scoped_sqlalchemy
                else AlreadyPresentError
            )
            msg = (
                f"{_ALREADY_PRESENT} The arguments {sorted(kw)} cannot apply "
                "to the session this scope already has; call remove() first."
            )
            raise error(msg) from None

    def configure(self, **kwargs: Any) -> None:
        """Reconfigure the session factory (``sessionmaker.configure``).

        Warns when the current scope already has a session, which the new
        configuration cannot affect.
        """
        configure = getattr(self.session_factory, "configure", None)
        if not callable(configure):
            msg = (
                "configure() needs a session factory with a configure() method "
                f"such as sessionmaker; got {describe(self.session_factory)}"
            )
            raise TypeError(msg)
        if self._scoped_registry.has():
            category = (
                _sqlalchemy.configure_warning()
                if self._scoped_sqlalchemy
                else ScopedWarning
            )
            warnings.warn(
                f"{_CONFIGURE_TOO_LATE} configure() only affects sessions "
                "created from now on, not the current scope's.",
                category,
                stacklevel=2,
            )
        configure(**kwargs)
        registry = self._scoped_registry
        registry.events.emit(
            REGISTRY_CONFIGURED.level,
            REGISTRY_CONFIGURED,
            options={key: _loggable(key, value) for key, value in kwargs.items()},
        )

    def remove(self) -> None:
        """Close the current scope's session, then discard it.

        The next use in this scope creates a new session. Without a session
        this does nothing. The session is discarded even if closing it fails,
        so a broken session is never handed out again.
        """
        self._scoped_registry.remove()

    def scope(self) -> ScopeBlock:
        """Open a fresh scope for a block: ``with db_session.scope(): ...``.

        Inside the block the current scope gets a new session on first use;
        on exit (also on exception) that session is removed and the one the
        scope had before, if any, comes back. Blocks nest. Use it for units
        of work that share a thread or task with others: a job on a reused
        pool thread, a Celery task, a CLI command, a test. ``async with``
        works the same way.
        """
        return ScopeBlock(self._scoped_registry)

    def query_property(self, query_cls: type | None = None) -> Any:
        """Return a class attribute that queries through the current session.

        ``Model.query = db_session.query_property()`` makes ``Model.query``
        the same as ``db_session.query(Model)``; with *query_cls* it is
        ``query_cls(Model, session=db_session())``.
        """
        return QueryProperty(self, query_cls)

    def __repr__(self) -> str:
        scope = self._scoped_registry.scope_kind
        return (
            f"<{type(self).__qualname__} scope={scope} "
            f"factory={self.session_factory!r}>"
        )

    if not TYPE_CHECKING:
        # What inspect.signature() shows for the class and its generated
        # subclasses: __new__'s parameters after cls.
        __signature__ = inspect.signature(__new__).replace(
            parameters=list(inspect.signature(__new__).parameters.values())[1:],
            return_annotation=inspect.Signature.empty,
        )


#: The name older SQLAlchemy code uses.
ScopedSession = scoped_session

if TYPE_CHECKING:

    class AnyScopedSession(AnyProxies, scoped_session[_S]):
        """How type checkers see a ``scoped_session`` of a class other than a
        SQLAlchemy session: its members are ``Any`` (they are generated from
        that class at run time), the registry's own API stays typed."""

else:
    #: The type of ``scoped_session(HttpClient)`` for type checkers, whose
    #: proxied members are ``Any``; at run time, ``scoped_session`` itself.
    AnyScopedSession = scoped_session
