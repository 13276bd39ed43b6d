"""Our methods in the CV protocol, the evaluate command and the beyond-the-grid report (SYNTHETIC data)."""

import json

import numpy as np
import pandas as pd

from bayes_optlaws.cli import main
from bayes_optlaws.evaluation.beyond import beyond_grid, format_beyond
from bayes_optlaws.evaluation.ours import ABLATION_STEPS, OptLawLS
from bayes_optlaws.evaluation.protocol import cross_validate


def test_optlaw_ls_fits_the_synthetic_law(synthetic_table):
    ok = synthetic_table[~synthetic_table["diverged"]]
    m = OptLawLS().fit(ok)
    rel = np.abs(m.predict(ok) - ok["final_loss"]) / ok["final_loss"]
    assert rel.mean() < 0.02
    assert m.spec_.p_s in (0.1, 0.15, 0.2, 0.3, 0.5)


def test_ablation_steps_add_blocks_in_the_papers_order():
    assert list(ABLATION_STEPS) == ["scale", "+convergence", "+escape", "+mixed"]
    assert [len(b) for b in ABLATION_STEPS.values()] == [1, 2, 3, 4]


def test_optlaw_ls_beats_block_mean_in_cv(synthetic_table):
    from bayes_optlaws.evaluation.baselines import BlockMean

    res = cross_validate(synthetic_table, {"optlaw_ls": OptLawLS, "block_mean": BlockMean}, {}, folds=3, seed=0)
    assert res.methods["optlaw_ls"]["rel_err_pct"] < res.methods["block_mean"]["rel_err_pct"]
    assert res.methods["optlaw_ls"]["spearman"] > 0.5


def test_evaluate_cli_writes_json(synthetic_table, tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    synthetic_table.to_csv(runs, index=False)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(runs), "--folds", "3", "--methods", "optlaw_ls,block_mean,logistic",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["methods"]) == {"optlaw_ls", "block_mean"} and "logistic" in data["divergence"]
    assert {"r2", "rel_err_pct", "spearman", "top2", "regret"} <= set(data["methods"]["optlaw_ls"])
    assert main(["evaluate", str(runs), "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_beyond_grid_reports_continual_stages_and_near_ties(fitted_law):
    runs = fitted_law.train_runs_.copy()
    parent = runs[~runs["diverged"]].iloc[0]
    stages = pd.DataFrame({
        "run_id": [f"stage-{i}" for i in range(4)], "model_params": parent.model_params,
        "tokens": 500 * 4096, "tokens_per_step": 4096,
        "schedule": [json.dumps({"family": f, "peak_lr": lr, "warmup": 20, "total": 500})
                     for f, lr in [("linear", 1e-2), ("cosine", 1e-2), ("linear", 3e-3), ("cosine", 3e-2)]],
        "final_loss": [3.0, 3.0005, 3.2, 3.1], "diverged": False, "parent_run_id": parent.run_id,
        "group": "weak_shift", "seed": 0, "source": "synthetic"})
    table = pd.concat([runs, stages], ignore_index=True)
    res = beyond_grid(fitted_law, table)
    # four stage rows are too few for the stage model: only the transfer route (paper §6) is evaluated
    assert res["continual"] == {}
    r = res["continual_transfer"][f"{parent.model_params}|{500 * 4096}"]
    assert r["n"] == 4 and -1 <= r["spearman"] <= 1 and r["regret"] >= 0
    assert set(r) >= {"rel_err_pct", "coverage_90", "best_identified", "near_ties_reported"}
    assert "continual (transfer" in format_beyond(res)


def test_sensitivity_holds_one_exponent_group_fixed(synthetic_table):
    from bayes_optlaws.evaluation.ours import sensitivity_methods

    ok = synthetic_table[~synthetic_table["diverged"]]
    m = OptLawLS(fixed={"p_e": 0.5}).fit(ok)
    assert m.spec_.p_e == 0.5
    methods = sensitivity_methods()
    assert len(methods) == 12 and "optlaw_ls[p_s=0.1]" in methods


def test_the_mixture_draws_an_unstable_runs_excess_from_the_recorded_spread(monkeypatch):
    """SYNTHETIC draws: a run certain to train unstably gets, per draw, one of the unstable training runs'
    recorded excesses on top of its normal loss; its point prediction adds their median."""
    from types import SimpleNamespace

    from bayes_optlaws.draws import PredictionDraws
    from bayes_optlaws.evaluation.ours import BayesOptLawMethod

    S = 4000
    loss = np.full((S, 2), 2.0)
    draws = PredictionDraws(["sure", "never"], loss, loss.copy(), np.zeros((S, 2)), 5.0,
                            np.column_stack([np.ones(S), np.zeros(S)]), 0.7)
    method = BayesOptLawMethod(outcomes=True)
    method.law_ = SimpleNamespace(div_fit_=SimpleNamespace(unstable_excesses=[0.2, 0.5, 1.1]))
    monkeypatch.setattr(method, "_draws", lambda df: draws)
    out = method.predict_draws(None)
    assert set(np.round(out[:, 0] - 2.0, 6)) == {0.2, 0.5, 1.1} and np.all(out[:, 1] == 2.0)
    np.testing.assert_allclose(method.predict(None), [2.5, 2.0])
    method.law_ = SimpleNamespace(div_fit_=SimpleNamespace(unstable_excesses=None))  # saved before the spread
    assert np.all(method.predict_draws(None)[:, 0] == 2.7)


def test_the_mixture_uses_the_laws_per_draw_unstable_excess_when_it_has_one(monkeypatch):
    """SYNTHETIC draws with a per-draw excess (a law with the unstable-loss regression): an unstable outcome adds
    the draw's own excess, and the point prediction is the mixture's mean over draws."""
    from types import SimpleNamespace

    from bayes_optlaws.draws import PredictionDraws
    from bayes_optlaws.evaluation.ours import BayesOptLawMethod

    S = 4000
    loss = np.full((S, 2), 2.0)
    excess = np.column_stack([np.linspace(0.5, 1.5, S), np.full(S, 0.3)])
    p_unst = np.column_stack([np.ones(S), np.full(S, 0.5)])
    draws = PredictionDraws(["sure", "half"], loss, loss.copy(), np.zeros((S, 2)), 5.0, p_unst, excess)
    method = BayesOptLawMethod(outcomes=True)
    method.law_ = SimpleNamespace(div_fit_=SimpleNamespace(unstable_excesses=[9.0]))  # not used: per-draw excess
    monkeypatch.setattr(method, "_draws", lambda df: draws)
    np.testing.assert_allclose(method.predict(None), [3.0, 2.15])
    out = method.predict_draws(None)
    np.testing.assert_allclose(out[:, 0], 2.0 + excess[:, 0])
    assert set(np.round(out[:, 1], 6)) == {2.0, 2.3}
