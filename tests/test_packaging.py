"""The installed distribution's metadata promises what the test matrix proves.

The classifiers and ``requires-python`` are read from the installed
metadata (in CI, once from the built wheel itself) and compared with the
Pythons that ``noxfile.py`` runs the suite on.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOXFILE = ROOT / "noxfile.py"
# The installed distribution, not the egg-info a build may leave in the source
# tree (on sys.path under `python -m pytest`).
(DISTRIBUTION,) = importlib.metadata.distributions(
    name="scoped-registry",
    path=[entry for entry in sys.path if Path(entry or ".").resolve() != ROOT],
)


def _matrix_pythons() -> list[str]:
    """``PYTHONS`` as noxfile.py assigns it, read without importing nox."""
    module = ast.parse(NOXFILE.read_text(encoding="utf-8"))
    for node in module.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        if isinstance(target, ast.Name) and target.id == "PYTHONS":
            assert value is not None
            return list(ast.literal_eval(value))
    pytest.fail(f"{NOXFILE} assigns no PYTHONS")


def test_the_python_classifiers_are_the_matrix() -> None:
    """One ``Python :: 3.X`` classifier per Python the matrix tests, no other."""
    classified = [
        classifier.rsplit(" :: ", 1)[1]
        for classifier in DISTRIBUTION.metadata.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    ]

    assert _matrix_pythons() == classified


def test_requires_python_starts_at_the_oldest_python_tested() -> None:
    assert f">={_matrix_pythons()[0]}" == DISTRIBUTION.metadata["Requires-Python"]


def test_the_license_is_mit_and_its_text_is_installed() -> None:
    """The metadata names MIT, and the file it points to is in the distribution."""
    metadata = DISTRIBUTION.metadata

    assert "MIT" == metadata["License-Expression"]
    assert ["LICENSE"] == metadata.get_all("License-File")
    files = {file.as_posix(): file for file in DISTRIBUTION.files or []}
    shipped = [name for name in files if name.endswith(".dist-info/licenses/LICENSE")]
    assert 1 == len(shipped), sorted(files)
    text = files[shipped[0]].read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "The scoped authors" in text
