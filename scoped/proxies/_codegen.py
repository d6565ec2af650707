"""Source generation for forwarding members, compiled once per target class.

Every generated member reads the current object inline (no helper call on
the hot path), passes required arguments positionally and every defaulted
argument explicitly by keyword, and carries the target's signature and
docstring. Generated source is registered with :mod:`linecache` so that
tracebacks, ``pdb`` and ``inspect.getsource`` can show it.

Attributes are properties over generated getters and setters. Where the
optional C extension :mod:`scoped._speedups` is built and helps (CPython
before 3.12, which cannot specialise property reads), they are compiled
descriptors instead, holding the generated accessors for the cases the C
code leaves to them; :data:`SPEEDUPS` says which, and the environment
variable ``SCOPED_NO_EXTENSIONS`` (any non-empty value) turns the extension
off.
"""

from __future__ import annotations

import dis
import inspect
import itertools
import linecache
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scoped._extension import compiled
from scoped.proxies._docs import member_doc
from scoped.proxies._members import Kind, Member
from scoped.proxies._unavailable import Unavailable
from scoped.registry._lookup import Lookup

if TYPE_CHECKING:
    from scoped._speedups import ScopedAttribute

__all__ = [
    "SPEEDUPS",
    "Plan",
    "compile_members",
    "render_call",
    "render_params",
]

_P = inspect.Parameter
_counter = itertools.count()


#: The compiled attribute descriptor, unless absent or switched off.
_compiled_attribute: type[ScopedAttribute] | None = compiled("ScopedAttribute")

#: True when attribute proxies are compiled descriptors from
#: :mod:`scoped._speedups`. From CPython 3.12 on, the interpreter specialises
#: property reads with a Python getter, which then beat any C descriptor, so
#: the extension is used on 3.10 and 3.11 only. Decided at import; classes
#: generated later follow a changed value (it is part of their cache key).
SPEEDUPS: bool = _compiled_attribute is not None and sys.version_info < (3, 12)

# The proxy's handles that lookups read (set by scoped_session), and how a
# miss creates the object.
_STORAGE = "_scoped_storage"
_SCOPEFUNC = "_scoped_scopefunc"
_FALLBACK = "{self}.registry._create_current()"
# Prefixes of the generated accessors an attribute is built from.
_GETTER = "_scoped_get_"
_SETTER = "_scoped_set_"

# Where each generated function keeps the offsets of its lookup's own
# instructions; read only when an exception reaches its ``except`` clause.
_MISSES = "_scoped_misses_"
_SUBSCRIPTS = frozenset({"BINARY_SUBSCR"})
_ATTRIBUTE_READS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _is_subscript(instruction: dis.Instruction) -> bool:
    # 3.14 folds subscripts into BINARY_OP.
    return instruction.opname in _SUBSCRIPTS or (
        instruction.opname == "BINARY_OP" and instruction.argrepr == "[]"
    )


def lookup_offsets(code: Any, lookup: Lookup) -> frozenset[int]:
    """The offsets of the instructions that evaluate *lookup* in *code*.

    They run from the read of the proxy's storage handle through the storage
    access that can miss (the scope function's call included): an exception
    whose traceback stops at one of them in the proxy's frame was raised by
    the lookup itself, never by the object forwarded to, whatever its type.
    That is exact, and needs no second look at the registry, which another
    thread may have changed since the lookup missed.
    """
    item = lookup.kind.access == "item"
    offsets: set[int] = set()
    collecting = False
    for instruction in dis.get_instructions(code):
        if not collecting:
            collecting = (
                instruction.opname in _ATTRIBUTE_READS
                and instruction.argval == _STORAGE
            )
            continue
        offsets.add(instruction.offset)
        if (
            _is_subscript(instruction)
            if item
            else instruction.opname in _ATTRIBUTE_READS
        ):
            collecting = False
    return frozenset(offsets)


@dataclass
class Plan:
    """Everything needed to generate the members of one proxy class."""

    target: type
    proxy_qualname: str
    proxy_module: str
    lookup: Lookup
    members: Sequence[Member]
    target_ref: str
    proxy_ref: str
    #: Compile attributes into C descriptors where the lookup allows it.
    speedups: bool = False

    def compiled_kind(self) -> str | None:
        """The C descriptor's name for this plan's lookup, or ``None``."""
        lookup = self.lookup
        if not self.speedups or _compiled_attribute is None or lookup.calls_python:
            return None
        return lookup.kind.label if lookup.kind.compiled else None


def _unique(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = f"_{name}"
    taken.add(name)
    return name


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def render_params(
    params: Iterable[inspect.Parameter],
    default_name: Callable[[object], str],
    *,
    annotation: Callable[[object], str] | None = None,
    separator: str = ", ",
) -> str:
    """Render a parameter list for a ``def`` line.

    Annotations are left out unless *annotation* renders them as source (the
    typed source writer does; compiled proxies carry ``__signature__``).
    """

    def annotated(text: str, param: inspect.Parameter) -> str:
        if annotation is None or param.annotation is _P.empty:
            return text
        return f"{text}: {annotation(param.annotation)}"

    out: list[str] = []
    seen_star = False
    params = list(params)
    # "/" follows the last positional-only parameter, so a leading "self"
    # added by the caller ahead of them becomes positional-only too.
    slash_after = max(
        (i for i, p in enumerate(params) if p.kind is _P.POSITIONAL_ONLY), default=-1
    )
    for i, param in enumerate(params):
        if i == slash_after + 1 and i:
            out.append("/")
        if param.kind is _P.KEYWORD_ONLY and not seen_star:
            out.append("*")
            seen_star = True
        if param.kind is _P.VAR_POSITIONAL:
            out.append(annotated(f"*{param.name}", param))
            seen_star = True
        elif param.kind is _P.VAR_KEYWORD:
            out.append(annotated(f"**{param.name}", param))
        elif param.default is _P.empty:
            out.append(annotated(param.name, param))
        else:
            text = annotated(param.name, param)
            # PEP 8 spaces the "=" of an annotated default only.
            equals = "=" if text == param.name else " = "
            out.append(f"{text}{equals}{default_name(param.default)}")
    if 0 <= slash_after == len(params) - 1:
        out.append("/")
    return separator.join(out)


def render_call(params: Iterable[inspect.Parameter]) -> str:
    """Render the forwarding call: required positionally, defaults by keyword.

    Passing defaulted arguments by name keeps overrides with different
    positional layouts working (``get_bind(self, mapper=None, **kw)``).
    Positional-or-keyword parameters go positionally when ``*args`` follows,
    since naming them would collide with the extra positionals.
    """
    params = list(params)
    has_varargs = any(p.kind is _P.VAR_POSITIONAL for p in params)
    out: list[str] = []
    for param in params:
        if param.kind is _P.VAR_POSITIONAL:
            out.append(f"*{param.name}")
        elif param.kind is _P.VAR_KEYWORD:
            out.append(f"**{param.name}")
        elif param.kind is _P.KEYWORD_ONLY:
            out.append(f"{param.name}={param.name}")
        elif (
            param.kind is _P.POSITIONAL_ONLY or param.default is _P.empty or has_varargs
        ):
            out.append(param.name)
        else:
            out.append(f"{param.name}={param.name}")
    return ", ".join(out)


class _Writer:
    """Accumulates the source of one proxy class's members."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {}
        self.defaults: dict[int, str] = {}
        self.docs: dict[str, str] = {}
        self.signatures: dict[str, inspect.Signature] = {}
        #: The generated functions, in order; those that look up the current
        #: object get their lookup's offsets once compiled.
        self.functions: list[str] = []
        self.target_name = "_scoped_target"
        self.namespace[self.target_name] = plan.target
        for i, exc in enumerate(plan.lookup.misses):
            self.namespace[f"_scoped_miss_{i}"] = exc
        self.misses = (
            "("
            + ", ".join(f"_scoped_miss_{i}" for i in range(len(plan.lookup.misses)))
            + ",)"
        )

    def default(self, value: object) -> str:
        key = id(value)
        if key not in self.defaults:
            name = f"_scoped_default_{len(self.defaults)}"
            self.defaults[key] = name
            self.namespace[name] = value
        return self.defaults[key]

    def current(self, first: str, scopefunc: str | None = None) -> str:
        """The lookup expression, reading the registry's handles off *first*."""
        return self.plan.lookup.expression.format(
            storage=f"{first}.{_STORAGE}",
            scopefunc=scopefunc or f"{first}.{_SCOPEFUNC}",
        )

    def miss(self, first: str, error: str, session: str) -> list[str]:
        """The ``except`` clause: on a miss of the lookup itself, create the
        object as *session*; let anything else propagate.

        A miss is an exception raised directly by one of the lookup's own
        instructions (see :func:`lookup_offsets`), which the function being
        written finds under its own name once compiled.
        """
        offsets = f"{_MISSES}{self.functions[-1]}"
        trace = f"{error}.__traceback__"
        return [
            f"    except {self.misses} as {error}:",
            # Raised here by C code: a scope function written in Python
            # raises from a frame of its own, and its error is its own.
            f"        if {trace}.tb_next is not None"
            f" or {trace}.tb_lasti not in {offsets}:",
            "            raise",
            f"        {session} = {_FALLBACK.format(self=first)}",
        ]

    def define(self, head: str, name: str, signature: str) -> None:
        """Open the ``def`` of a generated function named *name*."""
        self.functions.append(name)
        self.lines.append(f"{head} {name}({signature}):")

    def forward(
        self, first: str, taken: set[str], body: Callable[[str], list[str]]
    ) -> None:
        """Append a function body that runs *body* on the current object.

        *body* maps the source of the current object to statements that each
        end in ``return``. The hot path is the inlined lookup plus the
        forwarded access, inside the ``try`` (no local to store and load);
        the miss test tells a miss from its lookalikes. The object is created
        inside the ``except`` clause, where the registry can see (and hide)
        the miss, and used after it, so that the forwarded call's own errors
        are not chained to the miss.
        """
        scopefunc = None
        if "{scopefunc}" in self.plan.lookup.expression:
            # Calling an instance attribute as a method is not specialised by
            # CPython 3.11; a local costs about 5 ns less.
            scopefunc = _unique("scopefunc", taken)
            self.lines.append(f"    {scopefunc} = {first}.{_SCOPEFUNC}")
        session = _unique("session", taken)
        # "try: x" on one line compiles without the NOP that marks the line.
        self.lines += _try(body(self.current(first, scopefunc)))
        self.lines += self.miss(first, _unique("error", taken), session)
        self.lines += body(session)

    def store(self, first: str, name: str, value: str) -> None:
        """Append a setter body: setting is rare, so the plain layout; an
        error the scope function raises propagates as from the getter."""
        self.lines.append(f"    try: session = {self.current(first)}")
        self.lines += self.miss(first, "error", "session")
        self.lines.append(f"    session.{name} = {value}")

    def method(self, member: Member) -> None:
        assert member.function is not None
        sig = _signature(member.function)
        if sig is None:
            sig = inspect.Signature(
                [
                    _P("self", _P.POSITIONAL_ONLY),
                    _P("args", _P.VAR_POSITIONAL),
                    _P("kwargs", _P.VAR_KEYWORD),
                ]
            )
        params = list(sig.parameters.values())
        rest = params[1:] if params and member.kind is not Kind.STATICMETHOD else params
        taken = {p.name for p in rest}
        first = _unique("self" if member.kind is Kind.METHOD else "cls", taken)
        head = "async def" if member.is_coroutine else "def"
        await_ = "await " if member.is_coroutine else ""
        call = render_call(rest)
        varkw = next((p.name for p in rest if p.kind is _P.VAR_KEYWORD), None)
        plain = render_call(p for p in rest if p.kind is not _P.VAR_KEYWORD)

        def body(obj: str) -> list[str]:
            forward = f"return {await_}{obj}.{member.name}"
            if varkw is None:
                return [f"    {forward}({call})"]
            # Unpacking even an empty **kw builds a dict and calls through
            # the slow path; most calls pass no extra keywords.
            return [f"    if {varkw}: {forward}({call})", f"    {forward}({plain})"]

        lead = (
            []
            if member.kind is Kind.STATICMETHOD
            else [_P(first, _P.POSITIONAL_OR_KEYWORD)]
        )
        signature = render_params([*lead, *rest], self.default)
        if member.kind is Kind.METHOD:
            self.define(head, member.name, signature)
            self.forward(first, taken, body)
        else:
            decorator = member.kind.value
            # Resolved through the class at call time, so a later override or
            # monkeypatch of the target's classmethod is honoured.
            self.lines.append(f"@{decorator}")
            self.lines.append(f"{head} {member.name}({signature}):")
            self.lines += body(self.target_name)
        self.lines.append("")
        self.signatures[member.name] = sig
        self.docs[member.name] = member_doc(
            member, self.plan.target_ref, self.plan.proxy_ref
        )

    def attribute(self, member: Member) -> None:
        """Append the getter (and setter) that the attribute is built from."""
        self.define("def", f"{_GETTER}{member.name}", "self")
        self.forward("self", {"self"}, lambda obj: [f"    return {obj}.{member.name}"])
        self.lines.append("")
        if member.writable:
            self.define("def", f"{_SETTER}{member.name}", "self, value")
            self.store("self", member.name, "value")
            self.lines.append("")
        self.docs[member.name] = member_doc(
            member, self.plan.target_ref, self.plan.proxy_ref
        )


def _try(statements: list[str]) -> list[str]:
    """Open a ``try`` around *statements* (indented one level already)."""
    if len(statements) == 1:
        return [f"    try: {statements[0].strip()}"]
    return ["    try:", *(f"    {line}" for line in statements)]


def compile_members(plan: Plan) -> dict[str, Any]:
    """Generate, compile and return the forwarding members described by *plan*.

    The result maps member names to functions, classmethods, staticmethods
    or properties, ready to become the namespace of a proxy class.
    """
    writer = _Writer(plan)
    compiled = plan.compiled_kind()
    for member in plan.members:
        if not member.present:
            continue
        if member.kind is Kind.ATTRIBUTE:
            writer.attribute(member)
        else:
            writer.method(member)
    source = "\n".join(writer.lines) + "\n"
    target = f"{plan.target.__module__}.{plan.target.__qualname__}"
    filename = (
        f"<scoped generated {plan.proxy_qualname} for {target} #{next(_counter)}>"
    )
    code = compile(source, filename, "exec")
    namespace = writer.namespace
    exec(code, namespace)  # the source is generated above, not user input
    for name in writer.functions:
        offsets = lookup_offsets(namespace[name].__code__, plan.lookup)
        if not offsets:
            msg = f"no lookup found in the generated {name}(): {plan.lookup}"
            raise RuntimeError(msg)
        namespace[f"{_MISSES}{name}"] = offsets
    # Like attrs, register a fake file so debuggers and tracebacks show it.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)

    result: dict[str, Any] = {}
    for member in plan.members:
        if not member.present:
            doc = member_doc(member, plan.target_ref, plan.proxy_ref)
            result[member.name] = Unavailable.of(
                member, plan.proxy_qualname, plan.target, doc
            )
            continue
        doc = writer.docs[member.name]
        if member.kind is Kind.ATTRIBUTE:
            result[member.name] = _attribute(plan, member, namespace, doc, compiled)
            continue
        obj = result[member.name] = namespace[member.name]
        func: Any = (
            obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
        )
        _finish(func, plan, member.name, doc)
        func.__signature__ = writer.signatures[member.name]
        if member.function is not None:
            func.__annotations__ = dict(getattr(member.function, "__annotations__", {}))
    return result


def _attribute(
    plan: Plan,
    member: Member,
    namespace: dict[str, Any],
    doc: str,
    compiled: str | None,
) -> Any:
    """The proxy's attribute, from the accessors generated in *namespace*: a
    C descriptor if *compiled*, else a property.

    The C descriptor finds the current object itself and leaves a missing
    one to the generated getter and setter, so creating it (locks, events,
    errors) happens in one place either way.
    """
    fget = namespace[f"{_GETTER}{member.name}"]
    fset = namespace.get(f"{_SETTER}{member.name}")
    for accessor in (fget, fset):
        if accessor is not None:
            _finish(accessor, plan, member.name, None)
    if compiled is None or _compiled_attribute is None:
        return property(fget, fset, None, doc)
    return _compiled_attribute(
        member.name, compiled, plan.lookup.misses, fget, fset, doc
    )


def _finish(func: Any, plan: Plan, name: str, doc: str | None) -> None:
    func.__qualname__ = f"{plan.proxy_qualname}.{name}"
    func.__module__ = plan.proxy_module
    if doc is not None:
        func.__doc__ = doc
