"""Tests that run once per implementation: pure Python, and the C extension.

Each part of :mod:`scoped._speedups` has a pure-Python equivalent; a test
parametrised with :func:`both` runs on each, and skips the compiled run
(saying why) where the extension is not in use.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["NOT_IN_USE", "both"]

NOT_IN_USE = "scoped._speedups is not built, or SCOPED_NO_EXTENSIONS is set"


def both(python: object, compiled: object, *, in_use: bool) -> list[Any]:
    """Parameters ``python`` and ``compiled``; the second skips unless *in_use*."""
    return [
        pytest.param(python, id="python"),
        pytest.param(
            compiled,
            id="compiled",
            marks=pytest.mark.skipif(not in_use, reason=NOT_IN_USE),
        ),
    ]
