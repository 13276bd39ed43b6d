"""``evaluate --train/--test`` and ``--extrapolate``: metrics against hand-computed values on tiny tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.evaluation.transfer import ProxyBest, evaluate_transfer, split_largest_size
from bayes_optlaws.runs import RunsError


def _run(run_id, n, lr, warmup, loss, total=100, tps=1000, diverged=False, group="main", family="linear"):
    spec = {"family": family, "peak_lr": lr, "warmup": warmup, "total": total}
    return {"run_id": run_id, "model_params": n, "tokens": total * tps, "tokens_per_step": tps,
            "schedule": json.dumps(spec), "final_loss": loss, "diverged": diverged, "group": group}


@pytest.fixture
def tiny():
    """A tiny hand-made table (not real data): 2 training sizes, 1 test size with 4 configurations."""
    train = pd.DataFrame([_run("a1", 1000, 0.01, 10, 3.0), _run("a2", 1000, 0.02, 10, 2.9),
                          _run("a3", 1000, 0.04, 10, 3.1), _run("b1", 2000, 0.01, 10, 2.8),
                          _run("b2", 2000, 0.02, 0, 2.7), _run("b3", 2000, 0.04, 10, 2.75)])
    test = pd.DataFrame([_run("c1", 4000, 0.01, 10, 2.6), _run("c2", 4000, 0.02, 0, 2.5),
                         _run("c3", 4000, 0.04, 10, 2.55), _run("c4", 4000, 0.08, 10, 2.9),
                         _run("c5", 4000, 0.32, 0, 4.0, diverged=True)])
    return train, test


class FixedPredictions:
    """A loss 'method' whose predictions are given by run_id (for hand-computed metrics)."""

    def __init__(self, values, draws=None):
        self.values, self.draws = values, draws

    def fit(self, df):
        self.fitted_on_ = list(df["run_id"])
        return self

    def predict(self, df):
        return np.array([self.values[r] for r in df["run_id"]])


class WithDraws(FixedPredictions):
    def predict_draws(self, df):
        return np.stack([self.draws[r] for r in df["run_id"]], axis=1)


def test_loss_metrics_equal_hand_computed_values(tiny):
    train, test = tiny
    pred = {"c1": 2.7, "c2": 2.55, "c3": 2.5, "c4": 2.9}
    res = evaluate_transfer(train, test, {"fixed": lambda: FixedPredictions(pred)})
    m = res.methods["fixed"]
    err = np.array([0.1, 0.05, -0.05, 0.0])
    assert m["mae"] == pytest.approx(np.abs(err).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((err ** 2).mean()))
    assert m["bias"] == pytest.approx(err.mean())
    assert m["n"] == 4  # the diverged run is not part of the loss task
    # the pick is c3 (lowest prediction, actual 2.55); the block's best is c2 (2.50)
    assert m["regret"] == pytest.approx(0.05)
    block = res.blocks["main|N=4000,D=100000"]["fixed"]
    assert (block["pick"], block["actual_best"]) == ("c3", "c2")
    assert block["regret"] == pytest.approx(0.05)
    # ranks actual (c2<c3<c1<c4) = 2,1,3,4... spearman of actual vs predicted over the 4 runs
    from scipy.stats import spearmanr
    assert m["spearman"] == pytest.approx(spearmanr([2.6, 2.5, 2.55, 2.9], [2.7, 2.55, 2.5, 2.9]).statistic)
    assert res.data["n_test_loss"] == 4 and res.data["train_sizes"] == [1000, 2000]


def test_draw_metrics_coverage_and_pbest(tiny):
    train, test = tiny
    rng = np.random.default_rng(0)
    centre = {"c1": 2.6, "c2": 2.5, "c3": 2.55, "c4": 3.5}
    draws = {k: v + rng.normal(0, 0.01, 400) for k, v in centre.items()}
    res = evaluate_transfer(train, test, {"bayes": lambda: WithDraws(centre, draws)})
    m = res.methods["bayes"]
    assert m["coverage_90"] == pytest.approx(0.75)  # c4 is 0.6 nats off its narrow interval
    # its interval score: the 90 % widths (about 2 · 1.645 · 0.01) plus 20 × c4's miss, averaged over the 4 runs
    assert m["interval_score_90"] == pytest.approx((4 * 0.0329 + 20 * (0.6 - 0.0165)) / 4, rel=0.05)
    assert m["p_best_actual"] > 0.99  # c2 is lowest in (almost) every draw and actually best
    assert m["crps"] == pytest.approx(np.mean([0, 0, 0, 0.6]), abs=0.01)


def test_proxy_best_reuses_the_largest_sizes_best_configuration(tiny):
    train, test = tiny
    proxy = ProxyBest().fit(train)
    # best at the largest fitted size (2000) is b2: LR 0.02, no warmup -> nearest in the test block is c2
    dist = proxy.predict(test)
    assert np.argmin(dist) == 1 and dist[1] == pytest.approx(0.0)
    res = evaluate_transfer(train, test, {"proxy_best": ProxyBest})
    assert res.methods["proxy_best"]["regret"] == pytest.approx(0.0)
    assert "mae" not in res.methods["proxy_best"]  # a pick, not a loss prediction


def test_a_failing_method_is_recorded_not_fatal(tiny):
    train, test = tiny

    class Broken(FixedPredictions):
        def predict(self, df):
            return np.full(len(df), np.nan)

    res = evaluate_transfer(train, test, {"broken": lambda: Broken({}), "proxy_best": ProxyBest})
    assert "broken" not in res.methods and "non-finite" in res.errors["broken"][0]
    assert "proxy_best" in res.methods
    json.dumps(res.to_dict())  # JSON-safe


def test_split_largest_size_holds_out_the_largest_per_group(tiny):
    train, test = tiny
    both = pd.concat([train, test], ignore_index=True)
    fit, score = split_largest_size(both)
    assert set(score["model_params"]) == {4000} and set(fit["model_params"]) == {1000, 2000}
    with pytest.raises(RunsError, match="at least two model sizes"):
        split_largest_size(test)


def test_cli_extrapolate_on_the_embedded_grid(tmp_path, capsys):
    from bayes_optlaws.cli import main
    from bayes_optlaws.paths import DEFAULT_RUNS

    out = tmp_path / "extrap.json"
    assert main(["evaluate", str(DEFAULT_RUNS), "--extrapolate", "--methods", "optlaw_ls,proxy_best,logistic",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fitted on" in printed and "793K" in printed
    res = json.loads(out.read_text())
    assert res["data"]["test_sizes"] == [793344] and max(res["data"]["train_sizes"]) == 200064
    assert set(res["methods"]) == {"optlaw_ls", "proxy_best"}
    assert 0 <= res["methods"]["optlaw_ls"]["regret"] < 0.2
    assert "logistic" in res["divergence"]


def test_cli_train_test_needs_both(tmp_path, capsys):
    from bayes_optlaws.cli import main

    assert main(["evaluate", "--train", str(tmp_path / "a.csv")]) == 2
    assert "give both --train A and --test B" in capsys.readouterr().err


def test_cli_train_test_scores_one_table_with_another(tiny, tmp_path, capsys):
    from bayes_optlaws.cli import main

    train, test = tiny
    a, b, out = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "res.json"
    train.to_csv(a, index=False)
    test.to_csv(b, index=False)
    assert main(["evaluate", "--train", str(a), "--test", str(b), "--methods", "proxy_best", "--json",
                 str(out)]) == 0
    assert "fit on" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["methods"]["proxy_best"]["regret"] == pytest.approx(0.0)
    assert res["data"]["n_train"] == 6 and res["data"]["n_test"] == 5
