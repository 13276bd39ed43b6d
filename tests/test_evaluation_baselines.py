"""Baseline laws: each fits a synthetic table generated from its own law (written out independently here) and
recovers the parameters; fits are robust on tiny tables; divergence baselines find the obvious boundary."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.evaluation import baselines as B
from bayes_optlaws.schedules import Schedule

TPS = 65536


def synthetic_grid(sizes=(2_000_000, 8_000_000, 32_000_000), steps=(300, 600, 1200), peaks=(1e-3, 2e-3, 4e-3)):
    """A small cross-scale grid of five schedule families; final_loss is filled in by each test's law."""
    fams = [{"family": "linear", "warmup": 20}, {"family": "cosine", "warmup": 60},
            {"family": "wsd", "warmup": 20, "cooldown": 0.2, "cooldown_shape": "linear"},
            {"family": "wsd", "warmup": 60, "cooldown": 0.5, "cooldown_shape": "1-sqrt"},
            {"family": "constant", "warmup": 20}]
    rows = []
    for i, (n, s, pk, f) in enumerate(itertools.product(sizes, steps, peaks, fams)):
        spec = dict(f, peak_lr=pk, total=s)
        if "cooldown" in spec:
            spec["cooldown"] = int(spec["cooldown"] * s)
        rows.append({"run_id": f"r{i}", "model_params": n, "tokens": s * TPS, "tokens_per_step": TPS,
                     "schedule": json.dumps(spec), "final_loss": np.nan, "diverged": False})
    return pd.DataFrame(rows)


def _lrs(row) -> np.ndarray:
    return Schedule.from_spec(row["schedule"]).applied_lr()


def _warmup_end(a: np.ndarray) -> int:
    return int(np.argmax(a >= 0.999 * a.max()))


def _recovered(model, truth, rtol=1e-3):
    got = model.params_
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=rtol, abs=1e-6), f"{k}: fitted {got[k]}, true {v}"


# ---------------------------------------------------------------------------- loss baselines on synthetic tables
def test_block_mean_hand_computed():
    df = synthetic_grid(sizes=(2_000_000,), steps=(300, 600), peaks=(1e-3,))
    df["final_loss"] = np.where(df["tokens"] == 300 * TPS, 3.0, 2.0) + 0.01 * np.arange(len(df))
    model = B.BlockMean().fit(df)
    small = df["tokens"] == 300 * TPS
    np.testing.assert_allclose(model.predict(df)[small.to_numpy()], df.loc[small, "final_loss"].mean())
    unseen = df.iloc[[0]].assign(model_params=7_000_000)
    assert model.predict(unseen)[0] == pytest.approx(df["final_loss"].mean())


def test_linear_recovers_synthetic_linear_law():
    df = synthetic_grid()
    d = B.describe_runs(df)
    x = np.column_stack([np.log(d["peak_lr"]), d["warmup_frac"], np.log(d["N"]), np.log(d["D"])])
    w = np.array([0.05, -0.3, -0.2, -0.1])
    df["final_loss"] = 2.5 + x @ w
    model = B.LinearBaseline().fit(df)
    np.testing.assert_allclose(model.predict(df), df["final_loss"], rtol=1e-10)
    np.testing.assert_allclose(model.coef_[1:] / model.scale_, w, rtol=1e-8)


def test_chinchilla_recovers_synthetic_chinchilla():
    df = synthetic_grid()
    truth = {"E": 1.7, "A": 0.4, "alpha": 0.37, "B": 0.6, "beta": 0.23}
    n, d = df["model_params"] / 1e9, df["tokens"] / 1e9
    df["final_loss"] = truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"]
    model = B.Chinchilla().fit(df)
    _recovered(model, truth)
    np.testing.assert_allclose(model.predict(df), df["final_loss"], rtol=1e-6)


def _tissue_reference(df, lam=0.999):
    """S1 and S2 by the explicit recursion m_i = λ m_{i-1} + (η_{i-1} − η_i), warmup left out of the momentum."""
    lr_ref = max(Schedule.from_spec(s).peak_lr for s in df["schedule"])
    s1, s2 = [], []
    for _, row in df.iterrows():
        a = _lrs(row) / lr_ref
        w = _warmup_end(a)
        m = total = 0.0
        for i in range(1, len(a)):
            m = lam * m + ((a[i - 1] - a[i]) if i > w else 0.0)
            total += m
        s1.append(a.sum())
        s2.append(total)
    return np.array(s1), np.array(s2)


def test_tissue_recovers_synthetic_tissue_law():
    df = synthetic_grid()
    s1, s2 = _tissue_reference(df)
    truth = {"L0": 1.8, "B": 0.3, "beta": 0.27, "A": 2.0, "alpha": 0.43, "C": 2e-3, "gamma": 0.17}
    n = df["model_params"].to_numpy() / 1e9
    df["final_loss"] = (truth["L0"] + truth["B"] * n ** -truth["beta"] + truth["A"] * s1 ** -truth["alpha"]
                        - truth["C"] * n ** truth["gamma"] * s2)
    model = B.Tissue().fit(df)
    _recovered(model, truth)
    np.testing.assert_allclose(model.predict(df), df["final_loss"], rtol=1e-6)


def _mpl_reference(df, p):
    """Multi-power law at the final step by brute force (S_k summed explicitly for every k)."""
    lr_ref = max(Schedule.from_spec(s).peak_lr for s in df["schedule"])
    out = []
    for _, row in df.iterrows():
        a = _lrs(row) / lr_ref
        w = _warmup_end(a)
        post = a[w:]
        ld = 0.0
        for k in range(1, len(post)):
            drop = post[k - 1] - post[k]
            if drop != 0.0:
                x = p["C"] * post[k] ** -p["gamma"] * post[k:].sum()
                ld += drop * (1.0 - (x + 1.0) ** -p["beta"])
        out.append(p["L0"] + p["A"] * a.sum() ** -p["alpha"] - p["B"] * ld)
    return np.array(out)


def test_multi_power_recovers_synthetic_multi_power_law():
    df = synthetic_grid(sizes=(8_000_000,), steps=(300, 600, 1200))
    truth = {"L0": 2.0, "A": 3.0, "alpha": 0.45, "B": 0.4, "C": 0.013, "beta": 0.55, "gamma": 0.45}
    df["final_loss"] = _mpl_reference(df, truth)
    model = B.MultiPower(max_terms=0).fit(df)  # exact sums
    got = dict(model.params_, C=math.exp(model.params_["log_C"]))
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=2e-3), f"{k}: fitted {got[k]}, true {v}"
    np.testing.assert_allclose(model.predict(df), df["final_loss"], rtol=1e-6)


def test_multi_power_per_size_fits_and_pooled_fallback():
    df = synthetic_grid()
    truth = {"L0": 2.0, "A": 3.0, "alpha": 0.45, "B": 0.4, "C": 0.013, "beta": 0.55, "gamma": 0.45}
    df["final_loss"] = _mpl_reference(df, truth) + 0.1 * np.log(df["model_params"] / 2e6)
    model = B.MultiPower().fit(df)
    assert set(model.size_fits_) == {2_000_000, 8_000_000, 32_000_000}
    np.testing.assert_allclose(model.predict(df), df["final_loss"], rtol=1e-4)
    unseen = df.iloc[:3].assign(model_params=5_000_000)
    assert np.all(np.isfinite(model.predict(unseen)))


def test_multi_power_merged_terms_match_exact_sums_on_long_runs():
    specs = [json.dumps({"family": "cosine", "peak_lr": 2e-3, "warmup": 500, "total": 50_000}),
             json.dumps({"family": "wsd", "peak_lr": 1e-3, "warmup": 500, "total": 50_000, "cooldown": 10_000,
                         "cooldown_shape": "1-sqrt"}),
             json.dumps({"family": "wsd", "peak_lr": 1e-3, "warmup": 500, "total": 50_000, "cooldown": 45_000}),
             json.dumps({"knots": [[0, 0], [300, 2e-3], [20_000, 2e-3], [20_000, 5e-4], [50_000, 5e-4]]})]
    for spec in specs:
        total, d, eta, S = B._mpl_raw((spec,), 0)
        _, d2, eta2, S2 = B._mpl_raw((spec,), 512)
        assert len(d2) <= 512
        for c, gamma, beta in [(1e-1, 0.5, 0.6), (1e3, 0.3, 1.0)]:
            exact = np.sum(d * (1 - (c * (eta / 2e-3) ** -gamma * S / 2e-3 + 1) ** -beta))
            merged = np.sum(d2 * (1 - (c * (eta2 / 2e-3) ** -gamma * S2 / 2e-3 + 1) ** -beta))
            assert merged == pytest.approx(exact, rel=5e-5)


def test_simplified_chinchilla_recovers_its_own_law():
    df = synthetic_grid()
    lr_ref = max(Schedule.from_spec(s).peak_lr for s in df["schedule"])
    area, esc = [], []
    for _, row in df.iterrows():
        sched = Schedule.from_spec(row["schedule"])
        delta = row["tokens_per_step"] / 1e9  # one step in billions of tokens
        area.append(sched.integral() / lr_ref * delta)
        esc.append(sched.escape_integral() / lr_ref**2 / delta)
    area, esc = np.array(area), np.array(esc)
    n, d = df["model_params"].to_numpy() / 1e9, df["tokens"].to_numpy() / 1e9
    truth = {"E": 1.7, "A": 0.3, "alpha": 0.33, "B": 0.5, "beta": 0.27, "c1": 0.001, "c2": 0.01, "c3": 0.02,
             "p": 0.37}
    df["final_loss"] = (truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]
                        + truth["c1"] / area + truth["c2"] * n / area + truth["c3"] * esc ** truth["p"])
    model = B.SimplifiedChinchilla().fit(df)
    _recovered(model, truth)


def test_continual_stage_uses_full_history():
    parent = {"family": "constant", "peak_lr": 2e-3, "warmup": 20, "total": 400}
    child = {"knots": [[0, 2e-3], [100, 0.0]]}
    df = pd.DataFrame([
        {"run_id": "p", "model_params": 4_000_000, "tokens": 400 * TPS, "tokens_per_step": TPS,
         "schedule": json.dumps(parent), "final_loss": 3.0, "diverged": False, "parent_run_id": None},
        {"run_id": "c", "model_params": 4_000_000, "tokens": 100 * TPS, "tokens_per_step": TPS,
         "schedule": json.dumps(child), "final_loss": 2.9, "diverged": False, "parent_run_id": "p"},
    ])
    desc = B.describe_runs(df)
    assert desc.loc[1, "specs"] == (json.dumps(parent), json.dumps(child))
    assert desc.loc[1, "D"] == pytest.approx(500 * TPS / 1e9)
    s1_parent, _ = B._tissue_raw(desc.loc[0, "specs"], 0.999)
    s1_child, s2_child = B._tissue_raw(desc.loc[1, "specs"], 0.999)
    child_lrs = Schedule.from_spec(child).applied_lr()
    assert s1_child == pytest.approx(s1_parent + child_lrs.sum())
    assert s2_child > 0
    # a fitted law predicts a child whose parent is only in the training table
    model = B.Tissue().fit(df.iloc[[0]])
    assert np.isfinite(model.predict(df.iloc[[1]]))[0]


@pytest.mark.parametrize("name", sorted(B.LOSS_BASELINES))
def test_loss_baselines_are_robust_on_tiny_tables(name):
    df = synthetic_grid(sizes=(2_000_000,), steps=(300,), peaks=(1e-3, 2e-3))
    df["final_loss"] = 3.0 + 0.01 * np.arange(len(df))
    df.loc[0, "diverged"] = True
    df.loc[0, "final_loss"] = np.nan
    for rows in (df.iloc[[1]], df.iloc[[1, 2]], df.iloc[:5], df):  # one run, two runs, one block
        model = B.LOSS_BASELINES[name]().fit(rows)
        pred = model.predict(df)
        assert pred.shape == (len(df),) and np.all(np.isfinite(pred)), name
        assert model.name == name
    with pytest.raises(ValueError, match="no usable rows"):
        B.LOSS_BASELINES[name]().fit(df.iloc[[0]])
    with pytest.raises(RuntimeError, match="fit"):
        B.LOSS_BASELINES[name]().predict(df)


# ---------------------------------------------------------------------------- divergence baselines
def _divergence_table():
    df = synthetic_grid(sizes=(2_000_000, 8_000_000), steps=(300,), peaks=(1e-3, 2e-3, 4e-3, 8e-3))
    peak = np.array([json.loads(s)["peak_lr"] for s in df["schedule"]])
    df["diverged"] = peak >= 4e-3
    df["final_loss"] = np.where(df["diverged"], np.nan, 3.0)
    return df, peak


def test_lr_threshold_finds_the_boundary():
    df, peak = _divergence_table()
    model = B.LRThreshold().fit(df)
    assert model.threshold_ == pytest.approx(0.5 * (math.log(2e-3) + math.log(4e-3)))
    np.testing.assert_array_equal(model.predict_proba(df), df["diverged"].astype(float))
    soft = B.LRThreshold(softness=0.05).fit(df).predict_proba(df)
    assert np.all((soft > 0) & (soft < 1)) and np.array_equal(soft > 0.5, df["diverged"].to_numpy())
    never = B.LRThreshold().fit(df[~df["diverged"]])
    assert np.all(never.predict_proba(df) == 0.0)
    assert B.LRThreshold(criterion="balanced_accuracy").fit(df).threshold_ == pytest.approx(model.threshold_)


def test_logistic_separates_and_handles_one_class():
    df, peak = _divergence_table()
    model = B.LogisticDivergence().fit(df)
    p = model.predict_proba(df)
    assert np.all((p > 0) & (p < 1))
    assert np.array_equal(p > 0.5, df["diverged"].to_numpy())
    assert model.coef_[1] > 0  # log peak LR raises P(diverge)
    one = B.LogisticDivergence().fit(df[~df["diverged"]])
    np.testing.assert_allclose(one.predict_proba(df), 0.5 / (int((~df["diverged"]).sum()) + 1))
    with pytest.raises(ValueError, match="no usable rows"):
        B.LogisticDivergence().fit(df.iloc[0:0])


def test_block_mean_keeps_groups_apart():
    df = synthetic_grid(sizes=(2_000_000,), steps=(300,), peaks=(1e-3,))
    both = pd.concat([df.assign(group="a", final_loss=3.0), df.assign(group="b", final_loss=4.0,
                                                                      run_id=df["run_id"] + "b")])
    model = B.BlockMean().fit(both)
    np.testing.assert_allclose(model.predict(both), both["final_loss"])
    assert model.predict(df.assign(group="c"))[0] == pytest.approx(3.5)  # unseen group: mean over groups
