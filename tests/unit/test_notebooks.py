"""Structure of every chapter notebook: the parts of the chapter template that can be
checked without executing anything (execution is nbval's job in `make test`)."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(ROOT.glob("chapters/*.ipynb")) + [ROOT / "contributing" / "chapter_template.ipynb"]


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _markdown(nb):
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return request.param, _load(request.param)


def test_there_are_chapters():
    assert any(p.parent.name == "chapters" for p in NOTEBOOKS)


def test_every_notebook_is_in_the_toc_and_vice_versa():
    toc = set(_toc_files())
    for path in NOTEBOOKS:
        assert str(path.relative_to(ROOT).with_suffix("")) in toc, f"{path.name} missing from _toc.yml"
    for entry in toc:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_kernelspec_is_python3(notebook):
    path, nb = notebook
    assert nb["metadata"]["kernelspec"]["name"] == "python3", path


def test_template_anatomy(notebook):
    path, nb = notebook
    text = _markdown(nb)
    first = "".join(nb["cells"][0]["source"])
    assert re.search(r"^\(chap-[\w-]+\)=\n# \S", first), f"{path.name}: label and H1 first"
    assert "Audience & objectives" in text
    assert "Running this notebook" in text
    for heading in ("## Summary", "## Exercises", "## References"):
        assert heading in text, f"{path.name} lacks {heading}"
    assert re.search(r"```\{solution\}[^\n]*\n:class: dropdown", text), "solutions must be dropdowns"
    params = [c for c in _code_cells(nb) if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: exactly one parameters cell"
    assert "SMOKE" in "".join(params[0]["source"])


def test_committed_with_outputs_and_no_errors(notebook):
    path, nb = notebook
    cells = _code_cells(nb)
    assert all(c.get("execution_count") for c in cells), f"{path.name}: rerun with make execute"
    counts = [c["execution_count"] for c in cells]
    assert counts == sorted(counts), f"{path.name}: cells were run out of order"
    for cell in cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: stored error output"
            assert out.get("name") != "stderr", f"{path.name}: stored stderr output {out.get('text')}"


def test_every_glued_name_in_the_prose_is_glued_in_code(notebook):
    path, nb = notebook
    used = set(re.findall(r"\{glue(?::text|:math|)\}`(\w+)", _markdown(nb)))
    used |= set(re.findall(r"```\{glue:figure\} (\w+)", _markdown(nb)))
    # what the committed run actually glued (names built in a loop count too)
    glued = {out["metadata"]["scrapbook"]["name"] for c in _code_cells(nb) for out in c.get("outputs", [])
             if "scrapbook" in out.get("metadata", {})}
    assert used, f"{path.name} glues no numbers into its prose"
    assert used <= glued, f"{path.name}: used in the prose but not glued by the committed run: {sorted(used - glued)}"


def test_no_cdn_or_network_in_notebooks(notebook):
    path, nb = notebook
    text = json.dumps(nb)
    assert not re.search(r"https?://[^\"]*(cdn|unpkg|jsdelivr)", text), path
    code = "\n".join("".join(c["source"]) for c in _code_cells(nb))
    assert "download=True" not in code and "pip install" not in code


def test_outputs_stay_lean(notebook):
    path, _ = notebook
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size} bytes"
