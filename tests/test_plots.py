"""Figures on the session's small real fit (SYNTHETIC grid): each must show what it claims, not just exist."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from bayes_optlaws import plots
from bayes_optlaws.schedules import Schedule

# the block the map tests look at (tests/synthetic.py: 5 peak LRs × 3 warmups per block)
N, STEPS, TPS = 200_000, 2000, 4096
HELD = "n200000-t2000-lr0.01-w0.02"


# ---------------------------------------------------------------------------------------------- stub evaluation
class _StubLS:
    """Fast stand-in for a fitted law: least squares of log loss on block dummies + chosen schedule terms."""

    terms: tuple[str, ...] = ()

    def _X(self, df):
        sched = [Schedule.from_spec(s) for s in df["schedule"]]
        x = np.log([s.peak_lr for s in sched])
        w = np.array([s.phases().t1 / s.total for s in sched])
        cols = [(df["model_params"].astype(str) + df["tokens"].astype(str)).to_numpy()[:, None] == self.blocks_]
        extra = {"x": x, "x2": x**2, "w": w}
        return np.column_stack([c.astype(float) for c in cols] + [extra[t] for t in self.terms])

    def fit(self, df):
        self.blocks_ = np.unique((df["model_params"].astype(str) + df["tokens"].astype(str)).to_numpy())[None, :]
        self.coef_ = np.linalg.lstsq(self._X(df), np.log(df["final_loss"].to_numpy(float)), rcond=None)[0]
        return self

    def predict(self, df):
        return np.exp(self._X(df) @ self.coef_)


def _stub(terms, draws=False):
    class Stub(_StubLS):
        pass

    Stub.terms = terms
    if draws:
        def predict_draws(self, df):
            p = self.predict(df)
            rng = np.random.default_rng(len(df))
            return p[None, :] * np.exp(rng.normal(0.0, 0.015, size=(300, len(p))))

        Stub.predict_draws = predict_draws
    return Stub


def stub_evaluation(runs: pd.DataFrame):
    """An EvaluationResult with an ablation family (optlaw_ls[...]), a partial one and a method with draws."""
    from bayes_optlaws.evaluation import cross_validate

    steps = {"scale": (), "+convergence": ("x",), "+escape": ("x", "x2"), "+mixed": ("x", "x2", "w")}
    methods = {f"optlaw_ls[{k}]": _stub(t) for k, t in steps.items()}
    methods["bayes_optlaw[+escape]"] = _stub(("x", "x2"))
    methods["bayes_optlaw[+mixed]"] = _stub(("x", "x2", "w"))
    methods["bayes_optlaw"] = _stub(("x", "x2", "w"), draws=True)
    return cross_validate(runs, methods, {}, folds=5, seed=0, raise_errors=True)


@pytest.fixture(scope="module")
def evaluation(synthetic_table):
    return stub_evaluation(synthetic_table)


def _scatter_points(ax, prefix: str) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections
               if isinstance(c, PathCollection) and str(c.get_label()).startswith(prefix))


def _block(table):
    return table[(table["model_params"] == N) & (table["tokens"] == STEPS * TPS)]


# ---------------------------------------------------------------------------------------------- maps
def test_loss_surface_shows_block_runs_boundary_and_uncertainty(fitted_law, synthetic_table):
    fig = plots.loss_surface(fitted_law, N, STEPS, TPS, held_out={HELD})
    assert isinstance(fig, Figure)
    maps = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(maps) == 2
    block = _block(synthetic_table)
    n_div = int(block["diverged"].sum())
    assert 0 < n_div < len(block)
    for ax in maps:
        assert "peak learning rate" in ax.get_xlabel() and "warmup" in ax.get_ylabel()
        # every run of the block is drawn exactly once: stable + diverged + held-out
        total = sum(_scatter_points(ax, p) for p in ("observed run", "diverged run", "held-out run"))
        assert total == len(block)
        assert _scatter_points(ax, "diverged run") == n_div
        assert _scatter_points(ax, "held-out run") == 1
        assert _scatter_points(ax, "predicted best") == 1
        # the P(diverge) = 0.5 contour is drawn on both panels
        assert any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)
    labels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert "nats" in labels and "credible interval" in labels
    g = fig.bol_data["grid"]
    assert g["mean"].shape == (len(fig.bol_data["warmups"]), len(fig.bol_data["peak_lrs"]))
    assert np.all(g["width"] > 0)
    # high peak LR without warmup diverges, a small peak LR does not
    assert g["p_diverge"][0, -1] > 0.5 > g["p_diverge"][0, 0]


def test_loss_surface_matches_observed_losses_on_their_own_grid(fitted_law, synthetic_table):
    block = _block(synthetic_table)
    scheds = [Schedule.from_spec(s) for s in block["schedule"]]
    lrs = sorted({s.peak_lr for s in scheds})
    wus = sorted({s.phases().t1 / s.total for s in scheds})
    fig = plots.loss_surface(fitted_law, N, STEPS, TPS, peak_lrs=lrs, warmups=wus)
    g = fig.bol_data["grid"]
    for s, (_, row) in zip(scheds, block.iterrows()):
        if row["diverged"]:
            continue
        i, j = wus.index(s.phases().t1 / s.total), lrs.index(s.peak_lr)
        assert abs(g["mean"][i, j] - row["final_loss"]) / row["final_loss"] < 0.03


def test_divergence_map(fitted_law, synthetic_table):
    fig = plots.divergence_map(fitted_law, N, STEPS, TPS)
    ax = fig.axes[0]
    mesh = next(c for c in ax.collections if c.get_gid() == "p_diverge")
    p = np.asarray(mesh.get_array())
    assert p.min() >= 0 and p.max() <= 1 and p.min() < 0.5 < p.max()
    assert any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)
    block = _block(synthetic_table)
    assert _scatter_points(ax, "diverged run") == int(block["diverged"].sum())
    assert _scatter_points(ax, "observed run") == int((~block["diverged"]).sum())
    assert any("P(diverge)" in a.get_ylabel() for a in fig.axes)


def test_maps_without_a_divergence_model(fitted_law):
    law = copy.copy(fitted_law)
    law.div_post_ = None
    fig = plots.divergence_map(law, N, STEPS, TPS)
    assert any("no divergence model" in t.get_text() for t in fig.axes[0].texts)
    fig = plots.loss_surface(law, N, STEPS, TPS)
    for ax in fig.axes:
        assert not any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)


# ---------------------------------------------------------------------------------------------- PPC, candidates
def test_ppc_by_block(fitted_law, synthetic_table):
    fig = plots.ppc_by_block(fitted_law)
    ax = fig.axes[0]
    ok = synthetic_table[~synthetic_table["diverged"]]
    n_blocks = ok.groupby(["model_params", "tokens"]).ngroups
    containers = ax.containers
    assert len(containers) == n_blocks
    assert sum(len(c.lines[0].get_xdata()) for c in containers) == len(ok)
    assert any(line.get_label() == "y = x" for line in ax.get_lines())
    assert ax.get_xlabel() == "observed final loss (nats)" and "nats" in ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == n_blocks + 1
    d = fig.bol_data
    assert np.all(d["lo"] <= d["median"]) and np.all(d["median"] <= d["hi"])
    assert 0.6 <= d["coverage"] <= 1.0


def test_candidates_plot(fitted_law):
    from bayes_optlaws.api import rank_candidates
    from bayes_optlaws.optimize import candidate_grid

    cands = candidate_grid(1000, [0.01, 0.03, 0.3], [0.0, 0.05], (0.2,), ("linear", "wsd-linear"))
    ranking = rank_candidates(fitted_law, cands, model_params=80_000, tokens_per_step=TPS)
    fig = plots.candidates(ranking)
    ax, ax_p = fig.axes[:2]
    t = ranking.table
    bars = [p for p in ax_p.patches if p.get_gid() == "p_best_bar"]
    assert len(bars) == len(t)
    np.testing.assert_allclose([b.get_width() for b in bars], t["p_best"])
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    assert len(labels) == len(t) and labels[0].startswith(f"1. {t['name'].iloc[0]}")
    assert "★" in " ".join(labels) and "◆" in " ".join(labels)
    assert sum("P(div)" in x.get_text() for x in ax_p.texts) == len(t)
    # the 0.3-peak-LR candidates are risky: their annotations are red
    risky = [x for x in ax_p.texts if x.get_color() == "#c00000"]
    assert len(risky) == int((t["p_diverge"] > 0.05).sum()) > 0
    assert ax.get_xlabel() == "final loss (nats)"
    fig = plots.candidates(ranking, max_candidates=3)
    assert len(fig.axes[0].get_yticklabels()) == 3 and "more candidates not shown" in fig.get_suptitle()


# ---------------------------------------------------------------------------------------------- evaluation plots
def test_calibration_from_result_and_json(evaluation):
    fig = plots.calibration(evaluation)
    cov = fig.bol_data["coverage"]
    assert list(cov) == ["bayes_optlaw"]
    levels, observed, n = cov["bayes_optlaw"]
    assert levels == [0.5, 0.8, 0.9]
    m = evaluation.methods["bayes_optlaw"]
    np.testing.assert_allclose(observed, [m["coverage_50"], m["coverage_80"], m["coverage_90"]])
    ax, ax_r = fig.axes[:2]
    assert "nominal coverage" in ax.get_xlabel() and "P(best)" in ax_r.get_xlabel()
    rel = evaluation.reliability["bayes_optlaw"]
    assert _scatter_points(ax_r, "bayes_optlaw") == int((rel["count"] > 0).sum())
    # the JSON form (no per-run predictions) gives the same picture
    as_json = json.loads(json.dumps(evaluation.to_dict(include_assignment=False)))
    fig2 = plots.calibration(as_json)
    np.testing.assert_allclose(fig2.bol_data["coverage"]["bayes_optlaw"][1], observed)


def test_calibration_needs_draws(evaluation):
    methods = {k: v for k, v in evaluation.to_dict()["methods"].items() if k != "bayes_optlaw"}
    with pytest.raises(ValueError, match="predictive draws"):
        plots.calibration({"methods": methods})


def test_ablation(evaluation):
    fig = plots.ablation(evaluation)
    ax_s, ax_t = fig.axes[:2]
    assert [t.get_text() for t in ax_s.get_xticklabels()] == ["scale", "+convergence", "+escape", "+mixed"]
    lines = {line.get_label(): line for line in ax_s.get_lines()}
    assert {"optlaw_ls", "bayes_optlaw", "paper, Table 9 (its data)"} <= set(lines)
    want = [evaluation.methods[f"optlaw_ls[{s}]"]["spearman"] for s in plots.ABLATION_ORDER]
    np.testing.assert_allclose(lines["optlaw_ls"].get_ydata(), want)
    assert list(np.rint(lines["bayes_optlaw"].get_xdata())) == [2, 3]  # the partial family at its own steps
    top = {line.get_label(): line for line in ax_t.get_lines()}
    np.testing.assert_allclose(top["optlaw_ls"].get_ydata(),
                               [100 * evaluation.methods[f"optlaw_ls[{s}]"]["top2"] for s in plots.ABLATION_ORDER])
    assert "Spearman" in ax_s.get_ylabel() and "%" in ax_t.get_ylabel()
    with pytest.raises(ValueError, match="ablation"):
        plots.ablation({"methods": {"bayes_optlaw": {"spearman": 0.5}}})


# ---------------------------------------------------------------------------------------------- trace, save
def test_trace_forest_and_trace(fitted_law):
    fig = plots.trace(fitted_law)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts + ax.get_yticklabels())
    for name in ("intercept", "sigma_size", "E_c^pe", "N^-ps"):
        assert name in texts
    assert "R-hat" in fig.get_suptitle()
    fig = plots.trace(fitted_law, kind="trace")
    used = [ax for ax in fig.axes if ax.has_data()]
    assert len(used) == 2 * len(plots.TRACE_VARS)
    with pytest.raises(ValueError):
        plots.trace(fitted_law, kind="pair")


def test_save_writes_png_and_svg(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    paths = plots.save(fig, tmp_path / "sub" / "figure.png")
    assert [p.name for p in paths] == ["figure.png", "figure.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()


def test_human_count():
    assert plots.human_count(25_000) == "25K"
    assert plots.human_count(1.3e9, "params") == "1.3B params"
    assert plots.human_count(512) == "512"
