"""A report page as a list of blocks, rendered to Markdown and to HTML from the same blocks.

Blocks are plain data (:class:`Heading`, :class:`Text`, :class:`Table`, :class:`Picture`), so the
store report and the paper recipe build pages the same way and the two formats never drift.
Text may hold ``code spans`` in backticks, ``**bold**`` and ``[links](target)``; everything else is escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Picture:
    """A figure written beside the page: its PNG shown inline, its PDF linked."""

    png: str
    pdf: str
    caption: str


Block = Heading | Text | Table | Picture


def markdown(blocks: Sequence[Block]) -> str:
    """The page in (GitHub-flavoured) Markdown."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = [_md_row(block.header), _md_row(["---"] * len(block.header))]
            parts.append("\n".join(lines + [_md_row(row) for row in block.rows]))
        else:
            parts.append(f"![{block.caption}]({block.png})\n\n{block.caption} ([PDF]({block.pdf}))")
    return "\n\n".join(parts) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 0.2em;word-break:break-all}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}"""


def html_page(blocks: Sequence[Block], title: str) -> str:
    """The page as one self-contained HTML document (figures by relative link)."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            caption = _inline(block.caption)
            body.append(
                f'<figure><img src="{html.escape(block.png)}" alt="{html.escape(block.caption)}">'
                f'<figcaption>{caption} (<a href="{html.escape(block.pdf)}">PDF</a>)</figcaption></figure>'
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Escaped text with `code spans` as <code>, **bold** as <strong> and [label](target) as links."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', escaped)
