"""Create + remove on the thread scope, counted in instructions.

Timings on a shared two-CPU machine move by several percent from run to run;
instruction counts under ``valgrind --tool=callgrind`` move by about half a
percent (same binary, hash seed 0; what remains varies with addresses and
the garbage collector's timing), so differences of a percent or more show.
This runs ``db(); db.remove()`` with a real SQLAlchemy ``Session`` on SQLite,
through ``scoped.scoped_session`` and ``sqlalchemy.orm.scoped_session``, each
in its own process, N times and zero times; the difference divided by N is
the cost of one cycle, start-up and imports excluded. It prints both and
their ratio (SQLAlchemy's cycle is the baseline, as in
``bench/bench_scopes.py``'s create+remove row).

Usage: ``python bench/bench_instructions.py [--cycles N]`` (needs valgrind;
about four minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# The workload, run by each child process.
_CHILD = """
import sys
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session as theirs, sessionmaker
import scoped
which, cycles = sys.argv[1], int(sys.argv[2])
factory = sessionmaker(create_engine("sqlite://"))
db = scoped.scoped_session(factory) if which == "ours" else theirs(factory)
for _ in range(200):  # warm-up: caches, specialisation, the thread's watcher
    db(); db.remove()
for _ in range(cycles):
    db(); db.remove()
"""


def _instructions(which: str, cycles: int, workdir: str) -> int:
    """The instructions one child process executes in all."""
    out = os.path.join(workdir, f"callgrind.{which}.{cycles}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            _CHILD,
            which,
            str(cycles),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    collected = re.search(r"Collected : (\d+)", result.stderr)
    if collected is None:
        msg = f"callgrind printed no total:\n{result.stderr[-2000:]}"
        raise RuntimeError(msg)
    return int(collected.group(1))


def per_cycle(which: str, cycles: int, workdir: str) -> float:
    """Instructions of one ``db(); db.remove()`` cycle."""
    full = _instructions(which, cycles, workdir)
    empty = _instructions(which, 0, workdir)
    return (full - empty) / cycles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind); nothing measured")
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        ours = per_cycle("ours", args.cycles, workdir)
        theirs = per_cycle("sqlalchemy", args.cycles, workdir)
    print(f"Python {sys.version.split()[0]}, {args.cycles} cycles each, hash seed 0")
    print(f"{'create+remove, thread scope':32} {'instructions':>14}")
    print(f"{'scoped.scoped_session':32} {ours:14,.0f}")
    print(f"{'sqlalchemy.orm.scoped_session':32} {theirs:14,.0f}")
    print(f"{'ratio':32} {ours / theirs:14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
