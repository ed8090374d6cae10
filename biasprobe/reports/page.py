"""A report page as a list of blocks, rendered to Markdown and to HTML from the same blocks.

Blocks are plain data (:class:`Heading`, :class:`Text`, :class:`Table`, :class:`Picture`), so the
store report and the paper recipe build pages the same way. Text is Markdown (CommonMark with
tables: ``code spans``, ``**bold**``, ``[links](target)``, lists); the HTML of a heading, text or
table is its Markdown rendered by markdown-it-py, so the two formats never drift. Raw HTML in
the text is escaped, never passed through.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from dataclasses import dataclass

from markdown_it import MarkdownIt


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
    return "\n\n".join(_markdown_block(block) for block in blocks) + "\n"


def _markdown_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Table):
        lines = [_md_row(block.header), _md_row(["---"] * len(block.header))]
        return "\n".join(lines + [_md_row(row) for row in block.rows])
    return f"![{block.caption}]({block.png})\n\n{block.caption} ([PDF]({block.pdf}))"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 0.2em;word-break:break-all}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}"""


def html_page(blocks: Sequence[Block], title: str) -> str:
    """The page as one self-contained HTML document (figures by relative link): each heading, text and
    table is its Markdown (:func:`markdown`) rendered by markdown-it-py; each picture a ``<figure>``."""
    body = []
    for block in blocks:
        if isinstance(block, Picture):
            body.append(
                f'<figure><img src="{html.escape(block.png)}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{_parser().renderInline(block.caption)} "
                f'(<a href="{html.escape(block.pdf)}">PDF</a>)</figcaption></figure>'
            )
        else:
            body.append(_parser().render(_markdown_block(block)).rstrip("\n"))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


@functools.cache
def _parser() -> MarkdownIt:
    """CommonMark with GitHub's tables; raw HTML escaped (markdown-it-py)."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")
