"""Measure the members scoped's Session proxies forward, and write them out.

One spec describes what :class:`scoped.scoped_session` forwards to
SQLAlchemy's ``Session``: every member's name, kind, signature (as source,
with SQLAlchemy's annotations), docstring and the SQLAlchemy release series
that have it. It is committed as :mod:`scoped.proxies._session_spec`; the
run-time generator reads it (``scoped/proxies/_codegen.py``) and so does the
typed source for type checkers, :mod:`scoped.proxies._session_typing`,
which this script writes from the spec alone::

    python tools/proxies.py --write   # make proxies
    python tools/proxies.py --check   # make check-proxies

Measuring reads the installed SQLAlchemy and updates only what that release
can tell: which members its series has, and the text of members whose newest
series it is. Run under 2.0 and 2.1, it writes the same files, and the typed
source is the same whichever release is installed.

Annotation names are imported from the module that defines them, found by
reading SQLAlchemy's source, so ``mypy --strict`` (no implicit re-exports)
accepts them. Both files are laid out by ruff (import sorting and
formatting). Measuring needs Python 3.11+ for :func:`typing.get_overloads`.
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
import runpy
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoped import _sqlalchemy
from scoped.proxies._codegen import _unique, render_call, render_params
from scoped.proxies._docs import member_doc
from scoped.proxies._members import Kind, Member, Releases

__all__ = ["OUTPUT", "SPEC", "SourceError", "Spec", "check", "main", "write"]

ROOT = Path(__file__).resolve().parent.parent
#: The committed spec, and the typed source written from it.
SPEC = ROOT / "scoped" / "proxies" / "_session_spec.py"
OUTPUT = ROOT / "scoped" / "proxies" / "_session_typing.py"
COMMAND = "make proxies"
LIBRARY = "SQLAlchemy"
CLASS_NAME = "SessionProxies"
#: The same names typed ``Any``, for proxies of classes other than ``Session``.
ANY_CLASS_NAME = "AnyProxies"
_INDENT = "    "


class SourceError(Exception):
    """The spec or the typed source cannot be written (a name or default is
    unresolvable, or the measurements contradict each other)."""


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


def _ref_text(ref: Ref) -> str:
    return ref.module if ref.name is None else f"{ref.module}:{ref.name}"


def _ref(text: str) -> Ref:
    module, _, name = text.partition(":")
    return Ref(module, name or None)


# -- measuring the installed release ---------------------------------------------


def _series(version: str) -> str:
    """The release series (``"2.1"``) of a version string (``"2.1.9"``)."""
    return ".".join(version.split(".")[:2])


def _series_key(series: str) -> tuple[int, ...]:
    return tuple(int(part) for part in series.split("."))


class Measurer:
    """Turns the members of the installed ``Session`` into spec members."""

    def __init__(self, target: type) -> None:
        self.target = target
        self.imports: dict[str, Ref] = {}

    def use(self, module: str, expression: str) -> str:
        """Record where every name *expression* (source in *module*) uses is
        defined."""
        for name in _names(expression):
            ref = resolve(module, name)
            if ref.module == "builtins":
                continue
            known = self.imports.setdefault(name, ref)
            if known != ref:
                msg = f"the name {name!r} means both {known} and {ref}"
                raise SourceError(msg)
        return expression

    def annotation(self, module: str, value: object) -> str:
        """Source for an annotation found in *module*."""
        if not isinstance(value, str):
            msg = (
                f"annotation {value!r} in {module} is not a string; measuring "
                "needs modules with 'from __future__ import annotations'"
            )
            raise SourceError(msg)
        return self.use(module, value)

    def member(self, member: Member) -> Member:
        """*member* as the spec records it: signatures as source, the names
        they use, and its docstring dedented."""
        self.imports = {}
        overloads: tuple[str, ...] = ()
        if member.kind is Kind.ATTRIBUTE:
            module, returns = self.attribute_annotation(member.name)
            signature = f"(self) -> {self.annotation(module, returns)}"
        else:
            assert member.function is not None
            overloads = tuple(
                self.signature(member, variant)
                for variant in _overloads(member.function)
            )
            signature = self.signature(member, member.function)
        imports = tuple(sorted((k, _ref_text(v)) for k, v in self.imports.items()))
        return Member(
            member.name,
            member.kind,
            doc=_clean_doc(member.doc),
            writable=member.writable,
            coroutine=member.coroutine,
            signature=signature,
            overloads=overloads,
            imports=imports,
        )

    def signature(self, member: Member, function: Callable[..., Any]) -> str:
        """The source after ``def name`` of *member*'s proxy with
        *function*'s signature: ``self``/``cls``, annotations and defaults."""
        rest = _forwarded(member, self.parameters(function))
        taken = {p.name for p in rest}
        lead: list[inspect.Parameter] = []
        if member.kind is not Kind.STATICMETHOD:
            first = _unique("self" if member.kind is Kind.METHOD else "cls", taken)
            lead = [inspect.Parameter(first, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        module = function.__module__
        returns = inspect.signature(function).return_annotation
        arrow = ""
        if returns is not inspect.Signature.empty:
            arrow = f" -> {self.annotation(module, returns)}"

        def text(value: object) -> str:
            return self.annotation(module, value)

        return f"({render_params([*lead, *rest], str, annotation=text)}){arrow}"

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
            self.use(function.__module__, source)
            # Rendered back through render_params(default_name=str).
            out.append(param.replace(default=source))
        return out

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


def _forwarded(
    member: Member, params: list[inspect.Parameter]
) -> list[inspect.Parameter]:
    """The parameters a call passes on: all but ``self``/``cls``."""
    return params if member.kind is Kind.STATICMETHOD else params[1:]


def _clean_doc(doc: str | None) -> str | None:
    """*doc* dedented (as Python 3.13 stores docstrings) without trailing
    spaces, so that the spec is the same on every Python."""
    if not doc or not doc.strip():
        return None
    return "\n".join(line.rstrip() for line in inspect.cleandoc(doc).split("\n"))


@dataclass(frozen=True)
class Spec:
    """The committed spec: the series measured, the members, and the public
    names of SQLAlchemy's ``async_scoped_session`` in each series."""

    series: tuple[str, ...]
    members: tuple[Member, ...]
    async_names: dict[str, tuple[str, ...]]


def measure() -> tuple[str, list[Member], tuple[str, ...]]:
    """The installed SQLAlchemy's series, ``Session`` members as the spec
    records them, and the names its ``async_scoped_session`` adds."""
    import sqlalchemy
    from sqlalchemy.ext.asyncio import async_scoped_session as theirs

    from scoped.asyncio import async_scoped_session
    from scoped.proxies._factory import proxied_members, reserved_names
    from scoped.session import scoped_session

    target = _sqlalchemy.default_target()
    assert target is not None  # sqlalchemy is imported above
    measurer = Measurer(target)
    members = [
        measurer.member(member)
        for member in proxied_members(scoped_session, target, _sqlalchemy.EXCLUDED)
    ]
    taken = reserved_names(async_scoped_session) | {m.name for m in members}
    names = tuple(
        sorted(n for n in dir(theirs) if not n.startswith("_") and n not in taken)
    )
    return _series(sqlalchemy.__version__), members, names


# -- merging a measurement into the spec -------------------------------------------


def _has(member: Member, series: Sequence[str]) -> set[str]:
    """The series of *series* whose ``Session`` has *member*."""
    releases = member.releases
    if releases is None:
        return set(series)
    key = _series_key
    return {
        s
        for s in series
        if (releases.since is None or key(s) >= key(releases.since))
        and (releases.until is None or key(s) < key(releases.until))
    }


def _releases(name: str, have: set[str], series: Sequence[str]) -> Releases | None:
    """The range of *series* that *have* spans, ``None`` for all of them."""
    index = sorted(series.index(s) for s in have)
    if index != list(range(index[0], index[-1] + 1)):
        msg = f"Session.{name} comes and goes across {LIBRARY} {', '.join(series)}"
        raise SourceError(msg)
    since = None if index[0] == 0 else series[index[0]]
    until = None if index[-1] == len(series) - 1 else series[index[-1] + 1]
    if since is None and until is None:
        return None
    return Releases(LIBRARY, since=since, until=until)


def merge(
    spec: Spec, installed: str, measured: Sequence[Member], names: tuple[str, ...]
) -> Spec:
    """*spec* updated with what the *installed* series shows.

    The installed series decides whether each member is there in that
    series; a member's text comes from the newest series that has it, so
    measuring an older series never changes what a newer one recorded.
    """
    series = tuple(sorted({*spec.series, installed}, key=_series_key))
    old = {member.name: member for member in spec.members}
    new = {member.name: member for member in measured}
    members = []
    for name in sorted(old.keys() | new.keys()):
        have = _has(old[name], spec.series) if name in old else set()
        if name in new:
            have.add(installed)
        else:
            have.discard(installed)
        if not have:
            continue
        newest = max(have, key=_series_key)
        source = new[name] if name in new and newest == installed else old[name]
        members.append(
            dataclasses.replace(source, releases=_releases(name, have, series))
        )
    async_names = {**spec.async_names, installed: names}
    return Spec(series, tuple(members), dict(sorted(async_names.items())))


def load(path: Path) -> Spec:
    """The spec committed at *path*; an empty one when there is none yet."""
    if not path.exists():
        return Spec((), (), {})
    namespace = runpy.run_path(str(path))
    return Spec(
        tuple(namespace["SERIES"]),
        tuple(namespace["MEMBERS"]),
        dict(namespace["ASYNC_NAMES"]),
    )


# -- writing the spec --------------------------------------------------------------


def _string(text: str) -> str:
    """A literal for *text*: triple-quoted when it spans lines."""
    if "\n" in text and '"""' not in text and not text.endswith(('"', "\\")):
        prefix = "r" if "\\" in text else ""
        literal = f'{prefix}"""{text}"""'
        if ast.literal_eval(literal) == text:
            return literal
    return repr(text)


def _releases_source(releases: Releases | None) -> str:
    if releases is None:
        return "None"
    fields = [repr(releases.library)]
    fields += [f"{key}={value!r}" for key, value in _set_fields(releases)]
    return f"Releases({', '.join(fields)})"


def _set_fields(releases: Releases) -> Iterator[tuple[str, str]]:
    for key in ("since", "until"):
        value = getattr(releases, key)
        if value is not None:
            yield key, value


def _member_source(member: Member) -> list[str]:
    fields = [f"name={member.name!r}", f"kind=Kind.{member.kind.name}"]
    if member.doc is not None:
        fields.append(f"doc={_string(member.doc)}")
    if member.writable:
        fields.append("writable=True")
    if member.coroutine:
        fields.append("coroutine=True")
    if member.releases is not None:
        fields.append(f"releases={_releases_source(member.releases)}")
    fields.append(f"signature={_string(member.signature)}")
    if member.overloads:
        fields.append(
            f"overloads=({''.join(f'{_string(o)},' for o in member.overloads)})"
        )
    if member.imports:
        pairs = "".join(f"({k!r}, {v!r})," for k, v in member.imports)
        fields.append(f"imports=({pairs})")
    return [
        f"{_INDENT}Member(",
        *(f"{_INDENT * 2}{f}," for f in fields),
        f"{_INDENT}),",
    ]


def render_spec(spec: Spec) -> str:
    """The source of :mod:`scoped.proxies._session_spec` for *spec*."""
    async_names = [
        f"{_INDENT}{series!r}: ({''.join(f'{n!r},' for n in names)}),"
        for series, names in spec.async_names.items()
    ]
    return "\n".join(
        [
            f"# Generated by `{COMMAND}` (tools/proxies.py), which measures {LIBRARY}",
            "# under each supported series. Do not edit: CI fails when it is stale.",
            '"""The members :class:`scoped.scoped_session` forwards to SQLAlchemy\'s',
            "``Session``, as each supported release series has them.",
            "",
            "The run-time proxies and the typed source",
            "(:mod:`scoped.proxies._session_typing`) are both made from this spec.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from scoped.proxies._members import Kind, Member, Releases",
            "",
            '__all__ = ["ASYNC_NAMES", "MEMBERS", "SERIES", "TARGET"]',
            "",
            f"#: The {LIBRARY} release series measured, oldest first.",
            f"SERIES = ({''.join(f'{s!r}, ' for s in spec.series)})",
            "#: The proxied class, as ``module:name``.",
            'TARGET = "sqlalchemy.orm.session:Session"',
            "#: Public names of SQLAlchemy's ``async_scoped_session`` in each series",
            "#: that are not ``Session`` members (typed ``Any`` for other classes).",
            "ASYNC_NAMES = {",
            *async_names,
            "}",
            "",
            "MEMBERS = (",
            *(line for member in spec.members for line in _member_source(member)),
            ")",
            "",
        ]
    )


# -- writing the typed source from the spec -----------------------------------------


def _arguments(signature: str) -> ast.arguments:
    tree = ast.parse(f"def _{signature}: pass")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    return function.args


def _parameters(signature: str) -> list[inspect.Parameter]:
    """The parameters of *signature* (names, kinds, whether defaulted)."""
    args = _arguments(signature)
    kind = inspect.Parameter
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    out = []
    for i, arg in enumerate(positional):
        out.append(
            kind(
                arg.arg,
                kind.POSITIONAL_ONLY
                if i < len(args.posonlyargs)
                else kind.POSITIONAL_OR_KEYWORD,
                default=None if i >= first_default else kind.empty,
            )
        )
    if args.vararg is not None:
        out.append(kind(args.vararg.arg, kind.VAR_POSITIONAL))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(
            kind(
                arg.arg,
                kind.KEYWORD_ONLY,
                default=kind.empty if default is None else None,
            )
        )
    if args.kwarg is not None:
        out.append(kind(args.kwarg.arg, kind.VAR_KEYWORD))
    return out


def _default_names(signature: str) -> Iterator[str]:
    """Names the defaults of *signature* use: needed when the module runs."""
    args = _arguments(signature)
    for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
        for node in ast.walk(default):
            if isinstance(node, ast.Name):
                yield node.id


def _returns(signature: str) -> str:
    returns = ast.parse(f"def _{signature}: pass").body[0]
    assert isinstance(returns, ast.FunctionDef)
    assert returns.returns is not None
    return ast.get_source_segment(f"def _{signature}: pass", returns.returns) or ""


class TypedWriter:
    """Writes the typed proxy class from the spec, without SQLAlchemy."""

    def __init__(self, spec: Spec, target_ref: str, proxy_ref: str) -> None:
        self.spec = spec
        self.target_ref = target_ref
        self.proxy_ref = proxy_ref
        self.target = _ref(_target(spec))
        assert self.target.name is not None
        self.target_name = self.target.name

    def members(self) -> list[str]:
        lines: list[str] = []
        for member in self.spec.members:
            doc = _docstring(member_doc(member, self.target_ref, self.proxy_ref))
            if member.kind is Kind.ATTRIBUTE:
                lines += self.attribute(member, doc)
            else:
                lines += self.method(member, doc)
        return lines

    def attribute(self, member: Member, doc: list[str]) -> list[str]:
        get = f"return self._proxied.{member.name}"
        set_ = f"self._proxied.{member.name} = value"
        if member.releases is not None:
            # As for methods: not every supported release has it.
            get = set_ = "raise NotImplementedError"
        lines = [
            "@property",
            f"def {member.name}{member.signature}:",
            *_indented(doc, 1),
            f"{_INDENT}{get}",
            "",
        ]
        if member.writable:
            annotation = _returns(member.signature)
            lines += [
                f"@{member.name}.setter",
                f"def {member.name}(self, value: {annotation}) -> None:",
                f"{_INDENT}{set_}",
                "",
            ]
        return lines

    def method(self, member: Member, doc: list[str]) -> list[str]:
        head = "async def" if member.coroutine else "def"
        decorators = [] if member.kind is Kind.METHOD else [f"@{member.kind.value}"]
        lines: list[str] = []
        for overload in member.overloads:
            lines += [
                "@overload",
                *decorators,
                f"{head} {member.name}{overload}: ...",
                "",
            ]
        # Classmethods and staticmethods reach the target class, as at run time.
        target = "self._proxied" if member.kind is Kind.METHOD else self.target_name
        rest = _forwarded(member, _parameters(member.signature))
        await_ = "await " if member.coroutine else ""
        call = f"return {await_}{target}.{member.name}({render_call(rest)})"
        if member.releases is not None:
            # Some supported release lacks the member, so a body naming it
            # would not type-check there; only the signature matters.
            call = "raise NotImplementedError"
        return [
            *lines,
            *decorators,
            f"{head} {member.name}{member.signature}:",
            *_indented(doc, 1),
            f"{_INDENT}{call}",
            "",
        ]

    def imports(self, uses_overload: bool) -> list[str]:
        refs: dict[str, Ref] = {
            "Any": Ref("typing", "Any"),
            self.target_name: self.target,
        }
        runtime = {self.target_name, "TYPE_CHECKING"}
        for member in self.spec.members:
            for local, text in member.imports:
                ref = refs.setdefault(local, _ref(text))
                if ref != _ref(text):
                    msg = f"the name {local!r} means both {ref} and {_ref(text)}"
                    raise SourceError(msg)
            for signature in (member.signature, *member.overloads):
                runtime.update(_default_names(signature))
        if uses_overload:
            refs["overload"] = Ref("typing", "overload")
            runtime.add("overload")
        refs["TYPE_CHECKING"] = Ref("typing", "TYPE_CHECKING")
        # One statement a name: ruff sorts and merges them.
        now = [
            _import(local, refs[local]) for local in sorted(refs) if local in runtime
        ]
        later = [
            f"{_INDENT}{_import(local, refs[local])}"
            for local in sorted(refs)
            if local not in runtime
        ]
        return [*now, "", "if TYPE_CHECKING:", *later]

    def render(self) -> str:
        """The complete module source (before ruff lays it out)."""
        body = self.members()
        cls = [
            f"class {CLASS_NAME}:",
            f'{_INDENT}"""The members that :class:`scoped.scoped_session` forwards to',
            f"{_INDENT}:class:`{self.target.module}.{self.target_name}`.",
            "",
            f"{_INDENT}At run time they are generated on the class itself; this",
            f"{_INDENT}module shows the same members to type checkers.",
            f'{_INDENT}"""',
            "",
            f"{_INDENT}@property",
            f"{_INDENT}def _proxied(self) -> {self.target_name}:",
            f'{_INDENT * 2}"""The current scope\'s session."""',
            f"{_INDENT * 2}raise NotImplementedError",
            "",
            *_indented(body, 1),
        ]
        uses_overload = any(member.overloads for member in self.spec.members)
        return "\n".join(
            [
                f"# Generated by `{COMMAND}` (tools/proxies.py) from the spec in",
                "# scoped/proxies/_session_spec.py; CI fails when it is stale.",
                f'"""Typed proxies of ``{self.target_name}``, for type checkers only.'
                '"""',
                "",
                "from __future__ import annotations",
                "",
                *self.imports(uses_overload),
                "",
                f'__all__ = ["{ANY_CLASS_NAME}", "{CLASS_NAME}"]',
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
        names = {member.name for member in self.spec.members}
        also = sorted({n for ns in self.spec.async_names.values() for n in ns} - names)
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
            *(f"{_INDENT}{name}: Any" for name in sorted(names) + also),
            "",
            f"{_INDENT}def __getattr__(self, name: str) -> Any:",
            f"{_INDENT * 2}raise AttributeError(name)",
        ]


def _target(spec: Spec) -> str:
    del spec  # one target so far; the spec module names it too
    return "sqlalchemy.orm.session:Session"


def _import(local: str, ref: Ref) -> str:
    module, name = ref.module, ref.name
    if name is None and "." in module:
        module, _, name = module.rpartition(".")
    if name is None:
        return f"import {module}" + ("" if local == module else f" as {local}")
    return f"from {module} import {name}" + ("" if local == name else f" as {local}")


def render_typed(spec: Spec) -> str:
    """The source of :mod:`scoped.proxies._session_typing` for *spec*."""
    writer = TypedWriter(spec, "_orm.Session", _sqlalchemy.PROXY_REF)
    return writer.render()


# -- layout by ruff ---------------------------------------------------------------


def ruff(source: str, path: Path) -> str:
    """*source* as ruff sorts its imports and formats it, with the project's
    settings for *path*."""
    for command in (["check", "--fix-only", "--select", "I"], ["format"]):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                *command,
                "--stdin-filename",
                str(path),
                "-",
            ],
            input=source,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if result.returncode:
            msg = f"ruff {command[0]} failed on {path.name}:\n{result.stderr}"
            raise SourceError(msg)
        source = result.stdout
    return source


# -- the command line --------------------------------------------------------------


def generate(spec_path: Path = SPEC) -> tuple[str, str]:
    """The spec and the typed source, updated with the installed SQLAlchemy."""
    installed, measured, names = measure()
    spec = merge(load(spec_path), installed, measured, names)
    return ruff(render_spec(spec), SPEC), ruff(render_typed(spec), OUTPUT)


def write(spec_path: Path = SPEC, output: Path = OUTPUT) -> list[Path]:
    """Write both files; return those that changed."""
    changed = []
    for path, source in zip((spec_path, output), generate(spec_path), strict=True):
        if not path.exists() or path.read_text(encoding="utf-8") != source:
            path.write_text(source, encoding="utf-8")
            changed.append(path)
    return changed


def check(spec_path: Path = SPEC, output: Path = OUTPUT) -> str | None:
    """Return ``None`` when both files are fresh, else a message with diffs."""
    problems = []
    for path, source in zip((spec_path, output), generate(spec_path), strict=True):
        try:
            committed = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            committed = ""
        if committed != source:
            name = _display(path)
            diff = difflib.unified_diff(
                committed.splitlines(True),
                source.splitlines(True),
                f"{name} (committed)",
                f"{name} (generated)",
            )
            problems.append(f"{name} is stale.\n" + "".join(diff))
    if not problems:
        return None
    import sqlalchemy

    return (
        f"measured with {LIBRARY} {sqlalchemy.__version__}: run `{COMMAND}` and "
        "commit the result.\n" + "".join(problems)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--write`` or ``--check``."""
    parser = argparse.ArgumentParser(
        prog="python tools/proxies.py",
        description="Measure the Session proxies; write or check the spec and the "
        "typed source.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite both files")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when a committed file is stale"
    )
    parser.add_argument("--spec", type=Path, default=SPEC, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write(args.spec, args.output)
            for path in (args.spec, args.output):
                state = "written" if path in changed else "unchanged"
                print(f"{_display(path)}: {state}")
            return 0
        problem = check(args.spec, args.output)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if problem is not None:
        print(problem, file=sys.stderr, end="")
        return 1
    print(f"{_display(args.spec)}, {_display(args.output)}: up to date")
    return 0


# -- helpers -------------------------------------------------------------------


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


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
