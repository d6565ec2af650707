"""Argument types shared by the ``python -m scoped`` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["at_least", "not_negative", "positive"]


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than *minimum*."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            msg = f"expected a whole number >= {minimum}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return convert


positive = at_least(1)
not_negative = at_least(0)
