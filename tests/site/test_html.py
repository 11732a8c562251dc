"""Checks of the built website (run by `make test` after the strict book build)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
PAGES = sorted(HTML.rglob("*.html")) if HTML.exists() else []

REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"'](?:https?:)?//", re.I)
REMOTE_LINK = re.compile(r"<link\b(?=[^>]*\brel=[\"'][^\"']*(?:stylesheet|preload|modulepreload))[^>]*\bhref=[\"'](?:https?:)?//", re.I)
CDN = re.compile(r"(?:cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|ajax\.googleapis\.com|fonts\.googleapis\.com)", re.I)


def test_site_was_built():
    assert (HTML / "index.html").exists(), "run the book build first (make test does)"
    for page in ("intro", "chapters/background", "notation", "glossary", "bibliography",
                 "contributing/chapter_template"):
        assert (HTML / f"{page}.html").exists(), page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(HTML)))
def test_no_remote_scripts_or_stylesheets(page):
    text = page.read_text(encoding="utf-8", errors="replace")
    assert not REMOTE_SCRIPT.search(text), f"{page}: loads a script over the network"
    assert not REMOTE_LINK.search(text), f"{page}: loads a stylesheet over the network"
    assert not CDN.search(text), f"{page}: references a CDN: {CDN.search(text).group(0)}"


def test_no_remote_imports_in_stylesheets():
    for css in HTML.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"@import\s+(url\()?[\"']?https?://", text), css


def test_mathjax_is_served_locally():
    pages_with_math = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8", errors="replace")
        for src in re.findall(r"<script\b[^>]*\bsrc=[\"']([^\"']*mathjax[^\"']*)[\"']", text, re.I):
            pages_with_math += 1
            target = (page.parent / src.split("?")[0]).resolve()
            assert target.is_file(), f"{page}: MathJax script {src} is missing from _build/html"
            assert HTML.resolve() in target.parents
    assert pages_with_math > 0, "no page loads MathJax"


def _glued_values(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if "name" in meta and "application/papermill.record/text/plain" in out.get("data", {}):
                values[meta["name"]] = out["data"]["application/papermill.record/text/plain"]
    return values


def test_glued_numbers_appear_in_the_background_chapter():
    nb = ROOT / "chapters" / "background.ipynb"
    values = _glued_values(nb)
    text = (HTML / "chapters" / "background.html").read_text(encoding="utf-8")
    assert "glue:text" not in text and "glue:figure" not in text
    test_acc = float(values["test_acc"])
    assert f"{test_acc:.1%}".replace("%", "") in text
    mia = float(values["mia_accuracy"])
    assert f"{mia:.1%}".replace("%", "") in text
    for fig in ("fig-puzzle", "fig-timeline", "fig-member-losses", "fig-per-class", "fig-forget-losses"):
        assert f'id="{fig}"' in text, fig


def test_glossary_keeps_the_chinese_terms():
    text = (HTML / "glossary.html").read_text(encoding="utf-8")
    for term in ("遗忘学习", "分片", "切片", "知识蒸馏", "门控知识传递", "回忆指数", "成员推理攻击"):
        assert term in text, term
