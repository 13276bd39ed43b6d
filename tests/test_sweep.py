"""Sweep harness: spec expansion, determinism, applied LR, resume after a kill, divergence rule, summary, export.

A tiny model (d=16, one layer) trains for a few steps on a tiny corpus built here from the Python standard
library's own source, so every test runs in seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

from bayes_optlaws.runs import RunsError, validate_runs  # noqa: E402
from bayes_optlaws.schedules import Schedule  # noqa: E402
from bayes_optlaws.sweep import corpus as corpus_mod  # noqa: E402
from bayes_optlaws.sweep import runner  # noqa: E402
from bayes_optlaws.sweep.spec import expand, load_spec, parse_spec  # noqa: E402

TINY_SPEC = """
name = "tiny"
batch_size = 4
seq_len = 32
log_every = 5
eval_points = 4
eval_seqs = 64
periodic_eval_seqs = 32

[models]
T = { d = 16, layers = 1, heads = 2 }

[schedules]
linear = { family = "linear" }
wsd = { family = "wsd", cooldown = 0.2, cooldown_shape = "1-sqrt" }
poly = { family = "polygon", t2 = 0.4, t3 = 0.7, mid_ratio = 0.5 }

[[grid]]
block = "t"
corpus = "code"
slice = [0.0, 0.8]
models = ["T"]
steps = [20]
schedules = ["linear", "wsd"]
peak_lr = [0.003, 0.03]
warmup = [0.0, 0.2]

[[grid]]
block = "t"
corpus = "code"
slice = [0.0, 0.8]
models = ["T"]
steps = [20]
schedules = ["poly"]
peak_lr = [0.03]
warmup = [0.2]
seeds = [0, 1]

[[stage]]
block = "strong"
group = "strong_shift"
parent = { model = "T", steps = 20, schedule = "linear", peak_lr = 0.03, warmup = 0.2, seed = 0, corpus = "code", slice = [0.0, 0.8] }
corpus = "code"
slice = [0.8, 1.0]
steps = [10]
schedules = ["linear", "wsd"]
peak_lr = [0.01]
warmup = [0.2]
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    corpus_mod.build_code(root, val_bytes=20_000, max_train_bytes=200_000, max_files=40)
    return root


@pytest.fixture()
def spec_path(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_SPEC)
    return p


def test_corpus_is_deterministic_and_has_manifest(tmp_path):
    a = corpus_mod.build_code(tmp_path / "a", val_bytes=5_000, max_train_bytes=50_000, max_files=15)
    b = corpus_mod.build_code(tmp_path / "b", val_bytes=5_000, max_train_bytes=50_000, max_files=15)
    assert a["train_sha256"] == b["train_sha256"] and a["val_sha256"] == b["val_sha256"]
    assert a["val_bytes"] >= 5_000 and "PSF" in a["sources"][0]["licence"]
    c = corpus_mod.load_corpus("code", tmp_path / "a", build=False)
    assert 0 < c.unigram_entropy < np.log(256)
    with pytest.raises(RunsError, match="not built"):
        corpus_mod.load_corpus("nope", tmp_path / "a", build=False)


def test_expand_counts_ids_and_parents(spec_path):
    cfgs = expand(spec_path)
    ids = [c.run_id for c in cfgs]
    assert len(ids) == len(set(ids))
    # 2 schedules x 2 LRs x 2 warmups + 2 polygon seeds + 2 stage children; the parent is already in the grid
    assert len(cfgs) == 8 + 2 + 2
    assert ids == [c.run_id for c in expand(spec_path)]  # stable
    kids = [c for c in cfgs if c.parent is not None]
    assert {k.parent.run_id for k in kids} <= set(ids)
    assert max(ids.index(k.parent.run_id) for k in kids) < min(ids.index(k.run_id) for k in kids)
    for c in cfgs:
        s = Schedule.from_spec(c.schedule)
        assert s.total == c.steps and c.tokens == c.steps * 4 * 32
    wsd = next(c for c in cfgs if c.family == "wsd-1-sqrt" and c.steps == 20)
    assert wsd.schedule["cooldown"] == 4
    poly = next(c for c in cfgs if c.family == "polygon")
    assert (poly.schedule["t1"], poly.schedule["t2"], poly.schedule["t3"]) == (4, 8, 14)


def test_run_id_ignores_labels(spec_path):
    raw_a = TINY_SPEC
    raw_b = TINY_SPEC.replace('block = "t"', 'block = "renamed"', 1)
    import tomllib

    a = expand(parse_spec(tomllib.loads(raw_a)))
    b = expand(parse_spec(tomllib.loads(raw_b)))
    assert [c.run_id for c in a] == [c.run_id for c in b]
    assert a[0].block != b[0].block


def test_spec_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_SPEC.replace('models = ["T"]\nsteps = [20]\nschedules = ["linear", "wsd"]',
                                     'models = ["Q"]\nsteps = [20]\nschedules = ["linear", "wsd"]'))
    with pytest.raises(RunsError, match="unknown model 'Q'"):
        expand(bad)
    odd = tmp_path / "odd.toml"
    odd.write_text(TINY_SPEC.replace("steps = [20]", "steps = [21]", 1))
    with pytest.raises(RunsError, match="multiple of log_every"):
        expand(odd)
    with pytest.raises(RunsError, match="no such spec"):
        load_spec(tmp_path / "missing.toml")


def test_determinism_and_applied_lr(spec_path, cache):
    cfgs = expand(spec_path)
    cfg = next(c for c in cfgs if c.family == "wsd-1-sqrt" and c.schedule["warmup"] > 0 and c.parent is None)
    a = runner.run_group([cfg], cache)[0]
    b = runner.run_group([cfg], cache)[0]
    assert a["row"]["final_loss"] == b["row"]["final_loss"]
    assert a["curve"]["train_loss"] == b["curve"]["train_loss"]
    assert np.isfinite(a["row"]["final_loss"])
    # the LR the optimizer applied (read back from its state) is the schedule's midpoint-rule LR, bit for bit
    want = Schedule.from_spec(cfg.schedule).applied_lr().astype(np.float32)
    steps = np.asarray(a["curve"]["step"])
    np.testing.assert_array_equal(np.asarray(a["curve"]["lr"], dtype=np.float32), want[steps])
    assert a["curve"]["val_step"][-1] == cfg.steps


def test_full_lr_trace_equals_schedule(cache):
    from bayes_optlaws.sweep.model import ModelShape
    from bayes_optlaws.sweep.train import GroupJob, train_group

    c = corpus_mod.load_corpus("code", cache, build=False)
    shape = ModelShape(16, 1, 2, 32)
    sched = Schedule.from_spec({"family": "wsd", "peak_lr": 0.01, "warmup": 3, "total": 20, "cooldown": 6,
                                "cooldown_shape": "1-sqrt"})
    lrs = sched.applied_lr().astype(np.float32)[None]
    starts = (np.arange(20 * 4, dtype=np.int32) * 33).reshape(1, 20, 4)
    val = c.val[: 32 * 33].reshape(32, 33)
    job = GroupJob(shape=shape, batch=4, steps=20, lrs=lrs, starts=starts, data=c.train, val_windows=val,
                   seeds=[0], log_every=5, eval_every=10, periodic_eval_seqs=32)
    res = train_group(job)
    np.testing.assert_array_equal(res.applied_lrs[0].astype(np.float32), lrs[0])


def test_vmapped_group_matches_single_runs(spec_path, cache):
    cfgs = [c for c in expand(spec_path) if c.parent is None and c.schedule["peak_lr"] == 0.003][:2]
    grouped = runner.run_group(cfgs, cache)
    single = [runner.run_group([c], cache)[0] for c in cfgs]
    for g, s in zip(grouped, single):
        assert g["group_size"] == 2 and s["group_size"] == 1
        assert abs(g["row"]["final_loss"] - s["row"]["final_loss"]) < 1e-4


def test_sweep_resume_after_kill(spec_path, cache, tmp_path):
    results = tmp_path / "res.jsonl"
    cfgs = expand(spec_path)
    first = runner.run_group([cfgs[0]], cache)
    second = runner.run_group([cfgs[1]], cache)
    runner.append_result(results, first[0])
    runner.append_result(results, second[0])
    with open(results, "a") as fh:  # a torn line from a killed writer
        fh.write('{"run_id": "d16L1-20-torn", "row": {')
    out = runner.run_sweep(spec_path, results, cache=cache, progress=False, log=lambda *a, **k: None)
    assert out["done"] == len(cfgs) - 2 and out["left"] == 0
    ids = [json.loads(line)["run_id"] for line in results.read_text().splitlines()
           if line.strip().endswith("}") and '"curve"' in line]
    assert sorted(ids) == sorted(c.run_id for c in cfgs)
    again = runner.run_sweep(spec_path, results, cache=cache, progress=False, log=lambda *a, **k: None)
    assert again["done"] == 0
    kids = [r for r in runner.read_results(results).values() if r["row"]["parent_run_id"]]
    assert len(kids) == 2 and all(np.isfinite(r["row"]["final_loss"]) for r in kids)

    from bayes_optlaws.sweep.export import export, load_curves

    grid = tmp_path / "grid"
    meta = export([results], grid, spec_paths=[spec_path], corpus_cache=cache)
    df = validate_runs(pd.read_csv(grid / "runs.csv", dtype={"parent_run_id": str}))
    assert len(df) == len(cfgs) and meta["param_count_rule"] == "non-embedding"
    assert set(df["model_params"]) == {12 * 16 * 16 + 13 * 16 + 2 * 16}
    from bayes_optlaws.runs import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    assert all(c.startswith("x_") or c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS for c in df.columns)
    curves = load_curves(grid / "curves.jsonl.gz")
    assert set(curves) == set(df["run_id"])
    assert (grid / "MANIFEST.md").exists()
    meta_file = json.loads((grid / "runs.csv.meta.json").read_text())
    assert "unigram" in meta_file["divergence_rule"] and meta_file["loss_kind"] == "val, nats per byte"


def test_divergence_rule():
    from bayes_optlaws.sweep.train import divergence

    n = 400
    smooth = 5.5 - 3.0 * (1 - np.exp(-np.arange(n) / 50))
    ok = divergence(smooth, 2.6, unigram=3.3)
    assert not ok["diverged"] and ok["max_excursion"] < 1e-9
    spike = smooth.copy()
    spike[100:] = np.maximum(spike[100:], 3.8)  # collapses back up to ~unigram after step 100
    bad = divergence(spike, 3.28, unigram=3.3)
    assert bad["diverged"] and bad["early_spike"] and bad["at_unigram"]
    early = smooth.copy()
    early[2:6] += 2.0  # a blip inside the first 5 % of steps that has decayed by then does not count
    assert not divergence(early, 2.6, unigram=3.3)["early_spike"]
    assert divergence(smooth, float("nan"), unigram=3.3)["diverged"]
    assert divergence(smooth, 3.26, unigram=3.3)["at_unigram"]


def test_data_summary_small_table(capsys):
    from bayes_optlaws.sweep.cli import register
    from bayes_optlaws.sweep.summary import block_table

    def sched(lr, w, fam="linear"):
        return json.dumps({"family": fam, "peak_lr": lr, "warmup": w, "total": 100})

    rows = []
    for lr, seeds, losses in [(0.01, [0, 1, 2], [2.0, 2.02, 2.04]), (0.03, [0], [2.5]), (0.3, [0], [3.4])]:
        for s, loss in zip(seeds, losses):
            rows.append({"run_id": f"r{lr}-{s}", "model_params": 1000, "tokens": 409600, "tokens_per_step": 4096,
                         "schedule": sched(lr, 5), "final_loss": loss, "diverged": lr == 0.3, "seed": s,
                         "group": "main"})
    rows.append({"run_id": "c", "model_params": 1000, "tokens": 409600, "tokens_per_step": 4096,
                 "schedule": sched(0.01, 5, "cosine"), "final_loss": 2.1, "diverged": False, "seed": 0,
                 "group": "main"})
    df = validate_runs(pd.DataFrame(rows))
    tab = block_table(df)
    assert len(tab) == 1
    r = tab.iloc[0]
    assert r["runs"] == 6 and r["configs"] == 4 and r["diverged"] == 1 and r["seeded_configs"] == 1
    assert r["seed_sd"] == pytest.approx(0.02)
    assert r["spread_sd"] == pytest.approx(np.std([2.02, 2.5, 2.1], ddof=1))
    assert r["families"] == "cosine,linear"

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    register(sub)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "runs.csv"
        df.to_csv(p, index=False)
        args = ap.parse_args(["data", "summary", str(p)])
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "seed_sd" in out and "6 runs, 1 diverged, 1 blocks" in out
    args = ap.parse_args(["sweep"])
    with pytest.raises(RunsError, match="SPEC"):
        args.func(args)
    args = ap.parse_args(["data", "summary", "/nonexistent/runs.csv"])
    with pytest.raises(RunsError, match="no such file"):
        args.func(args)


def test_data_summary_defaults_to_the_embedded_grid_from_any_directory(tmp_path, monkeypatch, capsys):
    from bayes_optlaws.sweep.cli import register

    monkeypatch.chdir(tmp_path)  # not the repository root
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["data", "summary"])
    assert args.func(args) == 0
    assert "runs," in capsys.readouterr().out
