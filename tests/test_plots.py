"""Figures drawn from HAND-MADE SYNTHETIC numbers (no model is fitted or called here): each plot must show what
its numbers say (points, lines, bars, labels), not just exist.  Plots only draw: a last test parses plots.py and
checks that it imports no model module and calls no prediction, ranking or fitting."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from bayes_optlaws import plots
from bayes_optlaws.draws import PredictionDraws
from bayes_optlaws.evaluation.protocol import EvaluationResult
from bayes_optlaws.ranking import Ranking
from bayes_optlaws.schedules import Schedule
from bayes_optlaws.surface import SurfaceGrid

# the block of the hand-made maps
N, STEPS, TPS = 200_000, 2000, 4096


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
    """An EvaluationResult (real cross-validation of stub methods on a SYNTHETIC table) with an ablation family
    (optlaw_ls[...]), a partial one and a method with draws; used by tests/test_report.py."""
    from bayes_optlaws.evaluation import cross_validate

    steps = {"scale": (), "+convergence": ("x",), "+escape": ("x", "x2"), "+mixed": ("x", "x2", "w")}
    methods = {f"optlaw_ls[{k}]": _stub(t) for k, t in steps.items()}
    methods["bayes_optlaw[+escape]"] = _stub(("x", "x2"))
    methods["bayes_optlaw[+mixed]"] = _stub(("x", "x2", "w"))
    methods["bayes_optlaw"] = _stub(("x", "x2", "w"), draws=True)
    return cross_validate(runs, methods, {}, folds=5, seed=0, raise_errors=True)


# ---------------------------------------------------------------------------------------------- synthetic inputs
def synthetic_grid(with_divergence: bool = True) -> SurfaceGrid:
    """HAND-MADE SYNTHETIC map: a loss bowl around peak LR 1e-2 and P(diverge) rising with peak LR, falling with
    warmup, crossing 0.5 inside the grid."""
    peak_lrs = np.geomspace(1e-3, 1e-1, 7)
    warmups = np.array([0.0, 0.01, 0.05, 0.1])
    x, w = np.meshgrid(np.log10(peak_lrs), warmups)
    mean = 3.0 + 0.2 * (x + 2.0) ** 2 + 0.5 * w
    width = 0.02 + 0.05 * np.abs(x + 2.0)
    if with_divergence:
        p_div = 1 / (1 + np.exp(-(8.0 * (x + 1.4) - 40.0 * w)))
        p_width = 0.3 * p_div * (1 - p_div)
    else:
        p_div = p_width = np.full(mean.shape, np.nan)
    return SurfaceGrid(model_params=N, total_steps=STEPS, tokens_per_step=TPS, peak_lrs=peak_lrs, warmups=warmups,
                       mean=mean, q05=mean - width / 2, q50=mean, q95=mean + width / 2, width=width,
                       p_diverge=p_div, p_diverge_width=p_width)


def synthetic_block_runs() -> pd.DataFrame:
    """HAND-MADE SYNTHETIC observed runs of the block: 3 stable linear, 1 stable cosine, 2 diverged (one of them
    held out in the tests) and 1 stable held-out run."""
    rows = [("a", 3e-3, 0.0, 3.20, False, "linear"), ("b", 1e-2, 0.01, 3.01, False, "linear"),
            ("c", 1e-2, 0.1, 3.06, False, "linear"), ("d", 3e-3, 0.05, 3.15, False, "cosine"),
            ("e", 1e-1, 0.0, 5.50, True, "linear"), ("f", 1e-1, 0.01, 5.40, True, "linear"),
            ("g", 5e-3, 0.05, 3.08, False, "linear")]
    return pd.DataFrame([{"run_id": r, "model_params": N, "tokens": STEPS * TPS, "final_loss": loss, "diverged": div,
                          "peak_lr": lr, "warmup_frac": wf, "family": fam} for r, lr, wf, loss, div, fam in rows])


HELD = {"f", "g"}


def _scatter_points(ax, prefix: str) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections
               if isinstance(c, PathCollection) and str(c.get_label()).startswith(prefix))


def _mesh(ax, gid: str) -> np.ndarray:
    return np.asarray(next(c for c in ax.collections if c.get_gid() == gid).get_array())


# ---------------------------------------------------------------------------------------------- maps
def test_loss_surface_draws_the_grid_the_runs_the_boundary_and_the_best_cell():
    grid, runs = synthetic_grid(), synthetic_block_runs()
    fig = plots.loss_surface(grid, runs, held_out=HELD)
    assert isinstance(fig, Figure)
    maps = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(maps) == 2
    for ax in maps:
        assert "peak learning rate" in ax.get_xlabel() and "warmup" in ax.get_ylabel()
        # every run drawn exactly once: held-out (f, g), diverged (e), other shape (d), observed linear (a, b, c)
        assert _scatter_points(ax, "held-out run") == 2
        assert _scatter_points(ax, "diverged run") == 1
        assert _scatter_points(ax, "other-shape run") == 1
        assert _scatter_points(ax, "observed run") == 3
        assert _scatter_points(ax, "predicted best") == 1
        assert any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)
    np.testing.assert_allclose(_mesh(maps[0], "loss_mean").reshape(grid.mean.shape), grid.mean)
    np.testing.assert_allclose(_mesh(maps[1], "interval_width").reshape(grid.width.shape), grid.width)
    best = grid.best_stable_cell()
    star = next(c for c in maps[0].collections if str(c.get_label()).startswith("predicted best"))
    np.testing.assert_allclose(star.get_offsets()[0], [best["peak_lr"], best["warmup"]])
    assert best["peak_lr"] == pytest.approx(1e-2) and grid.p_diverge[0, 3] < 0.5  # the bowl's bottom is stable
    assert f"peak LR {best['peak_lr']:.3g}" in fig.get_suptitle() and "200K params" in fig.get_suptitle()
    labels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert "nats" in labels and "90% credible interval" in labels


def test_loss_surface_without_divergence_has_no_boundary_and_no_hatching():
    fig = plots.loss_surface(synthetic_grid(with_divergence=False), synthetic_block_runs())
    for ax in fig.axes:
        assert not any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)
    # without P(diverge) every cell is stable: the star marks the global minimum of the mean
    grid = synthetic_grid(with_divergence=False)
    i, j = np.unravel_index(np.argmin(grid.mean), grid.mean.shape)
    assert fig.bol_data["best"]["peak_lr"] == grid.peak_lrs[j] and fig.bol_data["best"]["warmup"] == grid.warmups[i]


def test_divergence_map_draws_p_diverge_and_its_uncertainty():
    grid, runs = synthetic_grid(), synthetic_block_runs()
    fig = plots.divergence_map(grid, runs)
    ax, ax_u = fig.axes[:2]  # the two maps (then their colour bars)
    np.testing.assert_allclose(_mesh(ax, "p_diverge").reshape(grid.p_diverge.shape), grid.p_diverge)
    np.testing.assert_allclose(_mesh(ax_u, "p_diverge_width").reshape(grid.p_diverge.shape), grid.p_diverge_width)
    assert any(c.get_gid() == "p_diverge_boundary" for c in ax.collections)
    assert _scatter_points(ax, "diverged run") == 2 and _scatter_points(ax, "observed run") == 4
    assert any("P(diverge)" in a.get_ylabel() for a in fig.axes)
    assert "7 runs observed here, 2 diverged" in fig.get_suptitle()


def test_divergence_map_without_a_divergence_model_says_so():
    fig = plots.divergence_map(synthetic_grid(with_divergence=False), synthetic_block_runs())
    assert any("no divergence model" in t.get_text() for t in fig.axes[0].texts)
    assert not any(c.get_gid() == "p_diverge" for ax in fig.axes for c in ax.collections)
    assert _scatter_points(fig.axes[0], "diverged run") == 2


def test_maps_refuse_runs_they_cannot_place():
    grid = synthetic_grid()
    with pytest.raises(ValueError, match="warmup_frac.*surface.block_runs"):
        plots.loss_surface(grid, synthetic_block_runs().drop(columns=["warmup_frac"]))
    other = synthetic_block_runs()
    other.loc[2, "model_params"] = 80_000
    with pytest.raises(ValueError, match="run c is not in the grid's block"):
        plots.divergence_map(grid, other)


def test_maps_accept_a_block_without_runs():
    empty = synthetic_block_runs().iloc[:0]
    fig = plots.loss_surface(synthetic_grid(), empty)
    assert sum(_scatter_points(ax, "") for ax in fig.axes) == 2  # only the two stars


# ---------------------------------------------------------------------------------------------- PPC
def synthetic_ppc() -> tuple[pd.DataFrame, PredictionDraws]:
    """HAND-MADE SYNTHETIC training runs in 2 blocks (3 + 2 runs) and draws centred on the observed losses,
    except run 0 whose draws sit 1 nat above it (outside its interval)."""
    observed = pd.DataFrame({"final_loss": [3.0, 3.1, 3.2, 2.8, 2.9], "model_params": [N, N, N, 80_000, 80_000],
                             "tokens": [STEPS * TPS] * 3 + [1000 * TPS] * 2})
    centre = observed["final_loss"].to_numpy() + np.array([1.0, 0, 0, 0, 0])
    noise = np.random.default_rng(0).normal(0.0, 0.02, size=(400, 5))
    draws = PredictionDraws(names=list("abcde"), loss=centre + noise / 2, loss_noisy=centre + noise,
                            p_diverge=np.full((400, 5), np.nan), diverged_loss=5.5)
    return observed, draws


def test_ppc_by_block_one_colour_per_block_and_misses_circled():
    observed, draws = synthetic_ppc()
    fig = plots.ppc_by_block(observed, draws)
    ax, ax_r = fig.axes[:2]
    assert len(ax.containers) == 2  # one errorbar container per block
    assert sum(len(c.lines[0].get_xdata()) for c in ax.containers) == 5
    np.testing.assert_allclose(sorted(np.concatenate([c.lines[0].get_xdata() for c in ax.containers])),
                               sorted(observed["final_loss"]))
    assert any(line.get_label() == "y = x" for line in ax.get_lines())
    assert ax.get_xlabel() == "observed final loss (nats)" and "nats" in ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 3  # 2 blocks + y = x
    circled = [c for c in ax_r.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in circled) == 1
    assert fig.bol_data["coverage"] == pytest.approx(0.8)
    assert "4/5 = 80% inside" in fig.get_suptitle()


def test_ppc_by_block_refuses_draws_of_other_runs():
    observed, draws = synthetic_ppc()
    with pytest.raises(ValueError, match="4 observed runs but draws for 5"):
        plots.ppc_by_block(observed.iloc[:4], draws)
    with pytest.raises(ValueError, match="tokens"):
        plots.ppc_by_block(observed.drop(columns=["tokens"]), draws)


# ---------------------------------------------------------------------------------------------- candidates
def synthetic_ranking() -> Ranking:
    """HAND-MADE SYNTHETIC ranking of 4 candidates; 'hot' is risky (P(diverge) 0.3)."""
    table = pd.DataFrame({"name": ["safe-a", "hot", "safe-b", "slow"], "rank": [1, 2, 3, 4],
                          "loss_mean": [3.00, 3.02, 3.05, 3.30], "loss_q05": [2.95, 2.90, 3.00, 3.20],
                          "loss_q50": [3.00, 3.01, 3.05, 3.30], "loss_q95": [3.06, 3.20, 3.10, 3.40],
                          "p_best": [0.5, 0.3, 0.2, 0.0], "p_diverge": [0.001, 0.3, 0.0, np.nan]})
    picks = {"by_expected_loss": "safe-a", "by_p_best": "safe-a", "risk_aware": "safe-b",
             "risk_aware_rule": "lowest q90 with P(diverge) <= 0.05"}
    return Ranking(table=table, picks=picks)


def test_candidates_plot_bars_labels_and_risk():
    ranking = synthetic_ranking()
    fig = plots.candidates(ranking)
    ax, ax_p = fig.axes[:2]
    bars = [p for p in ax_p.patches if p.get_gid() == "p_best_bar"]
    np.testing.assert_allclose([b.get_width() for b in bars], ranking.table["p_best"])
    labels = [lab.get_text() for lab in ax.get_yticklabels()]
    assert labels == ["1. safe-a ★", "2. hot", "3. safe-b ◆", "4. slow"]
    intervals = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    np.testing.assert_allclose([line.get_xdata() for line in intervals],
                               ranking.table[["loss_q05", "loss_q95"]].to_numpy())
    texts = [t.get_text() for t in ax_p.texts]
    assert texts[1] == "0.30 | P(div) 0.30" and texts[2].endswith("P(div) <0.01") and texts[3].endswith("n/a")
    assert [t.get_text() for t in ax_p.texts if t.get_color() == "#c00000"] == ["0.30 | P(div) 0.30"]
    assert ax.get_xlabel() == "final loss (nats)"
    fig = plots.candidates(ranking, max_candidates=2)
    assert len(fig.axes[0].get_yticklabels()) == 2 and "2 more candidates not shown" in fig.get_suptitle()


# ---------------------------------------------------------------------------------------------- evaluation plots
def synthetic_evaluation(with_draws: bool = True) -> EvaluationResult:
    """HAND-MADE SYNTHETIC evaluation: an ablation family, a partial one, a method with draws and a baseline."""
    spearman, top2 = (0.2, 0.4, 0.7, 0.8), (0.5, 0.6, 0.9, 1.0)
    methods = {f"optlaw_ls[{s}]": {"spearman": r, "top2": t, "n": 40}
               for s, r, t in zip(plots.ABLATION_ORDER, spearman, top2)}
    methods["bayes_optlaw[+escape]"] = {"spearman": 0.72, "top2": 0.9, "n": 40}
    methods["bayes_optlaw[+mixed]"] = {"spearman": 0.85, "top2": None, "n": 40}  # None: a metric JSON left null
    methods["block_mean"] = {"spearman": 0.0, "n": 40}
    reliability = {}
    if with_draws:
        methods["bayes_optlaw"] = {"coverage_90": 0.925, "coverage_50": 0.45, "coverage_80": float("nan"),
                                   "n": 40, "pbest_ece": 0.05, "spearman": 0.8}
        reliability["bayes_optlaw"] = pd.DataFrame({"bin": [0, 1, 2], "lo": [0.0, 0.5, 0.9], "hi": [0.5, 0.9, 1.0],
                                                    "mean_p": [0.2, np.nan, 0.95], "freq": [0.25, np.nan, 0.9],
                                                    "count": [8, 0, 12]})
    return EvaluationResult(methods=methods, divergence={}, folds={}, data={}, predictions=pd.DataFrame(),
                            reliability=reliability)


def test_calibration_coverage_points_and_reliability_markers():
    fig = plots.calibration(synthetic_evaluation())
    levels, observed, n = fig.bol_data["coverage"]["bayes_optlaw"]
    assert levels == [0.5, 0.9] and observed == [0.45, 0.925] and n == 40  # NaN coverage_80 left out
    ax, ax_r = fig.axes[:2]
    line = next(ln for ln in ax.get_lines() if ln.get_label() != "perfect calibration")
    np.testing.assert_allclose(line.get_xdata(), [0.5, 0.9])
    np.testing.assert_allclose(line.get_ydata(), [0.45, 0.925])
    assert _scatter_points(ax_r, "bayes_optlaw") == 2  # the empty bin is not drawn
    legend = " ".join(t.get_text() for t in ax_r.get_legend().get_texts())
    assert "ECE 0.050" in legend and "20 configurations" in legend
    assert "nominal coverage" in ax.get_xlabel() and "P(best)" in ax_r.get_xlabel()


def test_calibration_needs_draws():
    with pytest.raises(ValueError, match="predictive draws"):
        plots.calibration(synthetic_evaluation(with_draws=False))


def test_ablation_lines_per_family_at_their_steps():
    fig = plots.ablation(synthetic_evaluation())
    ax_s, ax_t = fig.axes[:2]
    assert [t.get_text() for t in ax_s.get_xticklabels()] == list(plots.ABLATION_ORDER)
    lines = {line.get_label(): line for line in ax_s.get_lines()}
    assert set(lines) == {"optlaw_ls", "bayes_optlaw", "paper, Table 9 (its data)"}
    np.testing.assert_allclose(lines["optlaw_ls"].get_ydata(), [0.2, 0.4, 0.7, 0.8])
    assert list(np.rint(lines["bayes_optlaw"].get_xdata())) == [2, 3]  # the partial family at its own steps
    np.testing.assert_allclose(lines["paper, Table 9 (its data)"].get_ydata(), plots.PAPER_ABLATION["spearman"])
    top = {line.get_label(): line for line in ax_t.get_lines()}
    np.testing.assert_allclose(top["optlaw_ls"].get_ydata(), [50, 60, 90, 100])
    np.testing.assert_allclose(top["bayes_optlaw"].get_ydata(), [90, np.nan])  # a null metric is a gap
    assert "Spearman" in ax_s.get_ylabel() and "%" in ax_t.get_ylabel()
    no_ablation = EvaluationResult(methods={"bayes_optlaw": {"spearman": 0.5}}, divergence={}, folds={}, data={},
                                   predictions=pd.DataFrame())
    with pytest.raises(ValueError, match="ablation"):
        plots.ablation(no_ablation)


# ---------------------------------------------------------------------------------------------- trace
def synthetic_posterior():
    """HAND-MADE SYNTHETIC posterior (4 chains × 50 draws, standard normal) with the loss model's names."""
    import xarray as xr

    rng = np.random.default_rng(0)
    features = ["N^-ps", "E_c^pe", "S1"]
    post = xr.Dataset({"intercept": (("chain", "draw"), rng.normal(size=(4, 50))),
                       "beta": (("chain", "draw", "feature"), rng.normal(size=(4, 50, 3))),
                       "sigma": (("chain", "draw"), np.abs(rng.normal(size=(4, 50)))),
                       "sigma_size": (("chain", "draw"), np.abs(rng.normal(size=(4, 50))))},
                      coords={"chain": range(4), "draw": range(50), "feature": features})
    return xr.DataTree.from_dict({"posterior": post})


def test_trace_forest_and_trace():
    idata = synthetic_posterior()
    diag = {"max_rhat": 1.004, "min_ess_bulk": 812.0, "divergences": 0, "draws": 200}
    fig = plots.trace(idata, diag)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts + ax.get_yticklabels())
    for name in ("intercept", "sigma_size", "E_c^pe", "N^-ps"):
        assert name in texts
    assert "max R-hat 1.004" in fig.get_suptitle() and "min bulk ESS 812" in fig.get_suptitle()
    fig = plots.trace(idata, diag, kind="trace")
    used = [ax for ax in fig.axes if ax.has_data()]
    assert len(used) == 2 * len(plots.TRACE_VARS)
    with pytest.raises(ValueError, match="forest.*trace"):
        plots.trace(idata, diag, kind="pair")


# ---------------------------------------------------------------------------------------------- save, helpers
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


# ---------------------------------------------------------------------------------------------- plots only draw
#: modules that fit or predict (plots may name surface.SurfaceGrid, a container, but must not call surface_grid)
MODEL_MODULES = {"optlaw", "loss_model", "divergence", "api", "fitted", "continual", "instability", "optimize"}
MODEL_CALLS = {"predict", "predict_draws", "rank", "rank_candidates", "fit", "cross_validate", "surface_grid",
               "sample", "load"}


def _imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) of every import in the module, at any depth (``import a.b`` gives ``("a.b", "")``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(("." * node.level) + (node.module or ""), alias.name) for alias in node.names]
    return out


def test_plots_imports_no_model_module_and_calls_no_model():
    tree = ast.parse(Path(plots.__file__).read_text())
    imports = _imports(tree)
    assert imports, "the parser found no imports at all: the check would pass vacuously"
    for module, name in imports:
        parts = set(module.lstrip(".").split(".")) | {name}
        assert not parts & MODEL_MODULES, f"plots.py imports {module} {name}"
        if module.lstrip(".").endswith("ranking"):
            assert name != "rank", "plots.py imports ranking.rank"
    called = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
              for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert called & {"subplots", "scatter"}, "the call scan found no drawing calls: it would pass vacuously"
    assert not called & MODEL_CALLS, f"plots.py calls {sorted(called & MODEL_CALLS)}"
