"""SYNTHETIC runs tables for unit tests only (not real data): a made-up law with known structure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bayes_optlaws.schedules import Schedule

SIZES = (25_000, 80_000, 200_000)


def synthetic_runs(seed: int = 0, sizes=SIZES, steps=(1000, 2000), lrs=(3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
                   warmups=(0.0, 0.02, 0.1), tokens_per_step: int = 4096, noise: float = 0.01) -> pd.DataFrame:
    """A synthetic grid: loss falls with size, tokens and ∫η, rises with peak LR² and abrupt cooldowns;
    runs with peak LR above a size-dependent critical LR and short warmup diverge."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for t in steps:
            for lr in lrs:
                for wf in warmups:
                    spec = {"family": "linear", "peak_lr": lr, "warmup": int(wf * t), "total": t}
                    s = Schedule.from_spec(spec)
                    area = s.integral() / t
                    loss = (2.0 + 3.0 * (n / 1e4) ** -0.3 + 2.0 * (t / 100) ** -0.3
                            + 0.3 * np.exp(-area / 0.01) + 8.0 * lr ** 2) * np.exp(rng.normal(0, noise))
                    rho = 0.25 * (n / 25_000) ** -0.3
                    diverged = bool(lr > rho and wf < 0.05) or bool(lr > 2 * rho)
                    if diverged:
                        loss = 5.5 + rng.normal(0, 0.05)
                    rows.append({"run_id": f"n{n}-t{t}-lr{lr:g}-w{wf:g}", "model_params": n,
                                 "tokens": t * tokens_per_step, "tokens_per_step": tokens_per_step,
                                 "schedule": json.dumps(spec), "final_loss": float(loss), "diverged": diverged,
                                 "seed": 0, "group": "main", "source": "synthetic (tests/synthetic.py)"})
    return pd.DataFrame(rows)


STAGE_SCHEDULES = (("linear", 3e-3), ("linear", 1e-2), ("cosine", 1e-2), ("constant", 3e-3), ("constant", 1e-2),
                   ("wsd", 1e-2), ("wsd", 3e-3), ("cosine", 3e-3))
SCENARIO_SCALE = {"weak_shift": 0.2, "strong_shift": 1.0}


def synthetic_stages(base: pd.DataFrame, seed: int = 0, steps: int = 500, tokens_per_step: int = 4096,
                     noise: float = 0.002, scenarios=("weak_shift", "strong_shift"), n_parents: int = 3) -> pd.DataFrame:
    """SYNTHETIC continual-training stages (not real data): each of ``n_parents`` non-diverged runs of ``base``
    (one per size) continued with 8 schedules in each scenario.  A stage ends at the parent's loss plus a scenario
    level, minus a gain that grows with the stage's ∫η, plus a penalty for not annealing (final LR / peak);
    both effects are scaled by how strong the shift is (``SCENARIO_SCALE``)."""
    rng = np.random.default_rng(seed)
    ok = base[~base["diverged"]]
    parents = [g.sort_values("final_loss").iloc[0] for _, g in ok.groupby("model_params")][:n_parents]
    rows = []
    for p in parents:
        for scen in scenarios:
            k = SCENARIO_SCALE[scen]
            for fam, lr in STAGE_SCHEDULES:
                spec = {"family": fam, "peak_lr": lr, "warmup": 25, "total": steps}
                if fam == "wsd":
                    spec.update(cooldown=steps // 5, cooldown_shape="linear")
                s = Schedule.from_spec(spec)
                gain = 0.08 * np.log1p(s.integral() / 2.0)
                no_anneal = 0.15 * float(s.lr_at(steps - 1)) / lr
                loss = (p.final_loss + 0.5 * k - k * gain + k * no_anneal) * np.exp(rng.normal(0, noise))
                rows.append({"run_id": f"{p.run_id}>{scen}-{fam}-{lr:g}", "model_params": p.model_params,
                             "tokens": steps * tokens_per_step, "tokens_per_step": tokens_per_step,
                             "schedule": json.dumps(spec), "final_loss": float(loss), "diverged": False,
                             "parent_run_id": p.run_id, "seed": 0, "group": scen,
                             "source": "synthetic (tests/synthetic.py)"})
    return pd.DataFrame(rows)
