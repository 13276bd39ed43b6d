"""Unit tests of the log importers on small synthetic inputs written by the tests themselves."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.importers import (compact_trace, extend_to_total, import_runs, sharpen_drops, trace_spec)
from bayes_optlaws.importers.cli import register
from bayes_optlaws.importers.lr_scheduling import check_derived_index
from bayes_optlaws.runs import RunsError, read_runs
from bayes_optlaws.schedules import Schedule


def _features(sched: Schedule) -> dict:
    ph = sched.phases()
    return {"total": sched.total, "peak": sched.peak_lr, "final": sched.final_lr, "I": sched.integral(),
            "I_w": sched.integral(0, ph.t1), "I_c": sched.integral(ph.t2, ph.total),
            "E": sched.escape_integral(), "E_w": sched.escape_integral(0, ph.t2),
            "E_c": sched.escape_integral(ph.t3, ph.total), "phases": (ph.t1, ph.t2, ph.t3, ph.warnings)}


def _assert_same_features(a: Schedule, b: Schedule) -> None:
    fa, fb = _features(a), _features(b)
    assert fa["phases"] == fb["phases"]
    for k in ("total", "peak", "final", "I", "I_w", "I_c", "E", "E_w", "E_c"):
        assert fa[k] == pytest.approx(fb[k], rel=1e-9, abs=1e-30), k
    assert np.max(np.abs(a.grid() - b.grid())) <= 1e-12 * a.peak_lr


# ---------------------------------------------------------------------------- compaction
def synthetic_trace(step=50, total=5000):
    """Synthetic log: linear warmup, constant, cosine cooldown to 10 %, logged every ``step`` steps."""
    s = np.arange(0, total + 1, step, dtype=float)
    peak = 1e-3
    lr = np.where(s <= 300, peak * (0.01 + 0.99 * s / 300), peak)
    cd = s >= 3000
    u = (s[cd] - 3000) / (total - 3000)
    lr[cd] = 0.1 * peak + 0.9 * peak * 0.5 * (1 + np.cos(np.pi * u))
    return s, lr


def test_compaction_keeps_corners_of_piecewise_linear_trace():
    s = np.arange(0, 10001, 50, dtype=float)
    lr = np.interp(s, [0, 300, 8000, 10000], [1e-5, 1e-3, 1e-3, 0.0])
    cs, cl = compact_trace(s, lr)
    assert cs.tolist() == [0, 300, 8000, 10000]
    np.testing.assert_allclose(cl, [1e-5, 1e-3, 1e-3, 0.0], rtol=1e-12, atol=0)


def test_compaction_leaves_schedule_features_unchanged():
    s, lr = synthetic_trace()
    cs, cl = compact_trace(s, lr)
    assert len(cs) < len(s)  # warmup and plateau collapsed, cosine kept
    full = Schedule.from_logged(s, lr, total=5000)
    small = Schedule.from_spec(trace_spec(s, lr, 5000))
    _assert_same_features(full, small)


def test_compaction_never_drifts_on_slow_curves():
    # a curve whose every local second difference is below the tolerance but whose chord is not
    s = np.arange(0, 20001, dtype=float)
    lr = 1e-3 * (1 - 1e-9 * (s / 20000) ** 2)
    cs, cl = compact_trace(s, lr)
    back = np.interp(s, cs, cl)
    assert np.max(np.abs(back - lr)) <= 1e-12 * 1e-3


def test_compaction_random_piecewise_traces():
    rng = np.random.default_rng(0)
    for _ in range(20):
        knots = np.sort(rng.choice(np.arange(1, 2000), size=5, replace=False))
        ks = np.concatenate([[0], knots, [2000]]).astype(float)
        kl = rng.uniform(0, 1e-3, size=len(ks))
        s = np.arange(0, 2001, 10, dtype=float)
        lr = np.interp(s, ks, kl)
        _assert_same_features(Schedule.from_logged(s, lr, total=2000),
                              Schedule.from_spec(trace_spec(s, lr, 2000)))


def test_sharpen_drops_restores_one_step_drop():
    s = np.array([7808, 7936, 8000, 8128, 8256], dtype=float)
    lr = np.array([3e-4, 3e-4, 9e-5, 9e-5, 9e-5])
    s2, lr2, n = sharpen_drops(s, lr)
    assert n == 1
    assert s2.tolist() == [7808, 7936, 7999, 8000, 8128, 8256]
    assert lr2[2] == 3e-4 and lr2[3] == 9e-5
    # a smooth decay is left alone
    s3, lr3, n3 = sharpen_drops(np.arange(5.0) * 100, np.array([3e-4, 3e-4, 2e-4, 1e-4, 0.5e-4]))
    assert n3 == 0 and len(s3) == 5


def test_extend_to_total_continues_last_interval():
    s, lr = extend_to_total(np.array([0.0, 22210, 22220]), np.array([5e-4, 1.35e-6, 2.25e-7]), 22222)
    assert s[-1] == 22222 and lr[-1] == 0.0  # clipped at 0
    s, lr = extend_to_total(np.array([0.0, 100, 150]), np.array([1e-3, 1e-3, 1e-3]), 200)
    assert lr[-1] == 1e-3


# ---------------------------------------------------------------------------- lr-scheduling (synthetic logs)
def _wandb_log(path: Path, *, name: str, lr: float, iterations: int, iters, lrs, scheduler="wsd", fract=0.0,
               resume_from=None, final_loss=3.0, params=1_000_000, dataset="slimpajama", train_loss=None):
    cfg = {"lr": lr, "scheduler": scheduler, "wsd_fract_decay": fract, "decay_type": "linear",
           "warmup_steps": 100, "iterations": iterations, "batch_size": 4, "acc_steps": 2, "world_size": 2,
           "sequence_length": 64, "dataset": dataset, "seed": 0, "resume_from": resume_from,
           "n_layer": 2, "n_embd": 8, "n_head": 2}
    hist = {"train": {"iter": list(iters), "train_lr": list(lrs),
                      "train_loss": list(train_loss) if train_loss is not None else [4.0] * len(iters)},
            "val": {"iter": [iterations], "val_loss": [final_loss]}}
    path.write_text(json.dumps({"name": name, "config": cfg, "summary": {"final-val/loss": final_loss,
                                                                          "parameters": params},
                                "history": hist}))


def _warm_const(iters, peak, warm=100):
    it = np.asarray(iters, dtype=float)
    return np.where(it < warm, peak * (0.01 + 0.99 * it / warm), peak)


@pytest.fixture
def lrs_logs(tmp_path):
    """Synthetic lr-scheduling folder: a constant parent (unsorted, a repeated iter, fake final zero), a cooldown
    child resumed at step 500, a child whose parent is known only by W&B name, an orphan child, a diverged run."""
    data = tmp_path / "lrs" / "data"
    data.mkdir(parents=True)
    iters = list(range(10, 1001, 10))
    lrs = list(_warm_const(iters, 1e-3))
    lrs[-1] = 0.0  # fake final zero
    it_mixed = iters[50:] + iters[:50] + [500]  # unsorted + a repeated iter
    lr_mixed = lrs[50:] + lrs[:50] + [1e-3]
    _wandb_log(data / "const_parent.json", name="const_parent", lr=1e-3, iterations=1000, iters=it_mixed,
               lrs=lr_mixed, final_loss=3.2)
    ci = list(range(510, 801, 10))
    cl = [1e-3 * max(0.0, (800 - i) / 300) for i in ci]
    _wandb_log(data / "ann_child.json", name="ann_child", lr=1e-3, iterations=800, iters=ci, lrs=cl, fract=0.375,
               resume_from="/x/exps/const_parent/ckpts/500", final_loss=3.0)
    # parent file named differently from its W&B run name
    _wandb_log(data / "renamed_file.json", name="wandb_parent", lr=5e-4, iterations=1000, iters=iters,
               lrs=list(_warm_const(iters, 5e-4)), final_loss=3.3)
    _wandb_log(data / "ann_child2.json", name="ann_child2", lr=5e-4, iterations=800, iters=ci,
               lrs=[5e-4 * (800 - i) / 300 for i in ci], fract=0.375,
               resume_from="/x/exps/wandb_parent/ckpts/500", final_loss=3.05)
    _wandb_log(data / "orphan.json", name="orphan", lr=2e-3, iterations=800, iters=ci,
               lrs=[2e-3 * (800 - i) / 300 for i in ci], fract=0.375,
               resume_from="/x/exps/missing_parent/ckpts/500", final_loss=3.1)
    _wandb_log(data / "blowup.json", name="blowup", lr=1e-2, iterations=1000, iters=iters,
               lrs=list(np.interp(iters, [0, 100, 1000], [1e-4, 1e-2, 0.0])), scheduler="cos", final_loss=7.5)
    return tmp_path / "lrs"


def test_lr_scheduling_synthetic_import(lrs_logs):
    df, meta = import_runs("lr-scheduling", [str(lrs_logs)])
    by = df.set_index("run_id")
    assert set(by.index) == {"const_parent", "ann_child", "renamed_file", "ann_child2", "orphan", "blowup"}
    # tokens per step = batch_size × acc_steps × world_size × sequence_length
    assert (df["tokens_per_step"] == 4 * 2 * 2 * 64).all()
    assert (df["tokens"] == df["x_iterations"] * df["tokens_per_step"]).all()
    # constant parent: sorted, de-duplicated, fake final zero dropped -> flat to the end
    parent = Schedule.from_spec(by.loc["const_parent", "schedule"])
    assert parent.final_lr == pytest.approx(1e-3) and parent.total == 1000
    assert json.loads(by.loc["const_parent", "schedule"])["steps"] == [0, 100, 1000]
    assert meta["stitching"]["n_fake_zero_dropped"] == 1
    # stitched child: parent history up to 500, its own cooldown after; starts at 0 with the warmup
    child = Schedule.from_spec(by.loc["ann_child", "schedule"])
    assert child.total == 800 and child.lr_at(0) == pytest.approx(1e-5) and child.lr_at(100) == pytest.approx(1e-3)
    assert child.lr_at(500) == pytest.approx(1e-3) and child.final_lr == 0.0
    assert child.phases().t1 == 100 and child.phases().t3 == 500
    assert by.loc["ann_child", "x_resumed_from"] == "const_parent" and by.loc["ann_child", "x_resume_step"] == 500
    assert by.loc["ann_child", "x_parent_source"] == "logged"
    assert pd.isna(by.loc["ann_child"].get("parent_run_id", None))  # history is inside the schedule
    # parent found by W&B name only
    assert by.loc["ann_child2", "x_resumed_from"] == "renamed_file"
    assert meta["stitching"]["parents_found_by_wandb_name_only"] == 1
    # orphan: rebuilt as warmup + constant
    orphan = Schedule.from_spec(by.loc["orphan", "schedule"])
    assert by.loc["orphan", "x_parent_source"].startswith("rebuilt")
    assert orphan.lr_at(0) == pytest.approx(2e-5) and orphan.lr_at(300) == pytest.approx(2e-3)
    assert meta["stitching"]["parents_rebuilt"] == 1
    # divergence: > 1 nat above the best of the same group and size
    assert by["diverged"].to_dict() == {k: k == "blowup" for k in by.index}
    assert "1 nat" in meta["divergence_rule"]
    # families
    assert by.loc["const_parent", "x_family"] == "constant"
    assert by.loc["ann_child", "x_family"] == "wsd-linear-0.375"
    # the logged parent equals the warmup + constant rebuild -> rebuild_parents gives the same schedules
    df2, _ = import_runs("lr-scheduling", [str(lrs_logs)], rebuild_parents=True)
    assert Schedule.from_spec(df2.set_index("run_id").loc["ann_child", "schedule"]) == child


def test_lr_scheduling_single_file_finds_parent_next_to_it(lrs_logs):
    df, _ = import_runs("lr-scheduling", [str(lrs_logs / "data" / "ann_child2.json")])
    assert len(df) == 1 and df["x_parent_source"].iloc[0] == "logged"


def test_lr_scheduling_bad_inputs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {}, "summary": {}, "history": {"train": {"iter": [1, 2]}}}))
    with pytest.raises(RunsError, match=r"bad\.json.*train_lr"):
        import_runs("lr-scheduling", [str(bad)])
    bad.write_text("{not json")
    with pytest.raises(RunsError, match="not valid JSON"):
        import_runs("lr-scheduling", [str(bad)])
    _wandb_log(bad, name="b", lr=1e-3, iterations=100, iters=[10, 20], lrs=[1e-3, 1e-3],
               resume_from="/weird/path")
    with pytest.raises(RunsError, match="resume_from"):
        import_runs("lr-scheduling", [str(bad)])
    with pytest.raises(RunsError, match="no such file"):
        import_runs("lr-scheduling", [str(tmp_path / "nope")])


def test_lr_scheduling_a_log_that_ends_early_is_warned_about_and_an_all_zero_log_refused(tmp_path):
    """A log ending at iter 500 of 1,000 (logged every 10) is extended to the end as before, with a warning that
    names the gap; a log ending one logging interval early is not warned about; an LR of 0 throughout is an
    error."""
    iters = list(range(10, 501, 10))
    _wandb_log(tmp_path / "short.json", name="short", lr=1e-3, iterations=1000, iters=iters,
               lrs=list(_warm_const(iters, 1e-3)))
    full = list(range(10, 991, 10))
    _wandb_log(tmp_path / "full.json", name="full", lr=1e-3, iterations=1000, iters=full,
               lrs=list(_warm_const(full, 1e-3)))
    df, meta = import_runs("lr-scheduling", [str(tmp_path)])
    assert sorted(df["run_id"]) == ["full", "short"]
    assert Schedule.from_spec(df.set_index("run_id").loc["short", "schedule"]).total == 1000
    assert meta["warnings"] == ["short: the LR is logged to iter 500 of config.iterations 1000 (50 logged points, "
                                "median spacing 10 iters); the last 500 steps (50%) continue the last logged "
                                "interval's line. If the run stopped early, its final loss is not that of this "
                                "schedule: leave it out"]
    _wandb_log(tmp_path / "one.json", name="one", lr=1e-3, iterations=1000, iters=[10], lrs=[1e-5])
    _, meta = import_runs("lr-scheduling", [str(tmp_path / "one.json")])
    assert "(a single logged point)" in meta["warnings"][0]
    _wandb_log(tmp_path / "zero.json", name="zero", lr=1e-3, iterations=1000, iters=full, lrs=[0.0] * len(full))
    with pytest.raises(RunsError, match=r"zero\.json: every logged history\.train\.train_lr is 0"):
        import_runs("lr-scheduling", [str(tmp_path / "zero.json")])


def test_check_derived_index_reports_disagreements(tmp_path):
    idx = tmp_path / "_derived_index.csv"
    pd.DataFrame({"file": ["a.json", "b.json"], "lr": [1e-3, 2e-3], "iterations": [100, 200],
                  "resumed_from_run": [None, "p"]}).to_csv(idx, index=False)
    facts = {"a": {"lr": 1e-3, "iterations": 100, "resumed_from_run": None},
             "b": {"lr": 2e-3, "iterations": 250, "resumed_from_run": "p"},
             "c": {"lr": 1e-3, "iterations": 1, "resumed_from_run": None}}
    res = check_derived_index(idx, facts)
    assert res["checked"] == 2 and res["missing_in_index"] == ["c"]
    assert res["disagreements"] == [{"file": "b", "field": "iterations", "index": 200, "json": 250}]


# ---------------------------------------------------------------------------- multipower (synthetic curves)
@pytest.fixture
def mpl_folder(tmp_path):
    d = tmp_path / "mpl" / "csv_25"
    d.mkdir(parents=True)
    steps = np.concatenate([np.arange(2176, 8000, 128), [8000], np.arange(8128, 9000, 128)])
    lr = np.where(steps < 8000, 3e-4, 9e-5)
    loss = np.linspace(4.0, 3.3, len(steps))
    pd.DataFrame({"step": steps, "lr": lr, "loss": loss}).to_csv(d / "wsdcon_9.csv", index=False)
    cs = np.arange(2160, 5000, 128)
    pd.DataFrame({"step": cs, "lr": np.linspace(3e-4, 1e-4, len(cs)), "loss": np.linspace(4, 3.5, len(cs))}
                 ).to_csv(d / "cosine_24000.csv", index=False)
    return tmp_path / "mpl"


def test_multipower_synthetic(mpl_folder):
    with pytest.raises(RunsError, match="tokens_per_step"):
        import_runs("multipower", [str(mpl_folder)])
    df, meta = import_runs("multipower", [str(mpl_folder)], tokens_per_step=1024)
    by = df.set_index("run_id")
    assert set(by.index) == {"25M/wsdcon_9", "25M/cosine_24000"}
    assert (df["model_params"] == 25_000_000).all()
    spec = json.loads(by.loc["25M/wsdcon_9", "schedule"])
    assert spec["steps"][:4] == [0, 2160, 7999, 8000] and spec["lr"][:4] == [0.0, 3e-4, 3e-4, 9e-5]
    sched = Schedule.from_spec(by.loc["25M/wsdcon_9", "schedule"])
    assert sched.escape_integral(7000, 8800) == pytest.approx((3e-4 - 9e-5) ** 2)  # one-step drop
    assert sched.total == 8896 and by.loc["25M/wsdcon_9", "tokens"] == 8896 * 1024
    assert by.loc["25M/wsdcon_9", "final_loss"] == pytest.approx(3.3)
    assert by.loc["25M/wsdcon_9", "x_family"] == "two-stage-9e-5"
    assert json.loads(by.loc["25M/cosine_24000", "schedule"])["steps"][:2] == [0, 2160]
    assert meta["n_sharpened_drops"] == 1 and "nominal" in meta["parameter_rule"]
    assert not df["diverged"].any()


# ---------------------------------------------------------------------------- generic csv logs
def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_import_basic_and_val_loss(tmp_path):
    a = _csv(tmp_path / "run_a.csv", "step,lr,loss,val_loss\n0,0,5.0,\n10,1e-3,4.0,\n20,1e-3,3.5,3.6\n"
                                      "30,5e-4,3.2,\n40,0,3.1,3.15\n")
    df, meta = import_runs("csv", [str(a)], model_params=1000, tokens_per_step=64)
    row = df.iloc[0]
    assert row["run_id"] == "run_a" and row["final_loss"] == 3.15 and row["x_loss_kind"] == "val"
    assert row["tokens"] == 40 * 64 and not row["diverged"]
    sched = Schedule.from_spec(row["schedule"])
    assert sched.total == 40 and sched.lr_at(25) == pytest.approx(7.5e-4)
    df2, _ = import_runs("csv", [str(a)], model_params=1000, tokens_per_step=64, final_loss="train")
    assert df2["final_loss"].iloc[0] == 3.1


def test_csv_a_final_loss_measured_well_before_the_end_is_warned_about(tmp_path):
    """val_loss evaluated last at step 20 of 100: the final loss is still that evaluation (as documented), with
    its step recorded and a warning that says what to do; --final-loss train takes the last training loss."""
    f = _csv(tmp_path / "stale.csv", "step,lr,loss,val_loss\n0,1e-3,5.0,\n20,1e-3,4.0,4.1\n60,1e-3,3.5,\n"
                                     "100,0,3.0,\n")
    df, meta = import_runs("csv", [str(f)], model_params=1000, tokens_per_step=64)
    assert df["final_loss"].iloc[0] == 4.1 and df["x_final_loss_step"].iloc[0] == 20
    assert meta["warnings"] == ["stale: final_loss is the val loss at step 20, 80 steps (80%) before the log's "
                                "last step 100; the schedule runs to 100. Log an evaluation at the last step, or "
                                "import with final_loss='train' (CLI: --final-loss train)"]
    out = tmp_path / "runs.csv"
    args = _parser().parse_args(["import", "csv", str(f), "--out", str(out), "--model-params", "1000",
                                 "--tokens-per-step", "64", "--final-loss", "train"])
    assert args.func(args) == 0
    runs, meta = read_runs(out)
    assert runs["final_loss"].iloc[0] == 3.0 and runs["x_final_loss_step"].iloc[0] == 100
    assert not meta["warnings"]
    # no evaluation at all with final_loss='val' is an error, not a diverged run; a diverged run is not warned about
    empty = _csv(tmp_path / "noval.csv", "step,lr,loss,val_loss\n0,1e-3,5.0,\n100,0,3.0,\n")
    with pytest.raises(RunsError, match=r"noval\.csv: final_loss='val' but its val_loss column has no value"):
        import_runs("csv", [str(empty)], model_params=1000, tokens_per_step=64, final_loss="val")
    boom = _csv(tmp_path / "boom.csv", "step,lr,loss,val_loss\n0,1e-3,5.0,5.1\n60,1e-3,inf,\n100,0,inf,\n")
    df, meta = import_runs("csv", [str(boom)], model_params=1000, tokens_per_step=64)
    assert df["diverged"].iloc[0] and not meta["warnings"]
    args = _parser().parse_args(["import", "multipower", str(f), "--out", str(tmp_path / "m.csv"),
                                 "--final-loss", "train"])
    with pytest.raises(RunsError, match="final_loss not used by this format"):
        args.func(args)


def test_csv_diverged_and_side_table(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _csv(logs / "good.csv", "step,lr,loss\n0,1e-3,5\n100,1e-3,3\n")
    _csv(logs / "bad.csv", "step,lr,loss\n0,1e-2,5\n50,1e-2,nan\n100,1e-2,nan\n")
    side = _csv(tmp_path / "side.csv", "file,model_params,tokens_per_step,group,x_note\n"
                                       "good.csv,1000,32,g1,ok\nbad,2000,32,g1,boom\n")
    df, meta = import_runs("csv", [str(logs)], side_table=str(side))
    by = df.set_index("run_id")
    assert by.loc["bad", "diverged"] and np.isnan(by.loc["bad", "final_loss"])
    assert not by.loc["good", "diverged"] and by.loc["good", "final_loss"] == 3
    assert by.loc["bad", "model_params"] == 2000 and by.loc["good", "x_note"] == "ok"
    assert (df["group"] == "g1").all()
    df3, _ = import_runs("csv", [str(logs / "good.csv")], model_params=10, tokens_per_step=1, diverge_above=2.5)
    assert df3["diverged"].iloc[0]


@pytest.mark.parametrize("text, match", [
    ("step,loss\n0,3\n10,2\n", r"missing column\(s\) lr"),
    ("step,lr,loss\n0,abc,3\n10,1e-3,2\n", r"line 2, column 'lr': 'abc' is not a number"),
    ("step,lr,loss\n0,1e-3,3\n1.5,1e-3,2\n", r"line 3, column 'step'"),
    ("step,lr,loss\n0,-1e-3,3\n10,1e-3,2\n", r"column 'lr'.*>= 0"),
    ("step,lr,loss\n0,1e-3,3\n10,1e-3,2\n10,2e-3,2\n", r"step 10 is logged more than once"),
    ("step,lr,loss\n0,1e-3,3\n", r"at least two"),
    ("", r"empty file"),
])
def test_csv_bad_inputs_name_file_and_field(tmp_path, text, match):
    f = _csv(tmp_path / "log.csv", text)
    with pytest.raises(RunsError, match=match) as exc:
        import_runs("csv", [str(f)], model_params=10, tokens_per_step=1)
    assert "log.csv" in str(exc.value)


def test_csv_requires_sizes(tmp_path):
    f = _csv(tmp_path / "log.csv", "step,lr,loss\n0,1e-3,3\n10,1e-3,2\n")
    with pytest.raises(RunsError, match="model_params unknown"):
        import_runs("csv", [str(f)], tokens_per_step=1)
    with pytest.raises(RunsError, match="tokens_per_step unknown"):
        import_runs("csv", [str(f)], model_params=1)


def test_import_runs_rejects_unknown_format_and_option(tmp_path):
    with pytest.raises(RunsError, match="unknown import format 'wandb'.*lr-scheduling, multipower, csv"):
        import_runs("wandb", [str(tmp_path)])
    with pytest.raises(RunsError, match="not used by this format"):
        import_runs("lr-scheduling", [str(tmp_path)], tokens_per_step=5)


# ---------------------------------------------------------------------------- CLI
def _parser():
    parser = argparse.ArgumentParser(prog="bayes-optlaws")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_import_writes_table_and_metadata(tmp_path, capsys):
    f = _csv(tmp_path / "run.csv", "step,lr,loss\n0,0,5\n10,1e-3,4\n100,0,3\n")
    out = tmp_path / "runs.csv"
    args = _parser().parse_args(["import", "csv", str(f), "--out", str(out), "--model-params", "100",
                                 "--tokens-per-step", "8"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("imported 1 runs") and "\n" not in line
    runs, meta = read_runs(out)
    assert runs["run_id"].tolist() == ["run"] and meta["format"] == "csv"
    for key in ("source", "licence", "parameter_rule", "loss_kind", "divergence_rule", "importer_version"):
        assert key in meta
    with pytest.raises(RunsError, match="already exists"):
        args.func(args)
    args = _parser().parse_args(["import", "csv", str(f), "--out", str(out), "--model-params", "100",
                                 "--tokens-per-step", "8", "--force"])
    assert args.func(args) == 0


def test_cli_unknown_format_is_runs_error(tmp_path):
    args = _parser().parse_args(["import", "nope", str(tmp_path), "--out", str(tmp_path / "o.csv")])
    with pytest.raises(RunsError, match="unknown import format"):
        args.func(args)


def test_cli_import_prints_what_the_importer_assumed(tmp_path, capsys):
    f = _csv(tmp_path / "late.csv", "step,lr,loss\n10,1e-3,4\n50,1e-3,3.5\n100,0,3\n")  # the log starts at step 10
    args = _parser().parse_args(["import", "csv", str(f), "--out", str(tmp_path / "runs.csv"), "--model-params",
                                 "100", "--tokens-per-step", "8"])
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "warning: late: log starts at step 10, first LR held back to step 0" in err


def test_multipower_two_files_with_one_run_id_are_both_named(mpl_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(mpl_folder, copy)
    with pytest.raises(RunsError, match=r"copy/csv_25/\w+\.csv: its run id '25M/\w+' is also that of .*mpl/csv_25"):
        import_runs("multipower", [str(mpl_folder), str(copy)], tokens_per_step=1024)
