"""``python -m scoped``: the demo workload and the log report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a ``scoped`` subcommand and return its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m scoped",
        description="scoped: scoped sessions that clean up after themselves.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="serve a JSON API under concurrent HTTP load and check teardown"
    )
    report = commands.add_parser("report", help="summarise a JSON-lines lifecycle log")
    # Each subcommand declares its own options; importing lazily keeps
    # `python -m scoped report` free of the demo's SQLAlchemy import.
    from scoped import demo as demo_module
    from scoped import report as report_module

    demo_module.add_arguments(demo)
    report_module.add_arguments(report)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo_module.run(args)
    return report_module.run(args)


if __name__ == "__main__":
    sys.exit(main())
