"""Source generation for forwarding members, compiled once per target class.

Every generated member reads the current object inline (no helper call on
the hot path), passes required arguments positionally and every defaulted
argument explicitly by keyword, and carries the target's signature and
docstring. Generated source is registered with :mod:`linecache` so that
tracebacks, ``pdb`` and ``inspect.getsource`` can show it.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scoped.proxies._docs import attribute_doc, proxied_doc
from scoped.proxies._members import Kind, Member

__all__ = ["Lookup", "Plan", "compile_members", "render_call", "render_params"]

_P = inspect.Parameter
_counter = itertools.count()


@dataclass(frozen=True)
class Lookup:
    """How a proxy finds the current object without a Python-level call.

    *expression* is source over ``{storage}`` and ``{scopefunc}``; *misses*
    are the exceptions it raises when the scope has no object yet; *fallback*
    is source over ``{self}`` that creates it.
    """

    expression: str
    misses: tuple[type[BaseException], ...]
    fallback: str = "{self}.registry._create_current()"
    storage: str = "_scoped_storage"
    scopefunc: str = "_scoped_scopefunc"


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
    namespace: dict[str, Any] = field(default_factory=dict)


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
    params: Iterable[inspect.Parameter], default_name: Callable[[object], str]
) -> str:
    """Render a parameter list for a ``def`` line, without annotations."""
    out: list[str] = []
    seen_star = seen_slash = False
    params = list(params)
    has_posonly = any(p.kind is _P.POSITIONAL_ONLY for p in params)
    for param in params:
        if has_posonly and not seen_slash and param.kind is not _P.POSITIONAL_ONLY:
            out.append("/")
            seen_slash = True
        if param.kind is _P.KEYWORD_ONLY and not seen_star:
            out.append("*")
            seen_star = True
        if param.kind is _P.VAR_POSITIONAL:
            out.append(f"*{param.name}")
            seen_star = True
        elif param.kind is _P.VAR_KEYWORD:
            out.append(f"**{param.name}")
        elif param.default is _P.empty:
            out.append(param.name)
        else:
            out.append(f"{param.name}={default_name(param.default)}")
    if has_posonly and not seen_slash:
        out.append("/")
    return ", ".join(out)


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
            param.kind is _P.POSITIONAL_ONLY
            or param.default is _P.empty
            or has_varargs
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
        self.namespace: dict[str, Any] = dict(plan.namespace)
        self.defaults: dict[int, str] = {}
        self.docs: dict[str, str] = {}
        self.signatures: dict[str, inspect.Signature] = {}
        self.target_name = "_scoped_target"
        self.namespace[self.target_name] = plan.target
        for i, exc in enumerate(plan.lookup.misses):
            self.namespace[f"_scoped_miss_{i}"] = exc
        self.misses = "(" + ", ".join(
            f"_scoped_miss_{i}" for i in range(len(plan.lookup.misses))
        ) + ",)"

    def default(self, value: object) -> str:
        key = id(value)
        if key not in self.defaults:
            name = f"_scoped_default_{len(self.defaults)}"
            self.defaults[key] = name
            self.namespace[name] = value
        return self.defaults[key]

    def lookup_lines(self, self_name: str, local: str) -> list[str]:
        lookup = self.plan.lookup
        expression = lookup.expression.format(
            storage=f"{self_name}.{lookup.storage}",
            scopefunc=f"{self_name}.{lookup.scopefunc}",
        )
        return [
            "    try:",
            f"        {local} = {expression}",
            f"    except {self.misses}:",
            f"        {local} = {lookup.fallback.format(self=self_name)}",
        ]

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
        local = _unique("session", taken)
        call = render_call(rest)
        head = "async def" if member.is_coroutine else "def"
        await_ = "await " if member.is_coroutine else ""
        if member.kind is Kind.METHOD:
            signature = render_params([_P(first, _P.POSITIONAL_OR_KEYWORD), *rest], self.default)
            self.lines.append(f"{head} {member.name}({signature}):")
            self.lines += self.lookup_lines(first, local)
            self.lines.append(f"    return {await_}{local}.{member.name}({call})")
        else:
            decorator = "classmethod" if member.kind is Kind.CLASSMETHOD else "staticmethod"
            lead = [_P(first, _P.POSITIONAL_OR_KEYWORD)] if member.kind is Kind.CLASSMETHOD else []
            signature = render_params([*lead, *rest], self.default)
            # Resolved through the class at call time, so a later override or
            # monkeypatch of the target's classmethod is honoured.
            self.lines.append(f"@{decorator}")
            self.lines.append(f"{head} {member.name}({signature}):")
            self.lines.append(
                f"    return {await_}{self.target_name}.{member.name}({call})"
            )
        self.lines.append("")
        self.signatures[member.name] = sig
        self.docs[member.name] = proxied_doc(
            member.doc, self.plan.target_ref, self.plan.proxy_ref
        )

    def attribute(self, member: Member) -> None:
        getter, setter = f"_scoped_get_{member.name}", f"_scoped_set_{member.name}"
        self.lines.append(f"def {getter}(self):")
        self.lines += self.lookup_lines("self", "session")
        self.lines.append(f"    return session.{member.name}")
        self.lines.append("")
        fset = "None"
        if member.writable:
            self.lines.append(f"def {setter}(self, value):")
            self.lines += self.lookup_lines("self", "session")
            self.lines.append(f"    session.{member.name} = value")
            self.lines.append("")
            fset = setter
        doc = (
            proxied_doc(member.doc, self.plan.target_ref, self.plan.proxy_ref)
            if member.doc
            else attribute_doc(member.name, self.plan.target_ref, self.plan.proxy_ref)
        )
        self.docs[member.name] = doc
        self.lines.append(f"{member.name} = property({getter}, {fset})")
        self.lines.append("")


def compile_members(plan: Plan) -> dict[str, Any]:
    """Generate, compile and return the forwarding members described by *plan*.

    The result maps member names to functions, classmethods, staticmethods
    or properties, ready to become the namespace of a proxy class.
    """
    writer = _Writer(plan)
    for member in plan.members:
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
    exec(code, namespace)  # noqa: S102 - the source is generated above, not user input
    # Like attrs, register a fake file so debuggers and tracebacks show it.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)

    result: dict[str, Any] = {}
    for member in plan.members:
        obj = namespace[member.name]
        result[member.name] = obj
        doc = writer.docs[member.name]
        if isinstance(obj, property):
            for func in (obj.fget, obj.fset):
                if func is not None:
                    _finish(func, plan, member.name, None)
            result[member.name] = property(obj.fget, obj.fset, None, doc)
            continue
        func = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
        _finish(func, plan, member.name, doc)
        func.__signature__ = writer.signatures[member.name]
        if member.function is not None:
            func.__annotations__ = dict(getattr(member.function, "__annotations__", {}))
    return result


def _finish(func: Any, plan: Plan, name: str, doc: str | None) -> None:
    func.__qualname__ = f"{plan.proxy_qualname}.{name}"
    func.__module__ = plan.proxy_module
    if doc is not None:
        func.__doc__ = doc
