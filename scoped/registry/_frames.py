"""Scope frames: the ``scope()`` blocks open in each scope, innermost last.

A block either opens a fresh key (scopes that can, such as the context
scope) or sets the scope's current entry aside until it is left. The frames
of one scope form a stack, kept here by the scope's slot (its key, or the
thread) under the registry's lock, so that the end of a scope, a fork and
the block itself all see the same stack.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoped.lifecycle import Entry

__all__ = ["Frame", "Frames"]


class Frame:
    """One open ``scope()`` block: where, what it set aside or opened."""

    __slots__ = ("opened", "saved", "slot")

    def __init__(self, slot: Hashable, saved: Entry | None, opened: Any = None) -> None:
        self.slot = slot
        #: The entry set aside until the block is left, if any.
        self.saved = saved
        #: What the scope opened for the block (a fresh key), if anything.
        self.opened = opened


class Frames:
    """The stacks of open frames, by slot. Call with the registry's lock held."""

    __slots__ = ("_stacks",)

    def __init__(self) -> None:
        self._stacks: dict[Hashable, list[Frame]] = {}

    def __bool__(self) -> bool:
        return bool(self._stacks)

    def push(self, frame: Frame) -> None:
        self._stacks.setdefault(frame.slot, []).append(frame)

    def innermost(self, slot: Hashable) -> Frame | None:
        stack = self._stacks.get(slot)
        return stack[-1] if stack else None

    def pop(self, frame: Frame) -> None:
        """Drop *frame*, the innermost of its slot."""
        stack = self._stacks[frame.slot]
        stack.pop()
        if not stack:
            del self._stacks[frame.slot]

    def sets_aside(self, slot: Hashable, entry: Entry) -> bool:
        """Whether an open block of *slot* set *entry* aside."""
        return any(frame.saved is entry for frame in self._stacks.get(slot, ()))

    def end(self, slot: Hashable) -> list[Entry]:
        """The scope of *slot* ended: drop its blocks; return what they set aside.

        No block of an ended scope can be left any more.
        """
        saved: list[Entry] = []
        for frame in self._stacks.pop(slot, ()):
            if frame.saved is not None:
                saved.append(frame.saved)
                frame.saved = None
        return saved

    def after_fork(self, thread: threading.Thread) -> list[Entry]:
        """In a forked child: keep the blocks open, minus the parent's entries.

        The forking thread's blocks can still be left (each removes the
        child's own session); what they set aside belongs to the parent and
        is returned, to be parked. *thread* is the thread that forked: the
        other threads' stacks (slots that are threads) died with them.
        """
        orphans: list[Entry] = []
        for slot, stack in list(self._stacks.items()):
            if isinstance(slot, threading.Thread) and slot is not thread:
                del self._stacks[slot]
            for frame in stack:
                if frame.saved is not None:
                    orphans.append(frame.saved)
                    frame.saved = None
        return orphans
