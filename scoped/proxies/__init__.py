"""Generated forwarding members: the second pillar of :mod:`scoped` (internal).

:func:`proxy_class` builds, once per target class, a subclass of a proxy base
whose methods, properties and classmethods forward to the object the
registry holds for the current scope, with the target's signatures and
docstrings. :data:`scoped.proxies.SPEEDUPS` tells whether attributes are
compiled descriptors from the optional C extension ``scoped._speedups``
(decided at import; ``SCOPED_NO_EXTENSIONS=1`` turns it off) or Python
properties.
"""

from __future__ import annotations

from scoped.proxies._codegen import SPEEDUPS, Plan, compile_members
from scoped.proxies._docs import attribute_doc, proxied_doc
from scoped.proxies._factory import proxy_class, reserved_names
from scoped.proxies._members import Kind, Member, Releases, bind, discover

__all__ = [
    "SPEEDUPS",
    "Kind",
    "Member",
    "Plan",
    "Releases",
    "attribute_doc",
    "bind",
    "compile_members",
    "discover",
    "proxied_doc",
    "proxy_class",
    "reserved_names",
]
