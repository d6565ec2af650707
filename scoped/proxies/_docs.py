"""The "Proxied for ..." note added to every generated member's docstring."""

from __future__ import annotations

from scoped.proxies._members import Kind, Member

__all__ = ["attribute_doc", "member_doc", "proxied_doc"]


def _margin(lines: list[str]) -> str:
    """Return the common indentation of *lines* after the first."""
    indents = [
        line[: len(line) - len(line.lstrip())] for line in lines[1:] if line.strip()
    ]
    if not indents:
        return ""
    return min(indents, key=len)


def _note(
    target_ref: str, proxy_ref: str, margin: str, releases: str | None
) -> list[str]:
    lines = [
        f"{margin}.. container:: class_bases",
        "",
        f"{margin}    Proxied for the :class:`{target_ref}` class on",
        f"{margin}    behalf of the :class:`{proxy_ref}` class.",
    ]
    if releases is not None:
        lines += ["", *(f"{margin}{line}" for line in releases.split("\n"))]
    return lines


def proxied_doc(
    doc: str | None, target_ref: str, proxy_ref: str, releases: str | None = None
) -> str:
    """Insert the ``class_bases`` note after the first paragraph of *doc*.

    The rest of *doc* is kept verbatim, so ``help()`` and Sphinx show the
    target's own text. The note takes the docstring's indentation; a one
    paragraph docstring gets the note at its end. *releases*, when given,
    is a paragraph saying which releases of the target's library have the
    member; it follows the note.
    """
    if not doc or not doc.strip():
        return "\n".join(_note(target_ref, proxy_ref, "", releases))
    lines = doc.split("\n")
    margin = _margin(lines)
    # The first paragraph ends at the first blank line after some text.
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    head, tail = lines[:end], lines[end:]
    note = _note(target_ref, proxy_ref, margin, releases)
    if tail:
        # tail[0] is the blank line that ended the paragraph; keep it after
        # the note so the original spacing of the rest is untouched.
        return "\n".join([*head, "", *note, *tail])
    return "\n".join([*head, "", *note, ""])


def attribute_doc(
    name: str, target_ref: str, proxy_ref: str, releases: str | None = None
) -> str:
    """Docstring for a proxied attribute that has none of its own."""
    doc = (
        f"Proxy for the :attr:`{target_ref}.{name}` attribute on\n"
        f"behalf of the :class:`{proxy_ref}` class.\n"
    )
    return doc if releases is None else f"{doc}\n{releases}\n"


def member_doc(member: Member, target_ref: str, proxy_ref: str) -> str:
    """The docstring of *member*'s proxy: its own with the note, or a stand-in.

    Only attributes without a docstring of their own get :func:`attribute_doc`.
    A member that only some releases of the target's library have says so.
    """
    releases = None if member.releases is None else member.releases.note()
    if member.kind is Kind.ATTRIBUTE and not member.doc:
        return attribute_doc(member.name, target_ref, proxy_ref, releases)
    return proxied_doc(member.doc, target_ref, proxy_ref, releases)
