"""Beyond the fitting grid: extrapolation runs and continual-training stages (paper Tables 2/13 and 4).

A model fitted on the fitting grid (group ``main``) predicts

* every other group of pre-training runs (e.g. ``extrapolation``: a larger model or a larger token budget): per
  block the relative error, interval coverage, Spearman and whether the best schedule (and family) is identified;
* continual-training stages (rows with ``parent_run_id``), per stage block (one checkpoint continued in one
  scenario): the Spearman of the ranking, the regret of the pick, and the near-tie report — pairs whose
  **actual** final losses differ by less than the noise floor should get a high P(|Δ| < δ) rather than a
  confident order.  Two methods: ``stage_model`` — the stage model (:mod:`bayes_optlaws.continual`) refitted
  **without** the block (leave-one-stage-block-out), predicting it in its scenario; ``transfer`` — the paper's
  §6 route, the pre-training law with history-aware features and no refit.

Absolute losses of a strong-shift stage are measured on another corpus, so for those only rankings count.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import continual as ct
from ..ranking import rank


def _block_label(df: pd.DataFrame) -> pd.Series:
    if "x_block" in df.columns and df["x_block"].notna().all():
        return df["x_block"].astype(str)
    return df["model_params"].astype(str) + "|" + df["tokens"].astype(str)


def _family(df: pd.DataFrame) -> pd.Series:
    if "x_family" in df.columns:
        return df["x_family"].astype(str)
    from ..schedules import schedule_family

    return df["schedule"].map(schedule_family)


def _evaluate_block(law, g: pd.DataFrame, parent: str | None, history: pd.DataFrame,
                    scenario: str | None = None) -> dict:
    ok = g[~g["diverged"]]
    cands = ok[["run_id", "schedule", "model_params", "tokens_per_step"]]
    draws = law.predict_draws(cands, parent_run_id=parent, scenario=scenario, history_runs=history)
    y = ok["final_loss"].to_numpy(float)
    mean = draws.loss.mean(axis=0)
    lo90, hi90 = np.quantile(draws.loss_noisy, [0.05, 0.95], axis=0)
    delta = law.noise_floor_ if np.isfinite(law.noise_floor_) else 0.005
    ranking = rank(draws, delta=delta, top_k=3)
    table = ranking.table.set_index("name")
    pick = ranking.picks["by_expected_loss"]
    actual = dict(zip(ok["run_id"], y))
    fam = dict(zip(ok["run_id"], _family(ok)))
    best = min(actual, key=actual.get)
    # pairs among the predicted top 3 whose actual difference is within the noise floor: reported as near-ties?
    actual_ties = [t for t in ranking.near_ties if abs(actual[t["a"]] - actual[t["b"]]) < delta]
    out = {
        "n": int(len(ok)), "n_diverged": int(g["diverged"].sum()),
        "rel_err_pct": float(np.mean(np.abs(mean - y) / y) * 100),
        "coverage_90": float(np.mean((y >= lo90) & (y <= hi90))),
        "spearman": float(spearmanr(mean, y).statistic) if len(y) >= 3 else float("nan"),
        "pick": pick, "actual_best": best, "best_identified": bool(pick == best),
        "best_family_identified": bool(fam[pick] == fam[best]),
        "regret": float(actual[pick] - actual[best]),
        "p_best_of_actual_best": float(table.loc[best, "p_best"]),
        "actual_spread": float(y.max() - y.min()),
        "near_ties_reported": [{"a": t["a"], "b": t["b"], "p_within_delta": t["p_within_delta"],
                                "actual_diff": float(actual[t["a"]] - actual[t["b"]])} for t in actual_ties],
    }
    return out


def transfer_law(law):
    """The same fitted law without its stage model: continual stages go through the pre-training law (§6)."""
    out = copy.copy(law)
    out.stage_fit_ = None
    return out


def held_out_stage_law(law, runs: pd.DataFrame, held: pd.Index):
    """The law with its stage model refitted on every stage row of ``runs`` except the rows ``held`` (or
    ``None`` when fewer than ``continual.MIN_STAGE_RUNS`` stage rows remain)."""
    rest = runs.drop(index=held)
    if int((ct.is_stage(rest) & ~rest["diverged"]).sum()) < ct.MIN_STAGE_RUNS:
        return None
    return copy.copy(law).fit_continual(rest)


def beyond_grid(law, runs: pd.DataFrame, stage_model: bool = True) -> dict:
    """Evaluate a model fitted on the ``main`` group on every other group and on continual stages.

    ``stage_model``: also evaluate the stage model leave-one-stage-block-out (one stage-model fit per block,
    ~30 s each); the results go to ``continual`` and the transfer route's to ``continual_transfer``.
    """
    runs = runs.reset_index(drop=True)
    is_stage = runs["parent_run_id"].notna() if "parent_run_id" in runs.columns else pd.Series(False, index=runs.index)
    groups = runs["group"].fillna("") if "group" in runs.columns else pd.Series("", index=runs.index)
    fitted_ids = set(law.train_runs_["run_id"])
    out = {"extrapolation": {}, "continual": {}, "continual_transfer": {}}
    other = runs[~is_stage & (groups != "main") & ~runs["run_id"].isin(fitted_ids)]
    for block, g in other.groupby(_block_label(other)):
        if (~g["diverged"]).sum() >= 2:
            out["extrapolation"][str(block)] = {"group": str(g["group"].iloc[0]) if "group" in g else "",
                                                **_evaluate_block(law, g, None, runs)}
    stages = runs[is_stage]
    transfer = transfer_law(law)
    scenarios = pd.Series(ct.scenario_labels(stages), index=stages.index)
    labels = _block_label(stages)
    for (block, parent, scenario), g in stages.groupby([labels, stages["parent_run_id"], scenarios]):
        if (~g["diverged"]).sum() < 2:
            continue
        siblings = stages["parent_run_id"] == parent
        if "x_block" not in g.columns and labels[siblings].nunique() == 1 and scenarios[siblings].nunique() > 1:
            block = f"{block}|{scenario}"  # one (size, tokens) label for several scenarios of one checkpoint
        results = {"continual_transfer": _evaluate_block(transfer, g, parent, runs)}
        held = held_out_stage_law(law, runs, g.index) if stage_model else None
        if held is not None:
            results["continual"] = _evaluate_block(held, g, parent, runs, scenario)
        for kind, res in results.items():
            res["group"] = scenario
            if "strong" in scenario:
                res["note"] = "losses on another corpus: only the ranking metrics are meaningful"
            out[kind][str(block)] = res
    return out


def format_beyond(res: dict) -> str:
    lines = []
    titles = {"extrapolation": "extrapolation:",
              "continual": "continual (stage model, refitted without the block):",
              "continual_transfer": "continual (transfer: pre-training law with history-aware features, §6):"}
    for kind, title in titles.items():
        if not res.get(kind):
            continue
        lines.append(title)
        lines.append(f"  {'block':<14} {'n':>3} {'rel.err%':>8} {'cov90':>6} {'spearman':>8} {'best?':>6} "
                     f"{'family?':>7} {'regret':>8} {'spread':>7}  near-ties reported")
        for block, r in res[kind].items():
            ties = "; ".join(f"{t['a'][-10:]}~{t['b'][-10:]} P={t['p_within_delta']:.2f}"
                             for t in r["near_ties_reported"]) or "-"
            lines.append(f"  {block:<14} {r['n']:>3} {r['rel_err_pct']:8.2f} {r['coverage_90']:6.2f} "
                         f"{r['spearman']:8.2f} {str(r['best_identified']):>6} {str(r['best_family_identified']):>7} "
                         f"{r['regret']:8.4f} {r['actual_spread']:7.4f}  {ties}")
    return "\n".join(lines)
