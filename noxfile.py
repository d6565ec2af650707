"""The test matrix: every supported CPython with each SQLAlchemy series it installs.

``nox -l`` lists the legs and ``nox -s NAME`` runs one; ``make test`` runs the
legs tagged ``fast`` (the newest Python found, SQLAlchemy 2.1 and 2.0) and
``make matrix`` (which CI runs) all of them: every Python with the C
extension, and without it where the proxies use it, the oldest supported
SQLAlchemy once, the checks once, and the test suite against the built wheel.

Interpreters are looked up on ``PATH`` and in pyenv's versions, never
downloaded. A missing one skips its legs with a line saying so, or fails the
run when ``SCOPED_REQUIRE_PYTHONS`` is set (CI sets it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nox

#: The CPython releases the package supports: the ``Programming Language``
#: classifiers and ``requires-python`` must match (tests/test_packaging.py).
PYTHONS = ("3.10", "3.11", "3.12", "3.13")

#: The SQLAlchemy series tested, newest first, with the first Python each
#: installs on (SQLAlchemy 2.1 requires Python 3.11).
SQLALCHEMY = {
    "2.1": ("sqlalchemy>=2.1,<2.2", "3.11"),
    "2.0": ("sqlalchemy>=2.0.35,<2.1", "3.10"),
}
#: The oldest supported release, tested once, on the oldest Python.
FLOOR = "2.0.35"
#: The proxies use the C extension below this Python (scoped.SPEEDUPS);
#: from it on, a leg without the extension would run the same code.
EXTENSION_USED_BELOW = "3.12"

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
PROJECT = "scoped-registry"
#: Written by tools/proxies.py; tests compare them with what it writes now.
GENERATED = ("scoped/proxies/_session_spec.py", "scoped/proxies/_session_typing.py")
REQUIRE_PYTHONS = os.environ.get("SCOPED_REQUIRE_PYTHONS", "") not in {"", "0"}

nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = REQUIRE_PYTHONS
# Legs keep their environment between runs; installing into it again is a
# no-op but for this project, which is rebuilt each time (its C extension).
nox.options.reuse_venv = "yes"
# uv would otherwise fetch a missing interpreter.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


_PROBE = (
    "import platform, sys, sysconfig; "
    "print(platform.python_implementation(), '%d.%d' % sys.version_info[:2], "
    "bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
)


def _is_cpython(executable: str, version: str) -> bool:
    """Whether *executable* runs GIL-enabled CPython *version* (a shim may not)."""
    try:
        probe = subprocess.run(
            [executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return probe.returncode == 0 and probe.stdout.split() == [
        "CPython",
        version,
        "False",
    ]


def _find_interpreter(version: str) -> str | None:
    """A CPython *version* executable: ``pythonX.Y`` on PATH, else pyenv's newest."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = pyenv.glob(f"versions/{version}.*/bin/python{version}")
    candidates += sorted(
        (str(path) for path in installed),
        key=lambda path: _version(re.findall(r"/(\d+\.\d+\.\d+)/", path)[-1]),
        reverse=True,
    )
    return next(
        (found for found in candidates if found and _is_cpython(found, version)),
        None,
    )


#: Each supported Python: an executable, or its version when it is missing
#: (nox then reports the legs as skipped, or failed, for that reason).
INTERPRETERS = {version: _find_interpreter(version) or version for version in PYTHONS}
FOUND = [version for version in PYTHONS if INTERPRETERS[version] != version]
#: ``make test`` runs on the newest Python this machine has.
NEWEST = FOUND[-1] if FOUND else PYTHONS[-1]


@dataclass(frozen=True)
class Leg:
    """One run of the whole test suite."""

    python: str
    sqlalchemy: str  # a series from SQLALCHEMY, or the FLOOR release
    extension: bool = True

    @property
    def name(self) -> str:
        pure = "" if self.extension else "-pure"
        return f"tests-{self.python}-sa{self.sqlalchemy}{pure}"

    @property
    def requirement(self) -> str:
        if self.sqlalchemy in SQLALCHEMY:
            return SQLALCHEMY[self.sqlalchemy][0]
        return f"sqlalchemy=={self.sqlalchemy}"

    @property
    def tags(self) -> list[str]:
        # "fast": make test's legs; "rest": every other session (make matrix-rest).
        if self.sqlalchemy == FLOOR:
            return ["tests", "floor", "rest"]
        if not self.extension:
            return ["tests", "pure", "rest"]
        return ["tests", "fast"] if self.python == NEWEST else ["tests", "rest"]


def _legs() -> list[Leg]:
    legs = []
    for python in reversed(PYTHONS):
        series = [
            name
            for name, (_, first) in SQLALCHEMY.items()
            if _version(python) >= _version(first)
        ]
        legs += [Leg(python, name) for name in series]
        if _version(python) < _version(EXTENSION_USED_BELOW):
            legs.append(Leg(python, series[0], extension=False))
    legs.append(Leg(PYTHONS[0], FLOOR))
    return legs


_REPORT = """
import importlib.util, platform, sys, sqlalchemy, scoped
from scoped.lifecycle import Entry
from scoped.registry._ledger import Ledger
built = importlib.util.find_spec("scoped._speedups") is not None
compiled = [c.__name__ for c in (Entry, Ledger) if "_speedups" in c.__base__.__module__]
print(
    f"CPython {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
    f"C extension built: {built}, used by the proxies: {scoped.SPEEDUPS}, "
    f"by {' and '.join(compiled) or 'nothing else'}, scoped from {scoped.__file__}"
)
if sys.argv[1] == "extension" and (not built or len(compiled) != 2):
    sys.exit("the C extension is not built or not used: the leg would test pure Python")
if sys.argv[1] == "pure" and (scoped.SPEEDUPS or compiled):
    sys.exit("SCOPED_NO_EXTENSIONS is set, yet the C extension is used")
"""


def _note_sqlalchemy(session: nox.Session, leg: Leg) -> None:
    """Say which SQLAlchemy the leg tests when it is not the newest."""
    newest, (_, first) = next(iter(SQLALCHEMY.items()))
    if leg.sqlalchemy == FLOOR:
        session.log(f"SQLAlchemy {FLOOR}: the oldest release scoped supports")
    elif _version(leg.python) < _version(first):
        session.log(
            f"SQLAlchemy {leg.sqlalchemy}: {newest} requires Python >= {first}, "
            f"so Python {leg.python} tests the newest {leg.sqlalchemy} release"
        )


def _define(leg: Leg) -> None:
    def run(session: nox.Session) -> None:
        _note_sqlalchemy(session, leg)
        session.install("--reinstall-package", PROJECT, "-e", ".[dev]", leg.requirement)
        # Empty means unset to scoped, whatever the caller's environment says.
        env = {"SCOPED_NO_EXTENSIONS": "" if leg.extension else "1"}
        mode = "extension" if leg.extension else "pure"
        session.run("python", "-c", _REPORT, mode, env=env, log=False)
        session.run("python", "-m", "pytest", *session.posargs, env=env)

    run.__doc__ = (
        f"The test suite on CPython {leg.python}, SQLAlchemy {leg.sqlalchemy}"
        + ("" if leg.extension else ", without the C extension")
    )
    nox.session(name=leg.name, python=INTERPRETERS[leg.python], tags=leg.tags)(run)


for _leg in _legs():
    _define(_leg)


# -- the checks, once -----------------------------------------------------------


def _dev(session: nox.Session) -> None:
    session.install(
        "--reinstall-package", PROJECT, "-e", ".[dev]", SQLALCHEMY["2.1"][0]
    )


@nox.session(python=INTERPRETERS[NEWEST], tags=["checks", "rest"])
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy --strict (scoped, tests, bench)."""
    _dev(session)
    session.run("ruff", "check", ".")
    session.run(
        "ruff", "format", "--check", "scoped", "tests", "bench", "tools", "noxfile.py"
    )
    session.run("mypy", "--strict", "scoped", "tests", "bench")


@nox.session(python=INTERPRETERS[NEWEST], tags=["checks", "rest"])
def proxies(session: nox.Session) -> None:
    """The committed Session spec and typed proxies are what tools/proxies.py writes."""
    _dev(session)
    session.run("python", "tools/proxies.py", "--check")


@nox.session(python=INTERPRETERS[NEWEST], tags=["checks", "rest"])
def docs(session: nox.Session) -> None:
    """The Sphinx documentation builds without a warning."""
    _dev(session)
    session.run("sphinx-build", "-n", "-W", "-b", "html", "docs", "docs/_build/html")


# -- the release artefacts --------------------------------------------------------


def _wheel_tag(python: str) -> str:
    return "cp" + python.replace(".", "")


def _package_files() -> set[str]:
    """What the wheel must hold of the source tree: scoped/ but the C source."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "scoped").rglob("*")
        if path.is_file()
        and path.suffix not in {".c", ".so", ".pyc"}
        and "__pycache__" not in path.parts
    }


_INSTALLED = """
import pathlib, sys, sysconfig
import scoped, scoped._speedups
site = [pathlib.Path(sysconfig.get_path(kind)) for kind in ("purelib", "platlib")]
for module in (scoped, scoped._speedups):
    where = pathlib.Path(module.__file__)
    if not any(where.is_relative_to(path) for path in site):
        sys.exit(f"{module.__name__} is imported from {where}, not the wheel")
"""


def _check_wheel(session: nox.Session, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_package_files() - names)
    if not any(re.fullmatch(r"scoped/_speedups\.cpython-.*\.so", n) for n in names):
        missing.append("scoped/_speedups.*.so (the compiled extension)")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        missing.append("*.dist-info/licenses/LICENSE")
    if missing:
        session.error(f"{wheel.name} lacks {', '.join(missing)}")
    session.log(f"{wheel.name}: {len(names)} files, none missing")


def _check_sdist(session: nox.Session, sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"LICENSE", "noxfile.py", "Makefile", "scoped/_speedups.c"}
    needed |= _package_files()
    needed |= {
        path.relative_to(ROOT).as_posix()
        for pattern in ("tests/*.py", "tools/*.py")
        for path in ROOT.glob(pattern)
    }
    missing = sorted(needed - names)
    if missing:
        session.error(f"{sdist.name} lacks {', '.join(missing)}")
    session.log(f"{sdist.name}: {len(names)} files, none missing")


def _built(python: str) -> tuple[Path, Path]:
    sdists = sorted(DIST.glob("*.tar.gz"))
    wheels = sorted(DIST.glob(f"*-{_wheel_tag(python)}-*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise RuntimeError(f"expected one sdist and one {python} wheel in {DIST}")
    return sdists[0], wheels[0]


@nox.session(python=INTERPRETERS[NEWEST], tags=["release", "rest"])
def package(session: nox.Session) -> None:
    """Build the sdist and, from it, the wheel; twine check; nothing missing."""
    session.install("build[uv]>=1.2", "twine>=6.1")
    shutil.rmtree(DIST, ignore_errors=True)
    session.run(
        "python", "-m", "build", "--installer", "uv", "--outdir", str(DIST), silent=True
    )
    session.run("twine", "check", "--strict", *(str(p) for p in DIST.iterdir()))
    # The sdist's metadata step leaves it in the tree, where `python -m
    # pytest` (the current directory on sys.path) would find it.
    shutil.rmtree(ROOT / "scoped_registry.egg-info", ignore_errors=True)
    sdist, wheel = _built(NEWEST)
    _check_sdist(session, sdist)
    _check_wheel(session, wheel)


@nox.session(
    python=INTERPRETERS[NEWEST],
    tags=["release", "rest"],
    requires=["package"],
    reuse_venv=False,
)
def wheel(session: nox.Session) -> None:
    """The test suite against the built wheel, installed in a fresh environment."""
    sdist, built = _built(NEWEST)
    session.install(f"{built}[dev]", SQLALCHEMY["2.1"][0])
    # The sdist's tree (tests, docs, configuration) without the package and
    # its metadata, so that `import scoped` and entry points find the wheel.
    # The generated sources stay, for the tests that check them against
    # tools/proxies.py: with no __init__.py beside them, they import nothing.
    tmp = Path(session.create_tmp())
    work = tmp / "suite"
    shutil.rmtree(work, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/", 1)[0]
        shutil.rmtree(tmp / top, ignore_errors=True)
        archive.extractall(tmp, filter="data")
    (tmp / top).rename(work)
    kept = {name: (work / name).read_bytes() for name in GENERATED}
    for package in ("scoped", "scoped_registry.egg-info"):
        shutil.rmtree(work / package)
    for name, content in kept.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
    session.chdir(work)
    env = {"SCOPED_NO_EXTENSIONS": ""}
    session.run("python", "-c", _REPORT, "extension", env=env, log=False)
    session.run("python", "-c", _INSTALLED, log=False)
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs, env=env
    )
