"""Docstrings read once, the same way, for tool schemas and ``@with_context()``.

The parsing is the ``docstring-parser`` package's: Google ("Args:"), NumPy ("Parameters" over a
line of dashes) and reST/Sphinx (``:param x:``) styles, the style detected per docstring.
``tools.py`` takes a tool's description and its parameters' descriptions from it;
``decorators.py`` hides the entries of injected parameters from a method's ``__doc__``.

Removing entries keeps the rest of the docstring as its author wrote it. docstring-parser can
compose a docstring back from what it parsed, but that rewrites the other sections (a Google
"Returns:" without a type comes back as ": ...", "Example:" as "Examples:"), and docs/tools.md
promises the docstring without the entry. So the parser decides the style and which parameters
are documented, its section titles and keywords say where entries are, and only the lines of the
hidden entries are taken out of the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import docstring_parser
from docstring_parser import Docstring, DocstringStyle
from docstring_parser.common import PARAM_KEYWORDS
from docstring_parser.google import DEFAULT_SECTIONS as GOOGLE_SECTIONS
from docstring_parser.numpydoc import DEFAULT_SECTIONS as NUMPY_SECTIONS
from docstring_parser.numpydoc import ParamSection

__all__ = ["param_descriptions", "summary", "without_params"]

#: Meta kinds that describe a parameter (not an attribute, a return value or an exception).
_PARAMETER_KINDS = frozenset(PARAM_KEYWORDS - {"attribute"}) | {"other_param"}
_GOOGLE_PARAM_TITLES = frozenset(s.title for s in GOOGLE_SECTIONS if s.key == "param")
_NUMPY_PARAM_TITLES = frozenset(s.title for s in NUMPY_SECTIONS if isinstance(s, ParamSection) and s.key != "attribute")
_REST_KEYWORDS = "|".join(sorted(PARAM_KEYWORDS | {"type"}))
_REST_ENTRY = re.compile(rf"^\s*:(?:{_REST_KEYWORDS})\s+(?:[^:]*\s)?\*{{0,2}}(\w+)\s*:")
_NAME = re.compile(r"^\*{0,2}(\w+)")


def _parse(doc: str) -> Docstring | None:
    try:
        return docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return None  # a docstring in no known style: only its first paragraph is used


def _one_line(text: str) -> str:
    return " ".join(text.split())


def summary(doc: str) -> str:
    """The first paragraph of ``doc`` on one line (a tool's description); ``""`` when empty."""
    parsed = _parse(doc)
    if parsed is None:
        return _one_line(doc.strip().split("\n\n", 1)[0])
    paragraph = parsed.short_description or ""
    if parsed.long_description and not parsed.blank_after_short_description:
        paragraph += "\n" + parsed.long_description.split("\n\n", 1)[0]
    return _one_line(paragraph)


def param_descriptions(doc: str) -> dict[str, str]:
    """``{parameter name: its description on one line}`` for the parameters ``doc`` documents."""
    parsed = _parse(doc)
    if parsed is None:
        return {}
    return {
        param.arg_name.lstrip("*"): _one_line(param.description)
        for param in parsed.params
        if param.args and param.args[0] in _PARAMETER_KINDS and param.description
    }


def without_params(doc: str | None, names: Iterable[str]) -> str | None:
    """``doc`` without the entries that document ``names``, the rest unchanged; a Google section
    left without entries loses its header too."""
    if not doc:
        return doc
    parsed = _parse(doc)
    documented = {param.arg_name.lstrip("*") for param in parsed.params} if parsed else set()
    hidden = documented & set(names)
    if not hidden or parsed is None:
        return doc
    lines = doc.splitlines()
    dropped: set[int] = set()
    for start in _entry_starts(lines, parsed.style, hidden):
        dropped.update(range(start, _entry_end(lines, start)))
    if parsed.style == DocstringStyle.GOOGLE:
        dropped |= _emptied_google_sections(lines, dropped)
    kept = [line for index, line in enumerate(lines) if index not in dropped]
    return "\n".join(kept) + ("\n" if doc.endswith("\n") else "")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _entry_starts(lines: list[str], style: DocstringStyle | None, hidden: set[str]) -> list[int]:
    """Indices of the first line of each entry documenting a ``hidden`` name."""
    if style == DocstringStyle.REST:
        return [i for i, line in enumerate(lines) if (m := _REST_ENTRY.match(line)) and m.group(1) in hidden]
    starts = []
    section_indent: int | None = None
    entry_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        indent = _indent(line)
        dashes_below = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        if style == DocstringStyle.GOOGLE and stripped.endswith(":") and stripped[:-1].strip() in _GOOGLE_PARAM_TITLES:
            section_indent, entry_indent = indent, None
        elif style == DocstringStyle.NUMPYDOC and stripped in _NUMPY_PARAM_TITLES and dashes_below:
            section_indent, entry_indent = indent, indent
        elif section_indent is not None:
            if style == DocstringStyle.NUMPYDOC:
                ends = indent < section_indent or (indent == section_indent and dashes_below)
            else:
                ends = indent <= section_indent
            if ends:
                section_indent = None
                continue
            if entry_indent is None:
                entry_indent = indent  # the first entry sets the indent of all entries
            match = _NAME.match(stripped)
            if indent == entry_indent and match and match.group(1) in hidden and set(stripped) != {"-"}:
                starts.append(i)
    return starts


def _entry_end(lines: list[str], start: int) -> int:
    """The index after the last line of the entry starting at ``start`` (its continuation lines are
    indented deeper; a blank line belongs to it only when the entry goes on after it)."""
    indent = _indent(lines[start])
    end = start + 1
    for i in range(start + 1, len(lines)):
        if lines[i].strip():
            if _indent(lines[i]) <= indent:
                break
            end = i + 1
    return end


def _emptied_google_sections(lines: list[str], dropped: set[int]) -> set[int]:
    """The header lines of the Google parameter sections whose every entry is dropped, with the
    blank lines after them (so no double blank line is left where the section was)."""
    more: set[int] = set()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index in dropped or not (stripped.endswith(":") and stripped[:-1].strip() in _GOOGLE_PARAM_TITLES):
            continue
        rest = [i for i in range(index + 1, len(lines)) if i not in dropped and lines[i].strip()]
        if rest and _indent(lines[rest[0]]) > _indent(line):
            continue
        more.add(index)
        following = rest[0] if rest else len(lines)
        more.update(i for i in range(index + 1, following) if not lines[i].strip())
    return more
