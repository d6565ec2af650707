"""The public surface is what ``__all__`` says, and the API docs say the same."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).parent.parent / "docs" / "api.rst"
PUBLIC = [
    "scoped",
    "scoped.registry",
    "scoped.scopes",
    "scoped.asyncio",
    "scoped.integrations.wsgi",
    "scoped.integrations.asgi",
    "scoped.integrations.flask",
    "scoped.events",
]
INTERNAL = ["scoped.proxies", "scoped.lifecycle"]


def _sections() -> dict[str, str]:
    """The API page's parts, by the module each one's automodule names: from
    that directive to the next one."""
    text = API.read_text(encoding="utf-8")
    parts = re.split(r"^(?=\.\. automodule:: )", text, flags=re.MULTILINE)
    sections: dict[str, str] = {}
    for part in parts:
        named = re.match(r"\.\. automodule:: ([\w.]+)", part)
        if named is not None:
            sections[named.group(1)] = part
    return sections


def _documented_elsewhere(module: str, name: str) -> bool:
    """Whether *name* is another public module's own, re-exported here."""
    obj = getattr(importlib.import_module(module), name)
    return any(
        other != module
        and name in importlib.import_module(other).__all__
        and getattr(importlib.import_module(other), name) is obj
        for other in PUBLIC
    )


def _documented(module: str, body: str) -> set[str] | None:
    """The names a section documents, or None when autodoc takes ``__all__``."""
    automodule = re.search(
        rf"^\.\. automodule:: {re.escape(module)}\n((?:   .*\n)*)", body, re.MULTILINE
    )
    assert automodule is not None, f"{module} has no automodule directive"
    options = automodule.group(1)
    members = re.search(r":members:(.*)", options)
    names: set[str] = set()
    if members is not None:
        listed = members.group(1).strip()
        if not listed:
            return None  # every name in __all__
        names.update(name.strip() for name in listed.split(","))
    for directive in re.finditer(
        r"^\.\. (?:autoclass|autoexception|autofunction|py:data|py:function)::"
        r" (?:[\w.]*\.)?(\w+)$",
        body,
        re.MULTILINE,
    ):
        names.add(directive.group(1))
    return names


@pytest.mark.parametrize("module", PUBLIC)
def test_each_public_module_is_documented_as_its_all_says(module: str) -> None:
    """A public module documents exactly its ``__all__`` (the version aside)."""
    sections = _sections()
    assert module in sections, f"docs/api.rst has no section for {module}"
    exported = {
        name
        for name in importlib.import_module(module).__all__
        if name != "__version__" and not _documented_elsewhere(module, name)
    }
    documented = _documented(module, sections[module])
    if documented is not None:
        assert exported == documented


@pytest.mark.parametrize("module", INTERNAL)
def test_internal_modules_stay_out_of_the_api_docs(module: str) -> None:
    """Internals are not documented as API, so they can change freely."""
    assert module not in _sections()
    assert "internal" in (importlib.import_module(module).__doc__ or "")


def test_every_exported_name_exists() -> None:
    """Each name in a public ``__all__`` is importable from its module."""
    for module in PUBLIC:
        imported = importlib.import_module(module)
        missing = [name for name in imported.__all__ if not hasattr(imported, name)]
        assert [] == missing, module
