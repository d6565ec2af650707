"""Write the proxies of SQLAlchemy's ``Session`` as source, for type checkers.

At run time :func:`scoped.proxies.proxy_class` generates the forwarding
members, which type checkers cannot see. This module feeds the same member
discovery, forwarding rules and docstrings into a source writer instead of
``exec``, with SQLAlchemy's own annotations, and keeps the result committed
as :mod:`scoped.proxies._session_typing`::

    python -m scoped.proxies.typing_source --write   # make proxies
    python -m scoped.proxies.typing_source --check   # make check-proxies

Annotation names are imported from the module that defines them, found by
reading SQLAlchemy's source, so ``mypy --strict`` (no implicit re-exports)
accepts them. Writing needs Python 3.11+ for :func:`typing.get_overloads`;
the written module imports on any supported Python.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import dataclasses
import difflib
import functools
import importlib.util
import inspect
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoped.proxies._codegen import _unique, render_call, render_params
from scoped.proxies._docs import member_doc
from scoped.proxies._members import Kind, Member

__all__ = ["OUTPUT", "SourceError", "check", "main", "render", "write"]

#: The committed module this writer keeps up to date.
OUTPUT = Path(__file__).with_name("_session_typing.py")
COMMAND = "make proxies"
CLASS_NAME = "SessionProxies"
#: The same names typed ``Any``, for proxies of classes other than ``Session``.
ANY_CLASS_NAME = "AnyProxies"
LINE_LENGTH = 88
_INDENT = "    "


class SourceError(Exception):
    """The typed source cannot be written (a name or default is unresolvable)."""


# -- where names are defined -----------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """What a name in SQLAlchemy's source refers to.

    *name* is ``None`` when the name is bound to the module *module* itself.
    """

    module: str
    name: str | None


@dataclass(frozen=True)
class _Binding:
    kind: str  # "define", "import" (a module), "from" or "star"
    module: str = ""
    name: str = ""


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    # A package's own __init__ counts as one level already.
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those under ``if`` and ``try``.

    The ``else`` of ``if TYPE_CHECKING:`` is skipped: type checkers never
    see it, and neither should the names they are told to import.
    """
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body)
            if not _is_type_checking(node.test):
                yield from _statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _statements(block)
        else:
            yield node


def _targets(node: ast.stmt) -> Iterator[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id
    elif type(node).__name__ == "TypeAlias":  # ``type X = ...`` on 3.12+
        yield node.name.id  # type: ignore[attr-defined]


def _parse(module: str) -> tuple[ast.Module, bool]:
    """The syntax tree of *module*'s source, and whether it is a package."""
    spec = importlib.util.find_spec(module)
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is not None and origin.suffix != ".py":
        # Compiled (Cython) modules ship their pure Python source beside them,
        # which is also what type checkers read.
        origin = origin.with_name(f"{module.rpartition('.')[2]}.py")
    if spec is None or origin is None or not origin.is_file():
        msg = f"cannot read the source of module {module!r}"
        raise SourceError(msg)
    tree = ast.parse(origin.read_text(encoding="utf-8"), str(origin))
    return tree, spec.submodule_search_locations is not None


def _node_bindings(
    node: ast.stmt, module: str, is_package: bool
) -> Iterator[tuple[str, _Binding]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.asname, _Binding("import", alias.name)
            else:
                root = alias.name.partition(".")[0]
                yield root, _Binding("import", root)
    elif isinstance(node, ast.ImportFrom):
        source = _absolute(module, is_package, node)
        for alias in node.names:
            if alias.name == "*":
                yield "*", _Binding("star", source)
            else:
                yield alias.asname or alias.name, _Binding("from", source, alias.name)
    else:
        for name in _targets(node):
            yield name, _Binding("define")


@functools.cache
def _bindings(module: str) -> dict[str, list[_Binding]]:
    """Map each name bound at the top level of *module* to its bindings."""
    tree, is_package = _parse(module)
    found: dict[str, list[_Binding]] = {}
    for node in _statements(tree.body):
        for name, binding in _node_bindings(node, module, is_package):
            found.setdefault(name, []).append(binding)
    return found


def _is_module(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve(module: str, name: str, _seen: frozenset[str] = frozenset()) -> Ref:
    """Find the module that defines what *name* means in *module*.

    Re-imports are followed within *module*'s top-level package (other
    packages' public names are taken as imported: their stubs export them).
    Builtins resolve to :mod:`builtins`.
    """
    key = f"{module}:{name}"
    if key in _seen:
        msg = f"import cycle while resolving {name!r} in {module}"
        raise SourceError(msg)
    seen = _seen | {key}
    bindings = _bindings(module)
    for binding in bindings.get(name, ()):
        if binding.kind == "define":
            return Ref(module, name)
        if binding.kind == "import":
            return Ref(binding.module, None)
        return _follow(binding, module.partition(".")[0], seen)
    for star in bindings.get("*", ()):
        if name in _bindings(star.module):
            return resolve(star.module, name, seen)
    if hasattr(builtins, name):
        return Ref("builtins", name)
    msg = f"cannot tell where {name!r}, used in {module}, is defined"
    raise SourceError(msg)


def _follow(binding: _Binding, package: str, seen: frozenset[str]) -> Ref:
    """Where the name that ``from module import name`` brings in is defined."""
    submodule = f"{binding.module}.{binding.name}"
    if _is_module(submodule):
        return Ref(submodule, None)
    if binding.module.partition(".")[0] != package:
        return Ref(binding.module, binding.name)
    return resolve(binding.module, binding.name, seen)


# -- imports of the written module -----------------------------------------------


def _natural(text: str) -> tuple[Any, ...]:
    """Case-insensitive natural order, as ruff's import sorting uses."""
    parts = re.split(r"(\d+)", text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _member_rank(name: str) -> int:
    # Constants, then classes, then everything else (isort's order by type).
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        return 0
    if name[:1].isupper():
        return 1
    return 2


class Imports:
    """The names the written module uses, and where each comes from."""

    def __init__(self) -> None:
        self.refs: dict[str, Ref] = {}
        self.runtime: set[str] = set()

    def add(self, local: str, ref: Ref, *, runtime: bool) -> None:
        """Import *ref* as *local*; *runtime* names are needed when executed."""
        if ref.module == "builtins":
            return
        known = self.refs.setdefault(local, ref)
        if known != ref:
            msg = (
                f"the name {local!r} means both {known} and {ref}; the written "
                "module cannot import both"
            )
            raise SourceError(msg)
        if runtime:
            self.runtime.add(local)

    def render(self) -> list[str]:
        """Import lines: run-time imports, then a ``TYPE_CHECKING`` block."""
        typing_only = set(self.refs) - self.runtime
        runtime = set(self.runtime)
        if typing_only:
            self.add("TYPE_CHECKING", Ref("typing", "TYPE_CHECKING"), runtime=True)
            runtime.add("TYPE_CHECKING")
        lines = self._block(runtime, "")
        if typing_only:
            lines += ["", "if TYPE_CHECKING:", *self._block(typing_only, _INDENT)]
        return lines

    def _block(self, names: set[str], indent: str) -> list[str]:
        # Laid out as ruff's import sorting wants it: sections, straight
        # imports before "from" imports, modules in natural order, members
        # by type then name, and "as" imports in statements of their own.
        straight: list[tuple[str, str]] = []
        froms: dict[tuple[str, str | None], list[str]] = {}
        for local in names:
            ref = self.refs[local]
            module, name = ref.module, ref.name
            if name is None and "." in module:
                module, _, name = module.rpartition(".")
            if name is None:
                straight.append((module, local))
                continue
            alias = None if name == local else local
            froms.setdefault((module, alias), []).append(name)
        statements: list[tuple[tuple[Any, ...], str]] = []
        for module, local in straight:
            as_clause = "" if local == module else f" as {local}"
            statements.append(
                (
                    (_section(module), 0, _natural(module), local),
                    f"{indent}import {module}{as_clause}",
                )
            )
        for (module, alias), members in froms.items():
            members.sort(key=_member_key)
            text = ", ".join(members) + (f" as {alias}" if alias else "")
            line = f"{indent}from {module} import {text}"
            if len(line) > LINE_LENGTH and alias is None:
                inner = "".join(f"{indent}{_INDENT}{m},\n" for m in members)
                line = f"{indent}from {module} import (\n{inner}{indent})"
            first = _member_key(members[0])
            key = (_section(module), 1, _natural(module), first, alias or "")
            statements.append((key, line))
        statements.sort()
        out: list[str] = []
        for i, (key, line) in enumerate(statements):
            if i and key[0] != statements[i - 1][0][0]:
                out.append("")
            out.append(line)
        return out


def _member_key(name: str) -> tuple[Any, ...]:
    return (_member_rank(name), _natural(name), name)


def _section(module: str) -> int:
    return 0 if module.partition(".")[0] in sys.stdlib_module_names else 1


# -- annotations and defaults ----------------------------------------------------


def _names(expression: str) -> Iterator[str]:
    """The free names an annotation or default expression uses."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        msg = f"cannot parse the expression {expression!r}: {e}"
        raise SourceError(msg) from None
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A quoted forward reference inside an annotation.
            yield from _names(node.value)
        elif isinstance(node, ast.Subscript) and _is_literal(node.value):
            stack.append(node.value)  # Literal["a"] holds values, not names
        else:
            stack.extend(ast.iter_child_nodes(node))


def _is_literal(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "Literal") or (
        isinstance(node, ast.Attribute) and node.attr == "Literal"
    )


class Writer:
    """Writes the typed proxy class for one target class."""

    def __init__(
        self,
        target: type,
        members: Sequence[Member],
        target_ref: str,
        proxy_ref: str,
        also_any: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.members = members
        #: Names besides the members that the ``Any`` class shadows.
        self.also_any = also_any
        self.target_ref = target_ref
        self.proxy_ref = proxy_ref
        self.imports = Imports()
        self.lines: list[str] = []
        self.target_name = self.use(target.__module__, target.__name__, runtime=True)

    def use(self, module: str, expression: str, *, runtime: bool) -> str:
        """Import every name *expression* (source in *module*) uses."""
        for name in _names(expression):
            self.imports.add(name, resolve(module, name), runtime=runtime)
        return expression

    def annotation(self, module: str, value: object) -> str:
        """Source for an annotation found in *module*."""
        if not isinstance(value, str):
            msg = (
                f"annotation {value!r} in {module} is not a string; the writer "
                "needs modules with 'from __future__ import annotations'"
            )
            raise SourceError(msg)
        return self.use(module, value, runtime=False)

    # -- members

    def method(self, member: Member) -> None:
        assert member.function is not None
        function = member.function
        for variant in _overloads(function):
            self.lines += [f"{_INDENT}@overload"]
            self.definition(
                member, variant, _forwarded(member, self.parameters(variant)), ["..."]
            )
        # Classmethods and staticmethods reach the target class, as at run time.
        target = "self._proxied" if member.kind is Kind.METHOD else self.target_name
        rest = _forwarded(member, self.parameters(function))
        await_ = "await " if member.is_coroutine else ""
        call = self.wrap(f"return {await_}{target}.{member.name}(", render_call(rest))
        doc = member_doc(_clean(member), self.target_ref, self.proxy_ref)
        self.definition(member, function, rest, [*_docstring(doc), *call])

    def definition(
        self,
        member: Member,
        function: Callable[..., Any],
        rest: list[inspect.Parameter],
        body: list[str],
    ) -> None:
        """Write one ``def`` of *member* with *function*'s signature (*rest*:
        its parameters after the first, as :meth:`parameters` renders them)
        and *body*."""
        taken = {p.name for p in rest}
        lead: list[inspect.Parameter] = []
        if member.kind is not Kind.STATICMETHOD:
            first = _unique("self" if member.kind is Kind.METHOD else "cls", taken)
            lead = [inspect.Parameter(first, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        if member.kind in (Kind.CLASSMETHOD, Kind.STATICMETHOD):
            self.lines.append(f"{_INDENT}@{member.kind.value}")
        returns = inspect.signature(function).return_annotation
        arrow = ""
        if returns is not inspect.Signature.empty:
            arrow = f" -> {self.annotation(function.__module__, returns)}"
        head = "async def" if member.is_coroutine else "def"
        module = function.__module__

        def text(value: object) -> str:
            return self.annotation(module, value)

        signature = render_params([*lead, *rest], str, annotation=text)
        line = f"{_INDENT}{head} {member.name}({signature}){arrow}:"
        if len(line) > LINE_LENGTH:
            separator = f",\n{_INDENT * 2}"
            signature = render_params(
                [*lead, *rest], str, annotation=text, separator=separator
            )
            line = (
                f"{_INDENT}{head} {member.name}(\n{_INDENT * 2}{signature},\n"
                f"{_INDENT}){arrow}:"
            )
        self.lines += [*line.split("\n"), *_indented(body, 2), ""]

    def parameters(self, function: Callable[..., Any]) -> list[inspect.Parameter]:
        """*function*'s parameters, each default replaced by its source text."""
        params = list(inspect.signature(function).parameters.values())
        sources = _default_sources(function)
        out = []
        for param in params:
            if param.default is inspect.Parameter.empty:
                out.append(param)
                continue
            source = sources.get(param.name)
            if source is None:
                source = _literal(param.default, function, param.name)
            self.use(function.__module__, source, runtime=True)
            # Rendered back through render_params(default_name=str).
            out.append(param.replace(default=source))
        return out

    def attribute(self, member: Member) -> None:
        module, returns = self.attribute_annotation(member.name)
        annotation = self.annotation(module, returns)
        doc = member_doc(_clean(member), self.target_ref, self.proxy_ref)
        self.lines += [
            f"{_INDENT}@property",
            f"{_INDENT}def {member.name}(self) -> {annotation}:",
            *_indented(_docstring(doc), 2),
            f"{_INDENT * 2}return self._proxied.{member.name}",
            "",
        ]
        if member.writable:
            self.lines += [
                f"{_INDENT}@{member.name}.setter",
                f"{_INDENT}def {member.name}(self, value: {annotation}) -> None:",
                f"{_INDENT * 2}self._proxied.{member.name} = value",
                "",
            ]

    def attribute_annotation(self, name: str) -> tuple[str, object]:
        """The module and annotation that declare the attribute *name*.

        A class-level annotation wins; otherwise the getter's return
        annotation, unless the getter is itself decorated (``no_autoflush`` is
        a property over a ``contextmanager``), whose annotation would describe
        the undecorated function.
        """
        for klass in self.target.__mro__:
            annotations = inspect.get_annotations(klass)
            if name in annotations:
                return klass.__module__, annotations[name]
        raw = inspect.getattr_static(self.target, name, None)
        getter = getattr(raw, "fget", None)
        if getter is not None and not hasattr(getter, "__wrapped__"):
            returns = getattr(getter, "__annotations__", {}).get("return")
            if returns is not None:
                return getter.__module__, returns
        return "typing", "Any"

    def wrap(self, head: str, arguments: str) -> list[str]:
        """Lines of a call ``head...)``, one argument a line when too long."""
        line = f"{head}{arguments})"
        if len(_INDENT * 2 + line) <= LINE_LENGTH or not arguments:
            return [line]
        # render_call's items are bare names, so ", " only ever separates them.
        return [head, *(f"{_INDENT}{a}," for a in arguments.split(", ")), ")"]

    def render(self) -> str:
        """The complete module source."""
        body: list[str] = []
        self.lines = body
        for member in self.members:
            if member.kind is Kind.ATTRIBUTE:
                self.attribute(member)
            else:
                self.method(member)
        if any(line.strip() == "@overload" for line in body):
            self.imports.add("overload", Ref("typing", "overload"), runtime=True)
        proxied = f"{_INDENT}def _proxied(self) -> {self.target_name}:"
        cls = [
            f"class {CLASS_NAME}:",
            f'{_INDENT}"""The members that :class:`scoped.scoped_session` forwards to',
            f"{_INDENT}:class:`{self.target.__module__}.{self.target.__qualname__}`.",
            "",
            f"{_INDENT}At run time they are generated on the class itself; this",
            f"{_INDENT}module shows the same members to type checkers.",
            f'{_INDENT}"""',
            "",
            f"{_INDENT}@property",
            proxied,
            f'{_INDENT * 2}"""The current scope\'s session."""',
            f"{_INDENT * 2}raise NotImplementedError",
            "",
            *body,
        ]
        while cls[-1] == "":
            cls.pop()
        self.imports.add("Any", Ref("typing", "Any"), runtime=False)
        imports = self.imports.render()
        exports = f'__all__ = ["{ANY_CLASS_NAME}", "{CLASS_NAME}"]'
        return "\n".join(
            [
                *_header(self.target),
                *imports,
                "",
                exports,
                "",
                "",
                *cls,
                "",
                "",
                *self.any_class(),
                "",
            ]
        )

    def any_class(self) -> list[str]:
        """The class that shadows every member with ``Any``."""
        return [
            f"class {ANY_CLASS_NAME}:",
            f'{_INDENT}"""The names of :class:`{CLASS_NAME}`, typed ``Any``.',
            "",
            f"{_INDENT}A proxy of a class other than ``Session`` has that class's",
            f"{_INDENT}members, which type checkers cannot see: listed first among",
            f"{_INDENT}its bases, this class keeps ``Session``'s signatures (and",
            f"{_INDENT}``AsyncSession``'s, for the async proxies) from applying to",
            f"{_INDENT}them.",
            f'{_INDENT}"""',
            "",
            *(f"{_INDENT}{member.name}: Any" for member in self.members),
            *(f"{_INDENT}{name}: Any" for name in self.also_any),
            "",
            f"{_INDENT}def __getattr__(self, name: str) -> Any:",
            f"{_INDENT * 2}raise AttributeError(name)",
        ]


def _forwarded(
    member: Member, params: list[inspect.Parameter]
) -> list[inspect.Parameter]:
    """The parameters a call passes on: all but ``self``/``cls``."""
    return params if member.kind is Kind.STATICMETHOD else params[1:]


def _overloads(function: Callable[..., Any]) -> Sequence[Callable[..., Any]]:
    if sys.version_info >= (3, 11):
        return typing.get_overloads(function)
    msg = (
        "writing the typed proxies needs Python 3.11 or later "
        f"(typing.get_overloads), this is {sys.version.split()[0]}"
    )
    raise SourceError(msg)


def _indented(lines: Sequence[str], depth: int) -> Iterator[str]:
    return (f"{_INDENT * depth}{line}" if line else "" for line in lines)


def _clean(member: Member) -> Member:
    """*member* with its docstring dedented, as Python 3.13 stores them.

    Dedenting first keeps the output the same on every Python, and the
    written docstring reads back (after :func:`inspect.cleandoc`) as the
    run-time one does.
    """
    if not member.doc:
        return member
    return dataclasses.replace(member, doc=inspect.cleandoc(member.doc))


def _docstring(doc: str) -> list[str]:
    """Lines of a docstring literal for *doc* (indented by the caller)."""
    lines = [line.rstrip() for line in doc.strip().split("\n")]
    text = "\n".join(lines)
    quote = '"""' if '"""' not in text else "'''"
    if quote in text or text.endswith(quote[0]):
        msg = f"cannot quote the docstring {text[:60]!r}..."
        raise SourceError(msg)
    prefix = "r" if "\\" in text else ""
    if len(lines) == 1:
        return [f"{prefix}{quote}{text}{quote}"]
    return [f"{prefix}{quote}{lines[0]}", *lines[1:], quote]


def _default_sources(function: Callable[..., Any]) -> dict[str, str]:
    """Map *function*'s parameter names to the source text of their defaults."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaulted = positional[len(positional) - len(args.defaults) :]
            pairs = list(zip(defaulted, args.defaults, strict=True))
            pairs += [
                (arg, default)
                for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if default is not None
            ]
            return {arg.arg: ast.unparse(default) for arg, default in pairs}
    return {}


def _literal(value: object, function: Callable[..., Any], name: str) -> str:
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        msg = (
            f"cannot write the default {text} of {function.__qualname__}({name}=...) "
            "as source"
        )
        raise SourceError(msg)
    return text


def _header(target: type) -> list[str]:
    package = target.__module__.partition(".")[0]
    version = str(getattr(sys.modules[package], "__version__", "?"))
    title = f"{package} {'.'.join(version.split('.')[:2])}"
    return [
        f"# Generated by `{COMMAND}` (scoped/proxies/typing_source.py) from",
        f"# {title}'s {target.__qualname__}. Do not edit: CI fails when it is stale.",
        f'"""Typed proxies of ``{target.__qualname__}``, for type checkers only."""',
        "",
        "from __future__ import annotations",
        "",
    ]


# -- the Session module ------------------------------------------------------------


def session_members() -> tuple[type, list[Member]]:
    """The ``Session`` class and the members the run time proxies for it.

    The same discovery and exclusions as :class:`scoped.scoped_session`, less
    the names the proxy class defines itself.
    """
    from scoped import _sqlalchemy
    from scoped.proxies._factory import proxied_members
    from scoped.session import scoped_session

    target = _sqlalchemy.default_target()
    if target is None:
        msg = "SQLAlchemy is not installed; the Session proxies need it"
        raise SourceError(msg)
    return target, proxied_members(scoped_session, target, _sqlalchemy.EXCLUDED)


def async_only_names(members: Sequence[Member]) -> list[str]:
    """Public names of SQLAlchemy's typed ``async_scoped_session`` that are
    neither Session *members* nor :class:`scoped.asyncio.async_scoped_session`'s
    own."""
    from sqlalchemy.ext.asyncio import async_scoped_session as theirs

    from scoped.asyncio import async_scoped_session
    from scoped.proxies._factory import reserved_names

    taken = reserved_names(async_scoped_session) | {m.name for m in members}
    return sorted(
        name for name in dir(theirs) if not name.startswith("_") and name not in taken
    )


def render() -> str:
    """The source of :mod:`scoped.proxies._session_typing` for this SQLAlchemy."""
    from scoped import _sqlalchemy

    target, members = session_members()
    writer = Writer(
        target,
        members,
        _sqlalchemy.target_ref(target),
        _sqlalchemy.PROXY_REF,
        also_any=async_only_names(members),
    )
    return writer.render()


def write(path: Path = OUTPUT) -> bool:
    """Write the source to *path*; tell whether it changed."""
    source = render()
    if path.exists() and path.read_text(encoding="utf-8") == source:
        return False
    path.write_text(source, encoding="utf-8")
    return True


def check(path: Path = OUTPUT) -> str | None:
    """Return ``None`` when *path* is fresh, else a message with a diff."""
    source = render()
    try:
        committed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        committed = ""
    if committed == source:
        return None
    name = _display(path)
    diff = difflib.unified_diff(
        committed.splitlines(True),
        source.splitlines(True),
        f"{name} (committed)",
        f"{name} (generated)",
    )
    import sqlalchemy

    return (
        f"{name} is stale for the installed SQLAlchemy {sqlalchemy.__version__}: "
        f"run `{COMMAND}` and commit the result.\n" + "".join(diff)
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--write`` or ``--check``."""
    parser = argparse.ArgumentParser(
        prog="python -m scoped.proxies.typing_source",
        description="Write or check the typed Session proxies.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"rewrite {OUTPUT.name}")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when the committed file is stale"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write(args.output)
            state = "written" if changed else "unchanged"
            print(f"{_display(args.output)}: {state}")
            return 0
        problem = check(args.output)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if problem is not None:
        print(problem, file=sys.stderr, end="")
        return 1
    print(f"{_display(args.output)}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
