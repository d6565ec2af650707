"""pytest plugin for tools/peers.py: counts whose scoped sessions a suite built.

Loaded with ``-p peers_plugin``; at the end of the run it writes, to the JSON
file named by ``SCOPED_PEERS_REPORT``, how many ``scoped.scoped_session`` (and
``scoped.asyncio.async_scoped_session``) instances were constructed, and how
many of SQLAlchemy's own. A swapped run that built none of ours proves
nothing, so the runner fails it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_counts = {"scoped": 0, "scoped_async": 0, "sqlalchemy": 0, "sqlalchemy_async": 0}


def _count_ours() -> None:
    from scoped.session import scoped_session

    attach = scoped_session._scoped_attach

    def counting_attach(self: Any, registry: Any) -> None:
        from scoped.asyncio import async_scoped_session

        kind = "scoped_async" if isinstance(self, async_scoped_session) else "scoped"
        _counts[kind] += 1
        attach(self, registry)

    # Every constructor attaches its registry once, through this method.
    scoped_session._scoped_attach = counting_attach  # type: ignore[method-assign]


def _count_theirs(cls: type, kind: str) -> None:
    init = vars(cls)["__init__"]

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        _counts[kind] += 1
        init(self, *args, **kwargs)

    setattr(cls, "__init__", counting_init)  # noqa: B010 - mypy forbids the assignment


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from scoped import _sqlalchemy

    _count_ours()
    # Ours never run SQLAlchemy's __init__: their own comes first.
    _count_theirs(_sqlalchemy.original_scoped_session(), "sqlalchemy")
    _count_theirs(_sqlalchemy.original_async_scoped_session(), "sqlalchemy_async")


def pytest_unconfigure(config: pytest.Config) -> None:
    target = os.environ.get("SCOPED_PEERS_REPORT")
    if target:
        Path(target).write_text(json.dumps(_counts))
