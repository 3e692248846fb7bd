"""Our parts merged into the framework's own files, and taken out again, as text: every line of theirs stays
as it was, byte for byte. Each merge returns the new text and the exact strings it inserted (the record
that lets uninstall take out only ours when the user edited the file since).

- Markdown: a part file (the repo's .agents/AGENTS.md, tools/context/model-routing.md) holds parts, each
  between ``<!-- aidevops-local:part row|block ANCHOR -->`` and ``<!-- aidevops-local:end -->``. ANCHOR is a
  heading (``## Model Tiers``, matched without case) or ``end`` (the end of the file). A row part is a
  table whose last row is ours (the header shows its columns to the reader); it goes after the
  last row of the first table in that section, in that table's number of columns, unless the table already
  has a row with the same first cell (theirs stands); a block goes at the end of the section between
  ``<!-- aidevops-local:begin -->`` and ``<!-- aidevops-local:end -->``.
- TOON (subagent-index.toon): each row of ours goes into the block of the same name and fields unless a row
  with the same first field is there; the count in the block's header follows. A block they lack is added.
- JSON (configs/model-routing-table.json): each key of ours that their object lacks is added as the first
  member of that object (nested objects recursively); a key they have stands as theirs.
Anything we cannot place (a heading, table or block that is gone or has other fields) raises Refused."""

from __future__ import annotations

import json
import re

from ..system.errors import Refused

BEGIN = "<!-- aidevops-local:begin -->"
END = "<!-- aidevops-local:end -->"
_PART = re.compile(r"^<!-- aidevops-local:part (row|block) (.+?) -->\n(.*?)^<!-- aidevops-local:end -->$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MARKED = re.compile(rf"^{re.escape(BEGIN)}\n.*?^{re.escape(END)}\n(?:\n)?", re.M | re.S)
_TOON = re.compile(r"^<!--TOON:(\w+)\[(\d+)\]\{([^}]*)\}:\n(.*?)^-->$", re.M | re.S)

Merged = tuple[str, list[str]]  # the new text, and each string inserted into it


def _cannot_place(name: str, what: str) -> Refused:
    return Refused(
        f"Cannot place our part in the framework's {name}: {what}; nothing was changed.",
        hint="Its layout changed. Update aidevops-local (a newer release knows the new layout), or restore the file.",
    )


# ---- markdown ----------------------------------------------------------------------------------------------


def strip_marked_blocks(text: str) -> str:
    """The text without any block between our markers (ours, whatever the record says)."""
    return _MARKED.sub("", text)


def _section_span(lines: list[str], anchor: str) -> tuple[int, int] | None:
    """Line range [first, end) of the section under heading ``anchor`` (up to the next heading as high)."""
    wanted = _HEADING.match(anchor)
    level, title = len(wanted.group(1)), wanted.group(2).casefold()
    fenced = False
    for i, line in enumerate(lines):
        fenced ^= line.lstrip().startswith("```")
        found = None if fenced else _HEADING.match(line)
        if found and len(found.group(1)) == level and found.group(2).casefold() == title:
            for j in range(i + 1, len(lines)):
                fenced ^= lines[j].lstrip().startswith("```")
                nxt = None if fenced else _HEADING.match(lines[j])
                if nxt and len(nxt.group(1)) <= level:
                    return i + 1, j
            return i + 1, len(lines)
    return None


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _fitted_row(row: str, columns: int) -> str:
    """Our row in their table's number of columns: padded, or the extra cells joined into the last."""
    cells = _cells(row)
    if len(cells) < columns:
        cells += [""] * (columns - len(cells))
    elif len(cells) > columns:
        cells = cells[: columns - 1] + ["; ".join(cells[columns - 1 :])]
    return "| " + " | ".join(cells) + " |"


def _insert_row(lines: list[str], span: tuple[int, int], row: str, name: str, anchor: str) -> str | None:
    first, end = span
    start = next((i for i in range(first, end) if lines[i].lstrip().startswith("|")), None)
    if start is None:
        raise _cannot_place(name, f"the section '{anchor}' has no table")
    stop = start
    while stop < end and lines[stop].lstrip().startswith("|"):
        stop += 1
    ours = _cells(row)[0]
    if any(_cells(line)[0] == ours for line in lines[start + 2 : stop]):
        return None  # their table already has this row: theirs stands
    fitted = _fitted_row(row, len(_cells(lines[start])))
    lines.insert(stop, fitted)
    return fitted + "\n"


def _insert_block(text: str, anchor: str, span: tuple[int, int], body: str) -> tuple[str, str]:
    """Our block at the end of the section (or of the file), a blank line either side."""
    block = f"{BEGIN}\n{body}\n{END}\n"
    if anchor == "end":
        added = ("\n" if text.endswith("\n") else "\n\n") + block
        return text + added, added
    lines = text.split("\n")
    head, tail = "\n".join(lines[: span[1]]) + "\n", "\n".join(lines[span[1] :])
    added = ("" if head.endswith("\n\n") else "\n") + block + "\n"
    return head + added + tail, added


def merge_markdown(theirs: str, parts: str, name: str) -> Merged:
    """Insert each part of the part file ``parts`` into ``theirs`` (the framework's file named ``name``)."""
    text = strip_marked_blocks(theirs)
    inserted: list[str] = []
    for kind, anchor, body in _PART.findall(parts):
        body = body.strip("\n")
        lines = text.split("\n")
        span = (len(lines), len(lines)) if anchor == "end" else _section_span(lines, anchor)
        if span is None:
            raise _cannot_place(name, f"its section '{anchor}' is gone")
        if kind == "row":
            added = _insert_row(lines, span, body.splitlines()[-1], name, anchor)
            if added is None:
                continue
            text = "\n".join(lines)
        else:
            text, added = _insert_block(text, anchor, span, body)
        inserted.append(added)
    return text, inserted


# ---- TOON --------------------------------------------------------------------------------------------------


def _toon_blocks(text: str) -> dict[str, re.Match]:
    return {m.group(1): m for m in _TOON.finditer(text)}


def _recount(text: str, names: set[str]) -> str:
    def fixed(match: re.Match) -> str:
        if match.group(1) not in names:
            return match.group(0)
        rows = [line for line in match.group(4).splitlines() if line.strip()]
        return f"<!--TOON:{match.group(1)}[{len(rows)}]{{{match.group(3)}}}:\n{match.group(4)}-->"

    return _TOON.sub(fixed, text)


def merge_toon(theirs: str, ours: str, name: str) -> Merged:
    text, inserted = theirs, []
    for block in _TOON.finditer(ours):
        block_name, fields = block.group(1), block.group(3)
        rows = [line for line in block.group(4).splitlines() if line.strip()]
        target = _toon_blocks(text).get(block_name)
        if target is None:
            added = "\n" + block.group(0) + "\n"
            text = (text if text.endswith("\n") else text + "\n") + added
            inserted.append(added)
            continue
        if target.group(3) != fields:
            raise _cannot_place(
                name, f"its block '{block_name}' has the fields {{{target.group(3)}}}, not {{{fields}}}"
            )
        for row in rows:
            target = _toon_blocks(text)[block_name]
            keys = {line.split(",", 1)[0] for line in target.group(4).splitlines()}
            if row.split(",", 1)[0] in keys:
                continue  # theirs stands
            at = target.end(4)
            text = text[:at] + row + "\n" + text[at:]
            inserted.append(row + "\n")
        text = _recount(text, {block_name})
    return text, inserted


def remove_toon(text: str, inserted: list[str]) -> str:
    names = set()
    for added in inserted:
        if added.startswith("\n<!--TOON:"):
            text = text.replace(added, "", 1)
            continue
        for block in _toon_blocks(text).values():
            at = block.group(4).find(added)
            if at >= 0 and (at == 0 or block.group(4)[at - 1] == "\n"):
                start = block.start(4) + at
                text = text[:start] + text[start + len(added) :]
                names.add(block.group(1))
                break
    return _recount(text, names)


# ---- JSON --------------------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _members(text: str, opening: int) -> tuple[list[tuple[str, int, int]], int]:
    """The members (key, value start, value end) of the object whose ``{`` is at ``opening``, and its ``}``."""
    members, i = [], _skip_ws(text, opening + 1)
    if text[i] == "}":
        return members, i
    while True:
        key, i = _DECODER.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past the colon
        start = i
        _, i = _DECODER.raw_decode(text, i)
        members.append((key, start, i))
        i = _skip_ws(text, i)
        if text[i] == "}":
            return members, i
        i = _skip_ws(text, i + 1)


def _line_indent(text: str, at: int) -> str:
    line = text[text.rfind("\n", 0, at) + 1 : at]
    return line[: len(line) - len(line.lstrip())]


def _merge_object(text: str, opening: int, ours: dict, inserted: list[str]) -> str:
    for key, value in ours.items():
        members, closing = _members(text, opening)
        found = next((m for m in members if m[0] == key), None)
        if found is not None:
            if isinstance(value, dict) and text[found[1]] == "{":
                text = _merge_object(text, found[1], value, inserted)
            continue  # theirs stands
        # First in the object, each on lines of its own: not a line of theirs changes (not even a comma).
        outer = _line_indent(text, opening)
        indent = _line_indent(text, members[0][1]) if members else outer + "  "
        step = indent[len(outer) :] or "  "
        dumped = json.dumps(value, indent=len(step), ensure_ascii=False).replace("\n", "\n" + indent)
        member = f"{json.dumps(key)}: {dumped}"
        at = opening + 1
        if members:
            added = f"\n{indent}{member},"
        else:
            added = f"\n{indent}{member}\n{outer}"
            text = text[:at] + text[closing:]  # an empty object's inner whitespace goes
        text = text[:at] + added + text[at:]
        inserted.append(added)
    return text


def merge_json(theirs: str, ours: str, name: str) -> Merged:
    try:
        json.loads(theirs)
        opening = _skip_ws(theirs, 0)
        if theirs[opening] != "{":
            raise ValueError("not an object")
    except (ValueError, IndexError) as exc:
        raise _cannot_place(name, f"it is not a JSON object ({exc})") from None
    inserted: list[str] = []
    text = _merge_object(theirs, opening, json.loads(ours), inserted)
    json.loads(text)  # the merge keeps it JSON; a slip here is a bug, not the user's
    return text, inserted


# ---- taking ours out -------------------------------------------------------------------------------------


def remove_inserted(text: str, inserted: list[str], kind: str) -> str:
    """``text`` without what we inserted (each exact string once; a row only as a whole line), keeping the
    rest; in markdown, a block of ours the user edited inside goes by its markers."""
    if kind == "toon":
        return remove_toon(text, inserted)
    for added in inserted:
        whole_line = kind == "markdown" and added.startswith("|")
        at = text.find("\n" + added) + 1 if whole_line else text.find(added)
        if at > 0 or (at == 0 and not whole_line):
            text = text[:at] + text[at + len(added) :]
    return strip_marked_blocks(text) if kind == "markdown" else text
