"""The worked examples in notebooks/ are executed end to end (nbclient), as a user would run them."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_worked_examples():
    names = [p.name for p in NOTEBOOKS]
    assert any(n.startswith("01") for n in names) and any(n.startswith("02") for n in names) \
        and any(n.startswith("03") for n in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BAYES_OPTLAWS_NOTEBOOK_TMP", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # every notebook ends by checking its own result (an assert in the last code cell)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last.source
