"""Sphinx configuration for the scoped documentation."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst.directives.admonitions import Admonition
from docutils.parsers.rst.states import Inliner
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Local extensions: the generated parts of the pages.
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

from scoped import __version__  # noqa: E402 - needs the path above

project = "scoped"
author = "The scoped authors"
copyright = f"2026, {author}"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "scoped_events",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

html_theme = "alabaster"
html_title = f"scoped {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

#: The typed Session proxies: SQLAlchemy's annotations and docstrings, verbatim.
SESSION_TYPING = ROOT / "scoped" / "proxies" / "_session_typing.py"


def _sqlalchemy_targets() -> set[str]:
    """Names the proxied ``Session`` docstrings and annotations refer to.

    They live in SQLAlchemy's documentation, which cannot be linked without
    network access at build time (no intersphinx), so they stay plain text.
    """
    source = SESSION_TYPING.read_text(encoding="utf-8")
    names = {
        alias.asname or alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
    }
    roles = re.findall(r":(?:class|meth|attr|func|exc|obj|data):`([^`]+)`", source)
    # "title <target>" or "~.target": keep the bare target.
    names.update(role.rsplit("<", 1)[-1].rstrip(">").lstrip("~.!") for role in roles)
    return names


nitpick_ignore = [("py:class", name) for name in sorted(_sqlalchemy_targets())]
nitpick_ignore += [
    (f"py:{kind}", name)
    for kind in ("meth", "attr", "func", "exc", "obj", "data")
    for _, name in list(nitpick_ignore)
]
nitpick_ignore_regex = [
    # SQLAlchemy's own names; those with its internal docs prefixes
    # (``_orm.Session``) are handled by _sqlalchemy_prefix below.
    (r"py:.*", r"sqlalchemy(\..*)?"),
    # The standard library's documentation is not linked either.
    (
        r"py:.*",
        r"(collections\.abc|threading|typing|contextvars|logging|pathlib"
        r"|asyncio|os|weakref)(\..*)?",
    ),
    # Web frameworks' names and the WSGI/ASGI type aliases in annotations.
    (r"py:.*", r"(flask|starlette|fastapi|werkzeug|_typeshed)(\..*)?"),
    (r"py:class", r"(WSGIApplication|WSGIEnvironment|StartResponse|ASGIApp)"),
    # Private names (type variables, internal helpers) are never documented.
    (r"py:.*", r"(.*\.)?_[^.]*"),
    # The internal modules' types, where public signatures name them.
    (r"py:class", r"(scoped\.lifecycle\.(_\w+\.)?)?(Entry|Events)"),
    # Labels, glossary terms and pages of SQLAlchemy's documentation.
    (r"std:(ref|term)", r".*"),
    (r"std:doc", r"[a-z_]+/.*"),
]


def _paramref(  # noqa: PLR0917 - the docutils role signature
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Inliner,
    options: dict[str, object] | None = None,
    content: list[str] | None = None,
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """SQLAlchemy's ``:paramref:`` role (from sphinx-paramlinks), as text."""
    match = re.fullmatch(r"(.*?)\s*<(.*)>", text)
    shown = match[1] if match else text.lstrip("~.").removeprefix("_orm.")
    return [nodes.literal(rawtext, shown)], []


class _Legacy(Admonition):
    """SQLAlchemy's ``.. legacy::`` note, as a titled admonition."""

    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        self.arguments = ["Legacy"]
        return super().run()


def _sqlalchemy_prefix(
    app: Sphinx, env: object, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """Show ``:class:`_orm.Session``` as ``Session``, as SQLAlchemy's docs do.

    The target stays unresolved (there is nothing to link to); only the
    internal module prefix is dropped from the text.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not re.match(r"_[a-z]+\.", target):
        return None
    text = contnode.astext()
    shown = re.sub(r"^_[a-z]+\.([a-z_]+\.)*", "", text)
    return nodes.literal(text, shown, classes=contnode.get("classes", []))


def setup(app: Sphinx) -> None:
    app.add_role("paramref", _paramref)
    app.add_directive("legacy", _Legacy)
    app.connect("missing-reference", _sqlalchemy_prefix)
