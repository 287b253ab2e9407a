"""One mail body, two parts: the same blocks rendered as plain text and as HTML.

The HTML is for mail clients, which strip ``<style>`` and block remote
content: inline styles only, no images, no scripts, every value escaped.
Building both parts from one list of blocks keeps them saying the same.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

_FONT = "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.45;color:#1f2328"
_CODE = ("font-family:Consolas,Menlo,monospace;font-size:13px;background:#f3f4f6;padding:2px 6px;"
         "border-radius:3px;color:#1f2328")
_CELL = "padding:3px 12px 3px 0;vertical-align:top"
_GRID = "border:1px solid #d0d7de;padding:4px 8px;vertical-align:top"


_TONES = {"": "", "bad": ";color:#cf222e", "warn": ";color:#9a6700"}


@dataclass(frozen=True)
class Para:
    text: str
    strong: bool = False
    tone: str = ""  # "bad" (red) or "warn" (amber) in HTML: what needs a person stands out


@dataclass(frozen=True)
class Facts:
    """Label: value lines (a table in HTML)."""

    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Commands:
    """Commands to run, each with what it does."""

    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Items:
    title: str
    items: list[str]


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Table:
    """Rows of figures under a header; ``numeric`` columns (by index) are right-aligned.
    ``empty`` is said instead of a table without rows."""

    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()
    empty: str = "None."


Block = Para | Facts | Commands | Items | Heading | Table


@dataclass
class Body:
    title: str
    blocks: list[Block] = field(default_factory=list)
    footer: str = "Sent by Stockdrop."
    width: int = 680  # the HTML part's max width in pixels (a digest's tables want more)

    def add(self, *blocks: Block) -> Body:
        self.blocks.extend(blocks)
        return self


def text(body: Body) -> str:
    out = [body.title, "=" * min(len(body.title), 72), ""]
    for block in body.blocks:
        if isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Facts):
            width = max(len(label) for label, _ in block.rows) + 1 if block.rows else 0
            out += [f"  {(label + ':').ljust(width)} {value}" for label, value in block.rows] + [""]
        elif isinstance(block, Commands):
            for command, what in block.rows:
                out += [f"    {command}", f"      {what}"]
            out.append("")
        elif isinstance(block, Heading):
            out += [block.text, "-" * min(len(block.text), 72), ""]
        elif isinstance(block, Table):
            out += _text_table(block) + [""]
        else:
            out += [block.title] + [f"  - {item}" for item in block.items] + [""]
    out += ["-- ", body.footer]
    return "\n".join(out) + "\n"


def _text_table(table: Table) -> list[str]:
    if not table.rows:
        return [table.empty]
    widths = [max(len(row[i]) for row in [table.headers, *table.rows]) for i in range(len(table.headers))]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.rjust(w) if i in table.numeric else c.ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(table.headers), "  " + "  ".join("-" * w for w in widths), *map(line, table.rows)]


def _html_table(table: Table) -> str:
    if not table.rows:
        return f'<p style="margin:0 0 12px 0;color:#57606a">{_e(table.empty)}</p>'

    def align(i: int) -> str:
        return "text-align:right" if i in table.numeric else "text-align:left"

    head = "".join(f'<th style="{_GRID};{align(i)};background:#f6f8fa;font-weight:bold">{_e(h)}</th>'
                   for i, h in enumerate(table.headers))
    rows = "".join("<tr>" + "".join(f'<td style="{_GRID};{align(i)}">{_e(c)}</td>' for i, c in enumerate(row))
                   + "</tr>" for row in table.rows)
    return (f'<table cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin:0 0 16px 0;'
            f'font-size:13px"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def page(body: Body) -> str:
    parts = [f'<h2 style="margin:0 0 12px 0;font-size:18px;color:#1f2328">{_e(body.title)}</h2>']
    for block in body.blocks:
        if isinstance(block, Para):
            inner = f"<strong>{_e(block.text)}</strong>" if block.strong else _e(block.text)
            parts.append(f'<p style="margin:0 0 12px 0{_TONES[block.tone]}">{inner}</p>')
        elif isinstance(block, Facts):
            rows = "".join(f'<tr><td style="{_CELL};color:#57606a;white-space:nowrap">{_e(label)}</td>'
                           f'<td style="{_CELL}">{_e(value)}</td></tr>' for label, value in block.rows)
            parts.append(f'<table role="presentation" style="border-collapse:collapse;margin:0 0 12px 0">'
                         f"{rows}</table>")
        elif isinstance(block, Commands):
            rows = "".join(f'<tr><td style="{_CELL}"><code style="{_CODE}">{_e(command)}</code></td>'
                           f'<td style="{_CELL}">{_e(what)}</td></tr>' for command, what in block.rows)
            parts.append(f'<table role="presentation" style="border-collapse:collapse;margin:0 0 12px 0">'
                         f"{rows}</table>")
        elif isinstance(block, Heading):
            parts.append(f'<h3 style="margin:20px 0 8px 0;font-size:15px;color:#1f2328;'
                         f'border-bottom:1px solid #d0d7de;padding-bottom:4px">{_e(block.text)}</h3>')
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        else:
            items = "".join(f'<li style="margin:0 0 4px 0">{_e(item)}</li>' for item in block.items)
            parts.append(f'<p style="margin:0 0 4px 0">{_e(block.title)}</p>'
                         f'<ul style="margin:0 0 12px 0;padding-left:20px">{items}</ul>')
    parts.append(f'<p style="margin:18px 0 0 0;font-size:12px;color:#57606a">{_e(body.footer)}</p>')
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>' + _e(body.title) + "</title></head>"
            f'<body style="margin:0;padding:16px;background:#ffffff"><div style="{_FONT};max-width:{body.width}px">'
            + "".join(parts) + "</div></body></html>")
