"""HTML building blocks of the stakeholder report: one file, no script, no network.

Every image is a ``data:`` URI, the style sheet is inline and the fonts are the
reader's own, so the file opens the same offline, from a mail attachment or a
USB stick, and prints. All text from the investigation is escaped here.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

CSS = """
:root { --ink:#222; --muted:#666; --line:#e3e3e3; --poison:#f28e2b; --good:#1a7f37; --bad:#b42318; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1180px; padding: 24px 28px 60px; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 4px; } h2 { font-size: 1.25rem; margin: 34px 0 10px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub, .caption, .note { color: var(--muted); font-size: .9rem; }
.lead p { margin: .45em 0; max-width: 62em; }
.verdict { font-weight: 600; padding: 10px 14px; border-radius: 6px; background: #f4f4f4; margin: 10px 0; }
.verdict.good { background: #e8f5ec; color: var(--good); } .verdict.bad { background: #fdecea; color: var(--bad); }
table.kv { border-collapse: collapse; margin: 6px 0; }
table.kv td, table.kv th { padding: 4px 14px 4px 0; text-align: left; vertical-align: top; }
table.kv th { color: var(--muted); font-weight: normal; white-space: nowrap; }
table.nums { border-collapse: collapse; margin: 8px 0; }
table.nums td, table.nums th { border-bottom: 1px solid var(--line); padding: 5px 14px; text-align: right; }
table.nums th:first-child, table.nums td:first-child { text-align: left; }
.metrics { display: flex; gap: 28px; flex-wrap: wrap; margin: 8px 0; }
.metric b { display: block; font-size: 1.45rem; } .metric span { color: var(--muted); font-size: .85rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 10px; margin: 8px 0; }
.tile { margin: 0; text-align: center; font-size: .75rem; color: var(--muted); }
.tile img { width: 100%; max-width: 112px; image-rendering: pixelated; border: 1px solid var(--line); }
.tile.poison img { border: 3px solid var(--poison); }
.tile.rejected { opacity: .45; } .tile.rejected figcaption { text-decoration: line-through; }
figure.plot { margin: 8px 0; } figure.plot img { max-width: 100%; height: auto; }
details pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: .8rem; }
@media print { h2 { break-after: avoid; } .grid, figure.plot { break-inside: avoid; } }
"""


@dataclass
class Tile:
    """One image of a grid: PNG bytes, a caption and an optional look ("poison", "rejected")."""

    png: bytes
    caption: str
    kind: str = ""


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def img(png: bytes, alt: str, cls: str = "") -> str:
    klass = f' class="{escape(cls)}"' if cls else ""
    return f'<img{klass} src="{data_uri(png)}" alt="{escape(alt)}">'


def plot(png: bytes, alt: str, caption: str = "") -> str:
    cap = f'<figcaption class="caption">{escape(caption)}</figcaption>' if caption else ""
    return f'<figure class="plot">{img(png, alt)}{cap}</figure>'


def grid(tiles: Sequence[Tile], label: str) -> str:
    cells = "".join(
        f'<figure class="tile {escape(t.kind)}">{img(t.png, f"{label}: {t.caption}".replace(chr(10), " "))}'
        f"<figcaption>{_lines(t.caption)}</figcaption></figure>" for t in tiles)
    return f'<div class="grid" role="list" aria-label="{escape(label)}">{cells}</div>'


def _lines(text: str) -> str:
    return "<br>".join(escape(line) for line in text.split("\n"))


def kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def nums_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="nums"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def metrics(items: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f'<div class="metric"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in items)
    return f'<div class="metrics">{cells}</div>'


def paragraphs(texts: Sequence[str], cls: str = "") -> str:
    klass = f' class="{escape(cls)}"' if cls else ""
    return f"<div{klass}>" + "".join(f"<p>{escape(t)}</p>" for t in texts) + "</div>"


def verdict(text: str, good: bool | None) -> str:
    kind = "" if good is None else (" good" if good else " bad")
    return f'<p class="verdict{kind}">{escape(text)}</p>'


def details(summary: str, text: str) -> str:
    return f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


def section(sid: str, heading: str, body: str) -> str:
    return f'<section id="{escape(sid)}"><h2>{escape(heading)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """The whole document. The CSP forbids every fetch, so nothing can reach the network."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class=\"sub\">{escape(subtitle)}</p></header>"
        + "".join(sections) + "</body></html>\n"
    )
