"""The worked examples in notebooks/: committed with their outputs, and executed end to end (nbclient).

The committed files are what a reader sees without running anything (tables, figures); the execution test runs a
copy in a temporary folder, so it never rewrites them.  Refresh the committed outputs with
``notebooks/execute.py`` (after refitting the default model).
"""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs(nb):
    return [o for c in _code_cells(nb) for o in c.get("outputs", [])]


def test_there_are_worked_examples():
    names = [p.name for p in NOTEBOOKS]
    assert any(n.startswith("01") for n in names) and any(n.startswith("02") for n in names) \
        and any(n.startswith("03") for n in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_shows_its_outputs(path):
    """Every code cell was executed, in order, without errors; tables (HTML) are there, and figures (PNG) where
    the notebook draws one."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in _code_cells(nb)]
    assert None not in counts, f"{path.name}: cells never executed; run notebooks/execute.py"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: cells run out of order: {counts}"
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name}: committed with an error output"
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "text/html" in kinds, f"{path.name}: no table output"
    draws = any("plots." in c.source or "plt." in c.source for c in _code_cells(nb))
    assert ("image/png" in kinds) == draws, f"{path.name}: figure outputs do not match the drawing cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BAYES_OPTLAWS_NOTEBOOK_TMP", str(tmp_path))
    copy = shutil.copy(path, tmp_path / path.name)             # run from elsewhere: the data come from the package
    nb = nbformat.read(copy, as_version=4)
    for cell in _code_cells(nb):
        cell.outputs = []
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors
    # every notebook ends by checking its own result (an assert in the last code cell)
    last = _code_cells(nb)[-1]
    assert "assert" in last.source
