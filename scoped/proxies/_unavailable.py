"""The proxy member for a spec member that the installed class lacks."""

from __future__ import annotations

import contextlib
import importlib.metadata
from typing import Any

from scoped.errors import UnavailableMemberError
from scoped.proxies._members import Member

__all__ = ["Unavailable"]


class Unavailable:
    """Raises :exc:`~scoped.UnavailableMemberError` when read, set or called
    through a proxy; read from the class, it is itself, so that ``help()``
    and Sphinx show its docstring (which says which releases have it)."""

    def __init__(self, message: str, name: str, doc: str) -> None:
        self.message = message
        self.name = name
        self.__doc__ = doc

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        raise UnavailableMemberError(self.message, name=self.name, obj=instance)

    def __set__(self, instance: object, value: object) -> None:
        raise UnavailableMemberError(self.message, name=self.name, obj=instance)

    def __repr__(self) -> str:
        return f"<unavailable member {self.name!r}: {self.message}>"

    @classmethod
    def of(
        cls, member: Member, proxy_qualname: str, target: type, doc: str
    ) -> Unavailable:
        """The stand-in for *member* on the proxy class *proxy_qualname*."""
        installed = None
        if member.releases is not None:
            # The release of the library the spec names (a subclass of its
            # class may live in another package, whose attributes may warn).
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                installed = importlib.metadata.version(member.releases.library)
        requirement = (
            f"is not available: {target.__qualname__} has no {member.name!r}"
            if member.releases is None
            else member.releases.requirement()
        )
        message = f"{proxy_qualname}.{member.name} {requirement}"
        if installed is not None and member.releases is not None:
            message += f"; {member.releases.library} {installed} is installed"
        return cls(message, member.name, doc)
