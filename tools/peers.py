"""Run other projects' own test suites with scoped's classes swapped in.

Each peer's sdist is downloaded from the package index once (cached under
``.cache/peers``), and its tests that build a ``scoped_session`` run twice in
this interpreter's environment: pristine, and with
``pytest --scoped-sqlalchemy`` (``scoped.sqlalchemy.install()``). A peer
fails unless the swapped run passes every test the pristine run passes and
constructed at least one of scoped's sessions::

    python tools/peers.py              # every peer, with this venv's SQLAlchemy
    python tools/peers.py flask-sqlalchemy zope.sqlalchemy

Outcomes come from each run's JUnit XML, test by test; the pytest output is
kept in ``.cache/peers/logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "peers"
TOOLS = Path(__file__).resolve().parent
#: One peer's pytest run may not take longer than this (seconds).
RUN_TIMEOUT = 900


@dataclass(frozen=True)
class Peer:
    """A project whose test suite builds scoped sessions, and how to run it."""

    name: str
    #: The distribution on the package index and its release.
    dist: str
    release: str
    #: pytest arguments, relative to the unpacked sdist.
    args: tuple[str, ...]
    #: Added to ``sys.path`` (relative to the unpacked sdist): the sources.
    paths: tuple[str, ...] = ()
    #: Interpreter flags: ``-s`` keeps SQLAlchemy's conftest from putting the
    #: sdist's uncompiled ``lib`` ahead of the installed release.
    python_flags: tuple[str, ...] = ()
    #: Test modules written next to the sources: ``{file name: source}``.
    shims: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def peers() -> list[Peer]:
    """The peer suites, SQLAlchemy's at the installed release."""
    return [
        Peer(
            name="sqlalchemy",
            dist="SQLAlchemy",
            release=version("sqlalchemy"),
            args=(
                "test/orm/test_scoping.py",
                "test/ext/asyncio/test_scoping.py",
                "--dburi=sqlite://",
                "--dburi=sqlite+aiosqlite://",
            ),
            python_flags=("-s",),
        ),
        Peer(
            name="flask-sqlalchemy",
            dist="Flask-SQLAlchemy",
            release="3.1.1",
            args=("tests",),
            paths=("src",),
        ),
        Peer(
            name="zope.sqlalchemy",
            dist="zope.sqlalchemy",
            release="4.1",
            # Its tests live inside the package, beside a module named
            # sqlalchemy; pytest would put that directory on sys.path, so a
            # module outside it imports the test cases instead.
            args=("peer_tests/test_zope_sqlalchemy.py",),
            paths=("src",),
            shims={
                "peer_tests/test_zope_sqlalchemy.py": (
                    "from zope.sqlalchemy.tests import (  # noqa: F401\n"
                    "    MultipleEngineTests,\n"
                    "    RetryTests,\n"
                    "    ZopeSQLAlchemyTests,\n"
                    ")\n"
                )
            },
        ),
        Peer(
            name="factory_boy",
            dist="factory_boy",
            release="3.3.3",
            args=("tests/test_alchemy.py",),
            paths=(".",),
        ),
    ]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _cached_sdist(peer: Peer, sdists: Path) -> Path | None:
    wanted = f"{_normalized(peer.dist)}-{peer.release}"
    for path in sdists.glob("*"):
        stem = path.name.removesuffix(".tar.gz").removesuffix(".zip")
        project, _, release = stem.rpartition("-")
        if f"{_normalized(project)}-{release}" == wanted:
            return path
    return None


def sdist(peer: Peer) -> Path:
    """The peer's sdist, downloaded unless it is already in the cache."""
    sdists = CACHE / "sdists"
    found = _cached_sdist(peer, sdists)
    if found is not None:
        return found
    sdists.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet"),
            *("--no-binary", ":all:", "--no-deps", "--dest", str(sdists)),
            f"{peer.dist}=={peer.release}",
        ],
        check=True,
    )
    found = _cached_sdist(peer, sdists)
    if found is None:
        msg = f"pip downloaded no sdist of {peer.dist}=={peer.release}"
        raise RuntimeError(msg)
    return found


def unpacked(peer: Peer) -> Path:
    """The peer's unpacked sdist, with its shims; unpacked once."""
    target = CACHE / "src" / f"{peer.name}-{peer.release}"
    done = target / ".unpacked"
    if not done.exists():
        archive = sdist(peer)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # Pythons before the extraction filters
                tar.extractall(target)
        (top,) = (p for p in target.iterdir() if p.is_dir())
        done.write_text(top.name)
    root = target / done.read_text()
    for name, source in peer.shims.items():
        shim = root / name
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(source)
    return root


@dataclass
class Run:
    """One pytest run of a peer: each test's outcome and the sessions built."""

    outcomes: dict[str, str]
    counts: dict[str, int]
    seconds: float

    def passed(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome == "passed"}


def _outcomes(junit: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        # A teardown error is reported beside the test's own pass: not a pass.
        previous = outcomes.get(test, "passed")
        outcome = min(kinds) if kinds else "passed"
        outcomes[test] = outcome if previous == "passed" else previous
    return outcomes


def run(peer: Peer, root: Path, *, swapped: bool) -> Run:
    """Run the peer's tests once, pristine or swapped."""
    # Logs name the SQLAlchemy release: the peers run in more than one venv.
    label = f"sa{version('sqlalchemy')}-{'swapped' if swapped else 'pristine'}"
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    junit = logs / f"{peer.name}-{label}.xml"
    report = logs / f"{peer.name}-{label}.json"
    for stale in (junit, report):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        **peer.env,
        "PYTHONPATH": os.pathsep.join(
            [*(str(root / p) for p in peer.paths), str(TOOLS)]
        ),
        "SCOPED_PEERS_REPORT": str(report),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [
        *(sys.executable, *peer.python_flags, "-m", "pytest", *peer.args),
        *("-p", "no:cacheprovider", "-p", "peers_plugin", f"--junitxml={junit}"),
        *(("--scoped-sqlalchemy",) if swapped else ("-p", "no:scoped")),
    ]
    started = time.perf_counter()
    with (logs / f"{peer.name}-{label}.log").open("w") as log:
        subprocess.run(
            command,
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    seconds = time.perf_counter() - started
    if not junit.exists() or not report.exists():
        msg = f"{peer.name} ({label}) did not run; see {logs / peer.name}-{label}.log"
        raise RuntimeError(msg)
    return Run(_outcomes(junit), json.loads(report.read_text()), seconds)


def check(peer: Peer) -> list[str]:
    """Run one peer both ways; print its line; return what went wrong."""
    root = unpacked(peer)
    pristine = run(peer, root, swapped=False)
    swapped = run(peer, root, swapped=True)
    total = len(pristine.outcomes)
    ours = swapped.counts["scoped"] + swapped.counts["scoped_async"]
    print(
        f"{peer.name} {peer.release}: pristine {len(pristine.passed())}/{total} "
        f"passed, swapped {len(swapped.passed())}/{len(swapped.outcomes)} passed; "
        f"scoped sessions built {swapped.counts['scoped']} "
        f"+ {swapped.counts['scoped_async']} async "
        f"(SQLAlchemy's own: {swapped.counts['sqlalchemy']} "
        f"+ {swapped.counts['sqlalchemy_async']} async; pristine "
        f"{pristine.counts['sqlalchemy']} + {pristine.counts['sqlalchemy_async']}) "
        f"[{pristine.seconds + swapped.seconds:.0f}s]",
        flush=True,
    )
    problems = [
        f"{peer.name}: {test} passes pristine but is "
        f"{swapped.outcomes.get(test, 'missing')} swapped"
        for test in sorted(pristine.passed() - swapped.passed())
    ]
    if not pristine.passed():
        problems.append(f"{peer.name}: no test passes even pristine")
    if ours == 0:
        problems.append(f"{peer.name}: the swapped run built no scoped session")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="peers to run (default: all)")
    options = parser.parse_args(argv)
    chosen = [p for p in peers() if not options.names or p.name in options.names]
    unknown = set(options.names) - {p.name for p in chosen}
    if unknown:
        known = [p.name for p in peers()]
        parser.error(f"unknown peers {sorted(unknown)}; known: {known}")
    problems: list[str] = []
    for peer in chosen:
        problems += check(peer)
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = len({problem.partition(":")[0] for problem in problems})
    print(f"peers: {len(chosen) - failed} passed, {failed} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
