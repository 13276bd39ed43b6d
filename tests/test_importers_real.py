"""Real-data checks of the importers on ../shared/datasets (skipped when that folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bayes_optlaws.importers import import_runs
from bayes_optlaws.runs import read_runs, write_runs
from bayes_optlaws.schedules import Schedule

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LRS = DATA / "lr-scheduling"
MPL = DATA / "multipowerlaw"
PEAKS_124M = {1e-4, 5e-4, 1e-3, 2e-3, 3e-3}


def _need(folder: Path) -> None:
    if not folder.exists():
        pytest.skip(f"../shared/datasets not found: {folder}")


@pytest.fixture(scope="module")
def lrs():
    _need(LRS)
    df, meta = import_runs("lr-scheduling", [str(LRS)])
    scheds = {rid: Schedule.from_spec(s) for rid, s in zip(df["run_id"], df["schedule"])}
    return df, meta, scheds


def test_lr_scheduling_rows_groups_and_tokens(lrs):
    df, meta, scheds = lrs
    assert len(df) == 235 and df["run_id"].is_unique
    assert df["group"].value_counts().to_dict() == {"slimpajama": 202, "openwebtext2": 21, "slimpajama_chunk1": 12}
    for rid, row in df.set_index("run_id").iterrows():
        assert scheds[rid].total == row["x_iterations"]
        assert row["tokens"] == scheds[rid].total * row["tokens_per_step"]
    big = df["model_params"] == 359842816
    assert set(df.loc[big, "tokens_per_step"]) == {204800} and set(df.loc[~big, "tokens_per_step"]) == {102400}
    assert "embedding" in meta["parameter_rule"] and meta["licence"].startswith("MIT")


def test_lr_scheduling_the_diverged_run_is_flagged(lrs):
    df, meta, _ = lrs
    div = df[df["diverged"]]
    assert len(div) == 1
    row = div.iloc[0]
    assert row["run_id"].startswith("cos-zero-124m") and row["x_peak_lr"] == 5e-3
    assert row["final_loss"] == pytest.approx(7.585, abs=1e-3) and row["x_block"] == "slimpajama/124M/50000"
    assert meta["n_diverged"] == 1


def test_lr_scheduling_stitched_cooldowns_start_at_zero_with_warmup(lrs):
    df, meta, scheds = lrs
    stitched = df[df["x_resume_step"].fillna(0) > 0]
    assert len(stitched) == 109
    assert meta["stitching"]["parents_logged"] == 109 and meta["stitching"]["parents_rebuilt"] == 0
    for _, row in stitched.iterrows():
        s = scheds[row["run_id"]]
        spec = json.loads(row["schedule"])
        assert spec["steps"][0] == 0 and s.total == row["x_iterations"]
        assert s.phases().t1 == 300
        assert s.lr_at(0) == pytest.approx(row["x_peak_lr"] / 100)
        assert s.lr_at(row["x_resume_step"]) == pytest.approx(row["x_peak_lr"])  # resumed from the constant phase
        assert s.final_lr == 0.0
        assert row["x_parent_source"] == "logged" and row["x_resumed_from"] in set(df["run_id"])
    # a parent's logged history equals the warmup + constant rebuild (also for the 29 "missing" parents)
    assert meta["stitching"]["max_parent_vs_rebuilt_dev"] < 1e-12


def test_lr_scheduling_step0_lr_is_peak_over_100(lrs):
    # the logged linear warmups, extrapolated back to step 0, start at peak / 100 (the value the importer adds)
    df, _, _ = lrs
    const = df[(df["x_family"] == "constant") & df["x_resume_step"].isna()]
    for rid in const["run_id"]:
        d = json.loads((LRS / "data" / f"{rid}.json").read_text())
        pairs = sorted(set(zip(d["history"]["train"]["iter"], d["history"]["train"]["train_lr"])))
        (s1, l1), (s2, l2) = pairs[0], pairs[1]
        lr0 = l1 - (l2 - l1) / (s2 - s1) * s1
        assert lr0 == pytest.approx(d["config"]["lr"] / 100, rel=1e-9)


def test_lr_scheduling_constant_runs_have_no_fake_cooldown(lrs):
    df, meta, scheds = lrs
    const = df[df["x_family"] == "constant"]
    assert len(const) == 21 and meta["stitching"]["n_fake_zero_dropped"] == 21
    for _, row in const.iterrows():
        s = scheds[row["run_id"]]
        assert s.final_lr == s.peak_lr == pytest.approx(row["x_peak_lr"])
        assert s.escape_integral(s.total - 500, s.total) == 0.0


def test_lr_scheduling_124m_50k_block(lrs):
    df, _, _ = lrs
    block = df[df["x_block"] == "slimpajama/124M/50000"]
    assert len(block) == 71
    peaks = block.groupby("x_family")["x_peak_lr"].apply(lambda s: set(np.round(s, 12)))
    full = sorted(f for f, p in peaks.items() if PEAKS_124M <= p)
    assert len(full) >= 6  # at least 6 schedules × the 5 peak LRs 1e-4 … 3e-3
    assert {"constant", "cos-0", "wsd-linear-0.2", "wsd-1sqrt-0.2", "wsd-linear-0.994"} <= set(full)
    assert block["x_config"].nunique() == 55  # the rest are replicate runs
    rep = block.groupby("x_config")["final_loss"].agg(["count", "min", "max"])
    spread = (rep["max"] - rep["min"])[rep["count"] > 1]
    assert 0 < spread.mean() < 0.003  # replicate noise ≈ 0.0013 nats


def test_lr_scheduling_families_match_logged_lr(lrs):
    df, _, scheds = lrs
    for _, row in df.iterrows():
        s = scheds[row["run_id"]]
        ratio = s.final_lr / s.peak_lr
        fam = row["x_family"]
        if fam == "cos-0.1":
            assert ratio == pytest.approx(0.1, rel=1e-4)
        elif fam == "cos-0":
            assert s.final_lr <= 1.01e-7  # cos_final_lr = 1e-7 absolute
        elif fam.startswith("wsd"):
            assert ratio == 0.0


def test_lr_scheduling_derived_index_agrees(lrs):
    _, meta, _ = lrs
    check = meta["derived_index_check"]
    assert check["checked"] == 235 and not check["missing_in_index"] and not check["not_imported"]
    assert check["disagreements"] == []
    assert {"params", "final_val_loss", "resumed_from_run", "resumed_from_ckpt", "tokens"} <= set(check["columns"])


def test_lr_scheduling_compaction_and_rebuild_leave_features_unchanged(lrs):
    df, _, scheds = lrs
    names = ["cos-210m_slimpajama_llama_nlayers24_nhead12_lr0.001_sched_cos_warmup300_iter22222_bs50x2_ws2_seed0_"
             "data_seed1337",
             "horizon_transfer/extend-50k_slimpajama_chunk1_llama_norm_nlayers24_nhead12_lr0.001_sched_wsd_warmup300_"
             "decay_linear_0.2_iter200000_bs50x2_ws2_seed0_data_seed1337",
             "ann124-0.2_slimpajama_llama_norm_nlayers12_nhead12_lr0.002_sched_wsd_warmup300_decay_sqrt_0.2_"
             "iter25000_bs50x2_ws2_seed0_data_seed1337"]
    files = [str(LRS / "data" / f"{n}.json") for n in names]
    raw, _ = import_runs("lr-scheduling", files, compact=False, check_index=False)
    rebuilt, _ = import_runs("lr-scheduling", files, rebuild_parents=True, check_index=False)
    for name, full_spec, reb_spec in zip(names, raw["schedule"], rebuilt["schedule"]):
        small = scheds[name]
        full = Schedule.from_spec(full_spec)
        assert len(json.loads(full_spec)["steps"]) >= len(json.loads(df.set_index("run_id").loc[name, "schedule"])
                                                          ["steps"])
        for a in (full, Schedule.from_spec(reb_spec)):
            assert a.total == small.total and a.phases() == small.phases()
            assert a.integral() == pytest.approx(small.integral(), rel=1e-12)
            assert a.escape_integral() == pytest.approx(small.escape_integral(), rel=1e-9)
            assert np.max(np.abs(a.grid() - small.grid())) <= 1e-12 * small.peak_lr


def test_lr_scheduling_round_trip_through_csv(lrs, tmp_path):
    df, meta, _ = lrs
    out = write_runs(df, tmp_path / "runs.csv", meta)
    back, meta2 = read_runs(out)
    assert back["schedule"].tolist() == df["schedule"].tolist() and meta2["n_runs"] == 235
    assert out.stat().st_size < 3_000_000


def test_multipower_real():
    _need(MPL)
    df, meta = import_runs("multipower", [str(MPL)], tokens_per_step=1_048_576)
    assert len(df) == 27 and df["x_size"].value_counts().to_dict() == {"25M": 9, "100M": 9, "400M": 9}
    assert set(df["model_params"]) == {25_000_000, 100_000_000, 400_000_000}
    assert not df["diverged"].any() and meta["n_sharpened_drops"] == 9
    for _, row in df.iterrows():
        s = Schedule.from_spec(row["schedule"])
        assert row["tokens"] == s.total * 1_048_576
        assert s.lr_at(0) == 0.0 and s.lr_at(2160) == pytest.approx(3e-4)
        if row["x_family"].startswith("two-stage"):
            assert s.lr_at(7999) == pytest.approx(3e-4) and s.lr_at(8000) < 2e-4
            assert s.escape_integral(7900, 8100) == pytest.approx((3e-4 - s.lr_at(8000)) ** 2)
    by = df.set_index("run_id")
    assert by.loc["400M/cosine_72000", "final_loss"] == pytest.approx(2.6154)
    assert by.loc["25M/wsdcon_3", "x_last_step"] == 14144  # 25M two-stage curves stop early
