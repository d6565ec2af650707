from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

from scoped.lifecycle import Entry
from scoped.registry import Lookup, LookupKind, Registry

T = TypeVar("T")


class ProcessRegistry(Registry[T]):
    """Threads share one object (a thread-safe client); a fork makes its own."""

    scope_kind = "process"
    lookup = Lookup(LookupKind.CUSTOM, "{storage}[0]", (KeyError,))

    def __init__(self, createfunc: Callable[[], T], **options: Any) -> None:
        super().__init__(createfunc, **options)
        self._storage: dict[int, T] = {}
        self._entry: Entry | None = None

    def _get_or_create(self, factory: Callable[[], T] | None) -> T:
        with self.ledger.lock:  # one creation, whichever thread comes first
            if self._entry is None:
                entry = Entry((factory or self.createfunc)(), "process")
                self.ledger.add(entry)
                self._put(entry)
                self._announce(entry)
            elif factory is not None:
                raise RuntimeError("the process already holds an object")
            return self._storage[0]

    def _slot(self) -> Hashable:
        return "process"

    def _current_entry(self) -> Entry | None:
        return self._entry

    def _detach(self, entry: Entry, *, set_aside: bool = False) -> bool:
        found = self._entry is entry
        if found:
            self._reset_storage()
        return found

    def _put(self, entry: Entry) -> None:
        self._entry, self._storage[0] = entry, cast(T, entry.obj)

    def _reset_storage(self) -> None:
        self._entry = None
        self._storage.clear()
