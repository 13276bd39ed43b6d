"""Re-execute the worked examples in place, so the committed notebooks show current tables and figures.

Run after refitting the default model (``models/default``) or changing what the notebooks show::

    .venv/bin/python notebooks/execute.py                 # all notebooks/*.ipynb, in place
    .venv/bin/python notebooks/execute.py notebooks/01_quick_start.ipynb

Each notebook is executed top to bottom in a fresh kernel (outputs cleared first) and written back only if no
cell failed; a failing notebook is left as it was and the script exits with status 1.  The notebooks fix their own
MCMC seeds (``random_seed=...``); this script also fixes the kernel's ``PYTHONHASHSEED`` and gives the notebooks a
fixed scratch folder (``BAYES_OPTLAWS_NOTEBOOK_TMP``), so two runs on one machine give the same outputs.
Figures use the kernel's inline backend (PNG outputs), which is what a reader sees on GitHub.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
#: seconds one cell may run (the leave-one-block-out refits of notebook 03 are the slowest)
CELL_TIMEOUT_S = 1800


def clear_outputs(nb: nbformat.NotebookNode) -> None:
    """Drop the outputs and execution counts of every code cell (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``"cell N: ErrorName: message"`` for every error output of the executed notebook."""
    return [f"cell {i}: {out.get('ename')}: {out.get('evalue')}" for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" for out in cell.get("outputs", []) if out.output_type == "error"]


def execute(path: Path, scratch: Path, timeout: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Execute a fresh copy of notebook ``path`` (working directory: its folder) and return it."""
    nb = nbformat.read(path, as_version=4)
    clear_outputs(nb)
    os.environ["BAYES_OPTLAWS_NOTEBOOK_TMP"] = str(scratch / path.stem)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="notebooks to refresh (default: notebooks/*.ipynb)")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    os.environ["PYTHONHASHSEED"] = "0"            # inherited by the kernel
    os.environ.pop("MPLBACKEND", None)            # inline figures (PNG outputs), not a headless backend
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bayes-optlaws-notebooks-") as scratch:
        for path in paths:
            start = time.perf_counter()
            try:
                nb = execute(path, Path(scratch), args.timeout)
            except CellExecutionError as exc:
                print(f"error: {path.name}: a cell failed, notebook left unchanged:\n{exc}", file=sys.stderr)
                failed += 1
                continue
            errors = error_outputs(nb)
            if errors:
                print(f"error: {path.name}: {'; '.join(errors)}; notebook left unchanged", file=sys.stderr)
                failed += 1
                continue
            nbformat.write(nb, path)
            print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s, written in place")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
