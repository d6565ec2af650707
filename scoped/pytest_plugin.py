"""pytest support, loaded automatically when :mod:`scoped` is installed.

* ``pytest --scoped-sqlalchemy`` runs a whole test suite with SQLAlchemy's
  scoped-session names rebound to :mod:`scoped`'s classes
  (:func:`scoped.sqlalchemy.install`), from before the test modules are
  collected until the run ends.
* The ``scoped_sqlalchemy`` fixture does the same for one test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scoped import sqlalchemy as scoped_sqlalchemy_module

_OPTION = "--scoped-sqlalchemy"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("scoped").addoption(
        _OPTION,
        action="store_true",
        default=False,
        help="rebind sqlalchemy's scoped_session and async_scoped_session to "
        "scoped's classes for the whole run (scoped.sqlalchemy.install())",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption(_OPTION):
        scoped_sqlalchemy_module.install()
        config.add_cleanup(scoped_sqlalchemy_module.uninstall)


@pytest.fixture
def scoped_sqlalchemy() -> Iterator[None]:
    """SQLAlchemy's scoped-session names stand for scoped's during the test."""
    with scoped_sqlalchemy_module.installed():
        yield
