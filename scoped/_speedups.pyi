"""Compiled attribute proxies for scoped; optional (see ``_speedups.c``)."""

from collections.abc import Callable
from typing import Any, final, overload

@final
class ScopedAttribute:
    """A proxy class attribute that reads *name* on the current scope's object."""

    __name__: str
    __qualname__: str
    __objclass__: type
    kind: str
    misses: tuple[type[BaseException], ...]
    fget: Callable[[Any], Any]
    fset: Callable[[Any, Any], None] | None

    def __init__(
        self,
        name: str,
        kind: str,
        misses: tuple[type[BaseException], ...],
        fget: Callable[[Any], Any],
        fset: Callable[[Any, Any], None] | None = None,
        doc: str | None = None,
    ) -> None: ...
    @overload
    def __get__(self, instance: None, owner: type | None = None) -> ScopedAttribute: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Any: ...
    def __set__(self, instance: object, value: Any) -> None: ...
    def __delete__(self, instance: object) -> None: ...
    def __set_name__(self, owner: type, name: str) -> None: ...

class EntryFields:
    """The fields of a session's entry (see ``scoped.lifecycle.Entry``)."""

    obj: Any
    scope: Any
    attached: Any
    slot: Any
    watcher: Any
    created: float
    logged: bool
    warned: bool
    @property
    def _number(self) -> int: ...
    @property
    def _pid(self) -> int: ...
    _thread: Any
    def __init__(self, obj: object, scope: object, thread: Any = None) -> None: ...

class LedgerFields:
    """The fields of a registry's ledger (see ``scoped.registry._ledger``)."""

    lock: Any
    removed: int
    cleaned_up: int
    @property
    def _entries(self) -> dict[Any, None]: ...
    @property
    def _claimed(self) -> set[Any]: ...
    def settle(self, entry: Any, *, removed: bool) -> bool: ...
