"""How arbitrary values appear in log lines: bounded, and without secrets."""

from __future__ import annotations

import reprlib

__all__ = ["bounded_repr", "mask_url"]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def bounded_repr(obj: object) -> str:
    """A repr short enough for a log line, whatever *obj* is."""
    try:
        return _repr.repr(obj)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break logging
        return f"<{type(obj).__name__} repr failed: {type(exc).__name__}>"


def mask_url(url: object) -> str:
    """Render a database URL with its password hidden."""
    render = getattr(url, "render_as_string", None)
    if callable(render):
        return str(render(hide_password=True))
    return bounded_repr(url)
