"""Schedule search with the posterior: peak LR × warmup × cooldown fraction × family at a target (N, D).

Every grid point becomes a candidate schedule; the posterior scores all of them at once (vectorised draws) with
the ranking's own per-candidate quantities (:func:`bayes_optlaws.ranking.candidate_summary`: exact expected loss
with the divergence and unstable-run risk, quantiles, P(diverge)), then the best ``top_k`` by expected loss and by
the risk-aware criterion (lowest 90th-percentile loss with mean P(diverge) ≤ ε) are ranked jointly by
:func:`bayes_optlaws.ranking.rank`, so that P(best), regret and near-ties refer to that short list and agree with
``rank`` on the same candidates.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd

from .ranking import Ranking, candidate_summary, check_rank_settings, rank
from .runs import RunsError, checked_count
from .runset import RunSet

FAMILIES = ("linear", "cosine", "wsd-linear", "wsd-1-sqrt", "constant")
DEFAULT_WARMUPS = (0.0, 0.01, 0.02, 0.05, 0.1)
DEFAULT_COOLDOWNS = (0.1, 0.2, 0.3, 0.5)


def candidate_grid(total_steps: int, peak_lrs, warmups=DEFAULT_WARMUPS, cooldowns=DEFAULT_COOLDOWNS,
                   families=FAMILIES) -> pd.DataFrame:
    """Candidate table (name, schedule) over the search grid; warmup/cooldown are fractions of the run."""
    rows = []
    for fam in families:
        if fam not in FAMILIES:
            raise RunsError(f"unknown family {fam!r} for --families; use {', '.join(FAMILIES)}")
        cds = cooldowns if fam.startswith("wsd") else (None,)
        for lr, wf, cf in itertools.product(peak_lrs, warmups, cds):
            warm = int(round(wf * total_steps))
            spec = {"peak_lr": float(lr), "warmup": warm, "total": int(total_steps)}
            if fam.startswith("wsd"):
                cool = max(1, int(round(cf * total_steps)))
                if warm + cool > total_steps:
                    continue
                spec.update(family="wsd", cooldown=cool, cooldown_shape=fam[4:])
                name = f"{fam}-lr{lr:.3g}-w{wf:g}-c{cf:g}"
            else:
                if fam != "constant" and warm >= total_steps:
                    continue
                spec["family"] = fam
                name = f"{fam}-lr{lr:.3g}-w{wf:g}"
            rows.append({"name": name, "schedule": json.dumps(spec)})
    return pd.DataFrame(rows)


def default_peak_lrs(law, n: int = 9, continual: bool = False) -> np.ndarray:
    """Log-spaced peak LRs spanning the training data's range of peak LRs (for a continuation predicted by the
    stage model: the range of its stage runs, which is all that model has seen)."""
    runs = law.train_set_
    if continual and law.stage_fit_ is not None:
        runs = RunSet.of_table(law.stage_runs_, "stage runs")
    return np.geomspace(runs.peak_lr.min(), runs.peak_lr.max(), n)


def optimize(law, *, model_params: int, tokens: int, tokens_per_step: int, families=FAMILIES, peak_lrs=None,
             warmups=DEFAULT_WARMUPS, cooldowns=DEFAULT_COOLDOWNS, max_p_diverge: float = 0.05, top_k: int = 5,
             parent_run_id: str | None = None, scenario: str | None = None, runs=None,
             random_seed: int = 0) -> tuple[pd.DataFrame, Ranking]:
    """Search the grid; returns (all candidates scored, sorted by expected loss; ranking of the short list)."""
    from .api import predict

    check_rank_settings(None, max_p_diverge, top_k)
    model_params = checked_count(model_params, "model_params (--params)")
    tokens = checked_count(tokens, "tokens (--tokens)")
    tokens_per_step = checked_count(tokens_per_step, "tokens_per_step (--tokens-per-step)")
    total = int(round(tokens / tokens_per_step))
    if total < 10:
        raise RunsError(f"--tokens {tokens:,} / --tokens-per-step {tokens_per_step:,} gives only {total} steps; the "
                        "search needs at least 10 (warmup and cooldown are fractions of the run): raise --tokens or "
                        "lower --tokens-per-step")
    peaks = (default_peak_lrs(law, continual=parent_run_id is not None) if peak_lrs is None
             else np.asarray(peak_lrs, float))
    cands = candidate_grid(total, peaks, warmups, cooldowns, families)
    draws = predict(law, cands, model_params=model_params, tokens_per_step=tokens_per_step,
                    parent_run_id=parent_run_id, scenario=scenario, runs=runs, random_seed=random_seed)
    summary = candidate_summary(draws)
    scored = cands.assign(**{col: summary[col].to_numpy() for col in summary.columns if col != "name"})
    by_expected = scored.sort_values(["expected_loss", "loss_mean"], kind="stable").head(top_k)
    safe = scored[scored["p_diverge"].fillna(0.0) <= max_p_diverge].sort_values("loss_q90", kind="stable")
    short = pd.concat([by_expected, safe.head(top_k)]).drop_duplicates("name")
    sub = draws.subset(short.index)
    delta = law.noise_floor_ if np.isfinite(law.noise_floor_) else None
    ranking = rank(sub, delta=delta, max_p_diverge=max_p_diverge, random_seed=random_seed)
    return scored.sort_values(["expected_loss", "loss_mean"], kind="stable").reset_index(drop=True), ranking


def cmd_optimize(args) -> int:
    from .api import load
    from .ranking import format_table, ranking_legend
    from .runs import ensure_writable

    json_path = ensure_writable(args.json, args.force) if args.json else None
    law = load(args.model)
    families = tuple(args.families.split(",")) if args.families else FAMILIES
    scored, ranking = optimize(law, model_params=args.params, tokens=args.tokens,
                               tokens_per_step=args.tokens_per_step, families=families,
                               max_p_diverge=args.max_p_diverge, top_k=args.top_k, parent_run_id=args.parent,
                               scenario=args.scenario, runs=args.runs, random_seed=args.seed)
    print(f"searched {len(scored)} schedules at N={args.params:,} params, D={args.tokens:,} tokens; short list:")
    print(ranking_legend(ranking))
    print(format_table(ranking))
    if json_path:
        out = ranking.to_dict()
        out["searched"] = int(len(scored))
        json_path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def register(sub) -> None:
    from .paths import DEFAULT_MODEL

    p = sub.add_parser("optimize", help="search peak LR × warmup × cooldown × family with the posterior")
    p.add_argument("--params", type=int, required=True, help="target model size (parameters)")
    p.add_argument("--tokens", type=int, required=True, help="target token budget of the stage")
    p.add_argument("--tokens-per-step", type=int, default=4096, help="tokens per optimizer step (default 4096)")
    p.add_argument("--families", help=f"comma-separated subset of {','.join(FAMILIES)}")
    p.add_argument("--max-p-diverge", type=float, default=0.05)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--parent", help="run_id to continue from (history-aware features)")
    p.add_argument("--scenario", help="continual scenario (a group label of the model's stage runs)")
    p.add_argument("--runs", help="runs table holding the parent's history")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--json")
    p.add_argument("--force", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_optimize)
