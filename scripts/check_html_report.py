"""Open a run's ``report.html`` in headless Chromium and check what a reader would see.

    python scripts/check_html_report.py RUN_DIR/report.html [--screenshot out.png] [--chromium PATH]

Checks, on the DOM Chromium built after loading the page (``--dump-dom`` after a virtual-time
budget): the results table is there with a header and rows; the run metadata table is there;
every ``<img>`` is an embedded ``data:image/png`` URI and decoded (the page's inline script marks
``<body data-images="ok:N">`` when all N images have a natural width, ``broken:...`` otherwise);
the page loads nothing from elsewhere. Then takes a screenshot (``--window-size=1280,2000``) and
checks it is a PNG.

Exit code 0 with one line ``ok: ...`` on stdout; 1 with one line ``error: <reason>`` on stderr when
a check fails; 2 when the file or Chromium is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
_TIMEOUT = 120.0


class CheckFailed(Exception):
    """A check failed; the message is the one-line reason."""


class _Dom(HTMLParser):
    """What the checks need from the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, dict[str, int]] = {}
        self.body: dict[str, str] = {}
        self.external: list[str] = []
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "img":
            self.images.append(a)
        elif tag == "table":
            self._table = a.get("class", "") or "?"
            self.tables.setdefault(self._table, {"th": 0, "tr": 0})
        elif tag in ("th", "tr") and self._table is not None:
            self.tables[self._table][tag] += 1
        for key in ("src", "href"):
            url = a.get(key, "")
            if url and not url.startswith(("data:", "#")):
                self.external.append(f"<{tag} {key}={url[:60]}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


def _chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, check=False)


def check(report: Path, chromium: str, screenshot: Path | None = None) -> str:
    """Run the checks; return the ``ok`` summary or raise :class:`CheckFailed` with the reason."""
    url = report.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="check_html_") as tmp:
        base = [chromium, *_FLAGS, f"--user-data-dir={tmp}/profile"]
        dom = _run([*base, "--virtual-time-budget=10000", "--dump-dom", url])
        if dom.returncode != 0 or "<body" not in dom.stdout:
            last = (dom.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(f"chromium --dump-dom failed (exit {dom.returncode}): {last}")
        parsed = _Dom()
        parsed.feed(dom.stdout)
        results = parsed.tables.get("results")
        if results is None:
            raise CheckFailed('no results table (<table class="results">) in the page')
        if results["th"] < 2 or results["tr"] < 2:
            raise CheckFailed(
                f"the results table has {results['th']} header cells and {results['tr']} rows"
            )
        if "meta" not in parsed.tables or parsed.tables["meta"]["tr"] < 1:
            raise CheckFailed('no run metadata table (<table class="meta">) in the page')
        if parsed.external:
            raise CheckFailed(f"the page loads from elsewhere: {', '.join(parsed.external)}")
        n = len(parsed.images)
        if n == 0:
            raise CheckFailed("the page has no images")
        not_png = [
            i.get("alt", "?")
            for i in parsed.images
            if not i.get("src", "").startswith("data:image/png;base64,")
        ]
        if not_png:
            raise CheckFailed(f"images not embedded as PNG data URIs: {', '.join(not_png)}")
        mark = parsed.body.get("data-images", "")
        if mark != f"ok:{n}":
            raise CheckFailed(
                f"not every image decoded: body data-images={mark or '(unset: the page script did not run)'!r}, "
                f"{n} images"
            )
        shot_dir = Path(tmp)
        target = screenshot or shot_dir / "screenshot.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shot = _run(
            [*base, "--window-size=1280,2000", "--hide-scrollbars", f"--screenshot={target}", url]
        )
        if shot.returncode != 0 or not target.is_file():
            last = (shot.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(f"chromium --screenshot failed (exit {shot.returncode}): {last}")
        if target.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise CheckFailed(f"the screenshot {target} is not a PNG")
        where = f", screenshot {target}" if screenshot else ""
    return (
        f"ok: {report}: results table {results['tr'] - 1} rows x {results['th']} columns, "
        f"{n} images decoded{where}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report.html")
    parser.add_argument("--screenshot", type=Path, help="keep the screenshot here (PNG)")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: no such file: {args.report}", file=sys.stderr)
        return 2
    browser = _chromium(args.chromium)
    if browser is None:
        print(
            "error: chromium not found (apt-get install chromium, or --chromium PATH)",
            file=sys.stderr,
        )
        return 2
    try:
        print(check(args.report, browser, args.screenshot))
    except CheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired:
        print(f"error: chromium did not finish within {_TIMEOUT:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
