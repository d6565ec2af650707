"""The report as one JSON document, for programs."""

from __future__ import annotations

import json

from scoped.report._model import Report

__all__ = ["render"]


def render(report: Report) -> str:
    """The report's data as indented JSON, ending with a newline."""
    return json.dumps(report.data, indent=2) + "\n"
