"""Where the optional C extension is looked up, and switched off.

:mod:`scoped._speedups` is optional: without it (not built, or the
environment variable ``SCOPED_NO_EXTENSIONS`` set to any non-empty value)
every part it speeds up has a complete pure-Python equivalent.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["compiled"]


def compiled(name: str) -> Any | None:
    """*name* from :mod:`scoped._speedups`, or ``None`` if it is not in use."""
    if os.environ.get("SCOPED_NO_EXTENSIONS"):
        return None
    try:
        from scoped import _speedups
    except ImportError:  # not built: the pure-Python equivalents serve
        return None
    return getattr(_speedups, name)
