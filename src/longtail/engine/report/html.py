"""``report.html``: the run report as one self-contained HTML file.

The tables, the plots (PNG embedded as ``data:`` URIs), the commands, the run's metadata and its
config in one file with no external resource (no script, style sheet, font or image from
elsewhere), so it opens in any browser, offline, and can be mailed or attached as it is.

A small inline script marks ``<body data-images="ok:N">`` once the page has loaded and all ``N``
images decoded (``"broken:<alt>,..."`` otherwise); ``scripts/check_html_report.py`` reads the mark
from a headless browser's DOM. :func:`render_html` knows nothing about runs: it lays out what
:func:`longtail.engine.report.write.write_report` gives it.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["IMAGES_MARK", "render_html"]

#: The ``<body>`` attribute the inline script sets once every image has decoded (or not).
IMAGES_MARK = "data-images"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 1280px; padding: 1.2em 1.6em 3em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.55em; margin-bottom: 0.3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.3em; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.92em; background: #f4f4f4; border-radius: 3px; }
code { padding: 0 0.25em; }
pre { padding: 0.7em 0.9em; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.93em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; }
th { background: #f0f0f0; text-align: center; }
table.results td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.results td:first-child { text-align: left; }
table.meta th { text-align: left; white-space: nowrap; vertical-align: top; }
td.best { font-weight: 700; }
tr.reference td { background: #f6f6f6; color: #444; font-style: italic; }
p.note { font-size: 0.92em; color: #333; margin: 0.3em 0; }
figure { margin: 0 0 1.2em; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #333; margin: 0.2em 0 0.5em; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute("MARK", broken.length
    ? "broken:" + broken.map(function (i) { return i.alt; }).join(",")
    : "ok:" + images.length);
});
""".replace("MARK", IMAGES_MARK)


def _inline(text: str) -> str:
    """Markdown inline marks (`code`, **bold**, *italic*) as HTML; everything else escaped."""
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        t = html.escape(part, quote=False)
        t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
        t = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"<em>\1</em>", t)
        out.append(t)
    return "".join(out)


def _results_table(table: Mapping[str, Any]) -> list[str]:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table["header"])
    out = ['<table class="results">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    references = table.get("references") or [False] * len(table["rows"])
    for cells, flags, ref in zip(table["rows"], table["best"], references, strict=True):
        tds = "".join(
            f'<td class="best">{html.escape(c)}</td>' if b else f"<td>{html.escape(c)}</td>"
            for c, b in zip(cells, flags, strict=True)
        )
        out.append(f'<tr class="reference">{tds}</tr>' if ref else f"<tr>{tds}</tr>")
    out += ["</tbody>", "</table>"]
    out += [f'<p class="note">{_inline(n)}</p>' for n in table.get("notes", [])]
    return out


def render_html(
    *,
    title: str,
    paragraphs: Sequence[str],
    table: Mapping[str, Any] | None,
    commands: Sequence[str],
    figures: Sequence[tuple[str, str, bytes]],
    metadata: Sequence[tuple[str, str]],
    config_text: str = "",
    tables: Sequence[tuple[str, Mapping[str, Any]]] = (),
    results_title: str = "Results",
) -> str:
    """The report as one HTML document (UTF-8 text).

    Args:
        title: the page title and heading (markdown inline marks allowed).
        paragraphs: the text above the table (markdown inline marks).
        table: ``{"header": [...], "rows": [[...]], "best": [[bool]], "notes": [...]}``; best
            cells are bold; an optional ``"references": [bool]`` marks the reference rows (set
            apart: grey, italic); ``None``: no results.
        commands: shell commands that reproduce the run.
        figures: ``(title, caption, png bytes)`` per plot, embedded as ``data:image/png`` URIs.
        metadata: ``(key, value)`` rows of the run's metadata table.
        config_text: the run's ``config.yaml``, shown folded.
        tables: more ``(heading, table)`` after the first table (laid out as ``table``).
        results_title: the heading of the first table.
    """
    plain_title = title.replace("`", "")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(plain_title)}</title>",
        f"<style>{_STYLE}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head>",
        "<body>",
        f"<h1>{_inline(title)}</h1>",
    ]
    out += [f"<p>{_inline(p)}</p>" for p in paragraphs]
    out += [f"<h2>{_inline(results_title)}</h2>"]
    out += _results_table(table) if table is not None else ["<p>(no results)</p>"]
    for heading, extra in tables:
        out += [f"<h2>{_inline(heading)}</h2>", *_results_table(extra)]
    out += ["<h2>Reproduce</h2>", f"<pre>{html.escape(chr(10).join(commands))}</pre>"]
    if figures:
        out.append("<h2>Plots</h2>")
        for name, caption, png in figures:
            data = base64.b64encode(png).decode("ascii")
            out += [
                "<figure>",
                f"<h3>{_inline(name)}</h3>",
                f"<figcaption>{_inline(caption)}</figcaption>" if caption else "",
                f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">',
                "</figure>",
            ]
    out += ["<h2>Run</h2>", '<table class="meta">']
    out += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in metadata]
    out.append("</table>")
    if config_text:
        out += [
            "<details><summary>config.yaml (the resolved config)</summary>",
            f"<pre>{html.escape(config_text)}</pre>",
            "</details>",
        ]
    out += ["</body>", "</html>", ""]
    return "\n".join(line for line in out if line)
