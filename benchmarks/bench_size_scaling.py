"""How well Chinchilla's size term transfers, and the one-size law with and without the size-scaling prior.

    .venv/bin/python benchmarks/bench_size_scaling.py [--factors-only | --step-error | --lr-exponent | --pooled-prior
                                                       | --one-size-steps | --anchor-budget]
        [--only grid|steplaw|marin] [--json PATH]

1. **Size-term factor k** (:mod:`bayes_optlaws.size_scaling`): for every pair of model sizes trained at the same
   token count, ``k = observed / Chinchilla`` change of log loss between the best non-diverged run of each size.
   Printed for the LossCast StepLaw train split and the embedded grid (Marin's pairs are its held-out size step,
   so they are not used here).
2. **One-size splits** (fit on one size, score the next larger one): the Bayesian law with
   ``new_size="nearest_size"`` (default: the law at the fitted size + the size step) and ``"features"`` (the
   law's own features at the new size), beside least squares and reusing the best configuration:

   * embedded grid (group main): fit 200K, score 793K;
   * LossCast StepLaw train split: fit 200M, score 242M;
   * LossCast Marin train split: fit 130M, score 300M (our held-out size step; figures reported, never tuned on).

3. **Step error shape** (``--step-error``; training data only; also how its sd grows with the run's LR gap,
   ``size_scaling.gap_slope_search``, from every pair and leaving each pair out): the law fitted as in
   ``bench_extrapolation.py`` (grid 25K–200K, StepLaw 72M–242M), its backtests of each adjacent pair of fitted
   sizes, and per pair the residuals around the pair's own factor and the token slope: their excess kurtosis, the
   log-likelihood of a normal / Student-t step error (sd fixed at ``excess_sd_at`` of the pair: the pooled rate)
   convolved with the law's
   t5 noise (scale: t5 maximum likelihood on the pair's in-sample residuals), and the run-weighted coverage of the
   central 50 / 90 % intervals of step error + noise, with the error rate from all pairs ("own") or from the other
   pairs alone ("LOPO").  Sets ``size_scaling.STEP_ERROR_NU``; the held-out sizes are never scored here.

4. **LR-transfer exponent** (``--lr-exponent``; training data only): the exponent alpha that
   ``model_config={"size_step_lr_exponent": "learned"}`` finds on the backtests (``lr_exponent_search``) of a
   law fitted on the training side of each split of ``bench_extrapolation.py`` and on its inner split (its two
   largest sizes left out), with the within-budget residual sum of squares at alpha = 0 and at the best grid
   point.  The loss law alone is fitted (4 chains × 500 draws); the held-out sizes are never scored here.

5. **A size-step prior pooled over sources** (``--pooled-prior``; training sizes only): each public source's factor
   ``k`` (every pair of its sizes at one token count; the grid up to 200K, StepLaw up to 242M; Marin left out,
   its one pair being our held-out step) and a leave-one-source-out test: the log predictive density of each
   source's ``log k`` under the hierarchical model of the others (:class:`SizeStep`'s, with the default priors as
   hyperpriors) against the default ``size_scaling`` prior alone.  Then the same among the LM-scale sources only,
   and the predictive of all four: the ``lm_studies`` prior (``size_scaling.REFERENCE_PRIORS``) that ``auto``
   gives a law fitted on one size of >= 10M parameters.

6. **One-size steps** (``--one-size-steps``; training sizes only): fit one size of StepLaw (up to 242M) or nanochat
   (up to 69M) and score the next, with Chinchilla's size-step prior and with the ``lm_studies`` prior of the other
   three LM-scale studies: the evidence for ``"auto"``'s choice of a one-size law's prior.

7. **An anchor trained at other budgets** (``--anchor-budget``; StepLaw's training sizes only): 200M cut to its
   1B-token runs (then to its 1B and 2B runs), the 242M runs above the cut predicted from 200M (the nearest size)
   and from 124M (whose runs cover their tokens): the evidence behind ``size_scaling.anchor_token_messages``.

The LossCast runs are read from ``../shared/datasets/losscast/train`` and skipped with a message when it is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extrapolation import LOSSCAST, losscast_family  # noqa: E402
from bayes_optlaws.evaluation.ours import BayesOptLawMethod, OptLawLS  # noqa: E402
from bayes_optlaws.evaluation.transfer import ProxyBest, evaluate_transfer  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402
from bayes_optlaws.runs import read_runs  # noqa: E402
from bayes_optlaws import size_scaling  # noqa: E402
from bayes_optlaws.size_scaling import SizeStep, chinchilla_log_shift, pair_residuals, step_factor  # noqa: E402

STEP_ERROR_SHAPES = (float("inf"), 8.0, 5.0, 4.0, 3.0)  # Student-t dof of the step error (inf: normal)


def size_factors(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (smaller size, larger size, token count) with both sizes' best loss: observed and Chinchilla
    log-loss change and their ratio ``k``.  Token counts are rounded to 2 significant digits (LossCast's runs of
    one budget differ in the last steps)."""
    ok = runs[~runs["diverged"] & runs["final_loss"].notna()].copy()
    ok["D"] = ok["tokens"].map(lambda t: float(f"{t:.2g}"))
    best = ok.groupby(["model_params", "D"])["final_loss"].min().unstack(0)
    rows = []
    sizes = list(best.columns)
    for D, row in best.iterrows():
        for i, small in enumerate(sizes):
            for large in sizes[i + 1:]:
                if np.isfinite(row[small]) and np.isfinite(row[large]):
                    observed = float(np.log(row[large] / row[small]))
                    prior = float(chinchilla_log_shift(small, large, D))
                    rows.append({"N_small": small, "N_large": large, "D": D, "observed": observed,
                                 "chinchilla": prior, "k": observed / prior})
    return pd.DataFrame(rows)


def one_size_split(runs: pd.DataFrame, fit_size: int, score_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs of ``fit_size``, runs of ``score_size``), single-stage rows only."""
    single = runs[runs["parent_run_id"].isna()] if "parent_run_id" in runs.columns else runs
    return (single[single["model_params"] == fit_size].reset_index(drop=True),
            single[single["model_params"] == score_size].reset_index(drop=True))


def sources(only):
    grid = read_runs(DEFAULT_RUNS)[0]
    grid = grid[grid["group"] == "main"].reset_index(drop=True)
    if only in (None, "grid"):
        yield "embedded grid", grid, (200064, 793344)
    if only == "grid":
        return
    if not LOSSCAST.exists():
        print(f"skipping LossCast-Bench: {LOSSCAST} not found (the shared datasets are not beside this checkout)")
        return
    if only in (None, "steplaw"):
        yield "LossCast StepLaw", losscast_family("ncpl_steplaw_"), (199957440, 241517568)
    if only in (None, "marin"):
        yield "LossCast Marin (held-out step)", losscast_family("ncpl_marin_"), (130000000, 300000000)


def fitted_backtests(train: pd.DataFrame) -> tuple[list[dict], object]:
    """The backtests (and token-slope prior) the law fitted on ``train`` (as ``bench_extrapolation.py`` fits it)
    builds its size step from, captured at :meth:`SizeStep.from_backtests`."""
    captured = []
    original = SizeStep.__dict__["from_backtests"]

    def capture(cls, backtests, slope_prior):
        captured.append((backtests, slope_prior))
        return original.__func__(cls, backtests, slope_prior)

    SizeStep.from_backtests = classmethod(capture)
    try:
        BayesOptLawMethod(outcomes=True).fit(train)
    finally:
        SizeStep.from_backtests = original
    return captured[-1]


def lr_exponents(only) -> dict:
    """Item 4 of the module docstring: per split, the learned LR-transfer exponent on its training side and on
    that side's own inner split, printed and returned."""
    import warnings

    from bench_extrapolation import splits
    from bayes_optlaws.evaluation.ours import FAST_SAMPLER
    from bayes_optlaws.evaluation.transfer import split_largest_size
    from bayes_optlaws.optlaw import BayesOptLaw

    out = {}
    for title, (train, _) in splits(only):
        if train["model_params"].nunique() < 2:
            print(f"\n=== {title}: one fitted size, no backtest to learn the exponent from")
            continue
        print(f"\n=== {title}: the learned LR-transfer exponent (training sizes only)")
        sides = {"training side": train}
        if train["model_params"].nunique() >= 3:
            sides["its inner split"] = split_largest_size(train, groups=None)[0]
        for side, runs in sides.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                law = BayesOptLaw(sampler_config=FAST_SAMPLER, fit_divergence=False, fit_stages=False,
                                  model_config={"size_step_lr_exponent": "learned"}).fit(runs)
            step = law.size_step_
            best = min(step.lr_exponent_profile, key=step.lr_exponent_profile.get)
            sizes = ", ".join(f"{n:,}" for n in law.sizes_)
            print(f"  {side} (fit {sizes}): alpha {step.lr_exponent:.3f}; within-budget residual sum of squares "
                  f"{step.lr_exponent_profile[0.0]:.4f} at alpha 0, {step.lr_exponent_profile[best]:.4f} at "
                  f"{best:g}; factors k per pair {', '.join(f'{p['k']:.3f}' for p in step.pairs)}")
            out[f"{title} / {side}"] = {"alpha": step.lr_exponent, "profile": step.lr_exponent_profile,
                                        "sizes": list(law.sizes_)}
    return out


def _t_scale(x: np.ndarray, nu: float = 5.0) -> float:
    """Maximum-likelihood scale of a centred Student-t with ``nu`` degrees of freedom."""
    from scipy import optimize, stats

    return float(np.exp(optimize.minimize_scalar(lambda ls: -stats.t.logpdf(x, nu, scale=np.exp(ls)).sum(),
                                                 bounds=(-14.0, 2.0), method="bounded").x))


def _unit_t(nu: float, shape, rng) -> np.ndarray:
    if not np.isfinite(nu):
        return rng.standard_normal(shape)
    return rng.standard_t(nu, shape) * size_scaling.t_scale_per_sd(nu)


def _error_plus_noise_logpdf(e: np.ndarray, sd: float, nu: float, noise_scale: float) -> np.ndarray:
    """log density at ``e`` of a step error (sd ``sd``, Student-t ``nu`` or normal) plus t5 noise (scale
    ``noise_scale``), by numerical convolution."""
    from scipy import stats

    h = min(sd, noise_scale) / 20
    lim = 40 * max(sd, noise_scale) + np.abs(e).max()
    x = np.arange(-lim, lim + h, h)
    f = (stats.norm.pdf(x, scale=sd) if not np.isfinite(nu)
         else stats.t.pdf(x, nu, scale=sd * size_scaling.t_scale_per_sd(nu)))
    density = np.convolve(f, stats.t.pdf(x, 5, scale=noise_scale), mode="same") * h
    return np.log(np.interp(e, x, density))


def step_error_shape(backtests: list[dict], slope_prior, draws: int = 4000) -> dict:
    """Per shape in :data:`STEP_ERROR_SHAPES`: the summed log-likelihood of the pairs' residuals and the
    run-weighted 50 / 90 % coverage, own rate and leave-one-pair-out (see the module docstring, part 3)."""
    from scipy import stats

    full = SizeStep.from_backtests(backtests, slope_prior)
    gamma, _ = full.token_slope_posterior(slope_prior)
    pairs, out = [], {}
    for j, b in enumerate(backtests):
        ins = np.asarray(b["in_sample"], float)
        _, _, e = pair_residuals(b, gamma, full.log_tokens_ref)
        others = SizeStep.from_backtests([o for i, o in enumerate(backtests) if i != j], slope_prior)
        pairs.append({"from": int(b["from"]), "to": int(b["to"]), "runs": int(e.size), "resid": e - e.mean(),
                      "noise": _t_scale(ins), "sd_own": float(full.excess_sd_at([b["from"]], [b["to"]])[0]),
                      "sd_lopo": float(others.excess_sd_at([b["from"]], [b["to"]])[0]) if others.pairs else None,
                      "kurtosis": float(stats.kurtosis(e))})
    for nu in STEP_ERROR_SHAPES:
        row = {"loglik": float(sum(_error_plus_noise_logpdf(p["resid"], max(p["sd_own"], 1e-6), nu, p["noise"]).sum()
                                   for p in pairs))}
        for scheme in ("own", "lopo"):
            cov = []
            for j, p in enumerate(pairs):
                if p[f"sd_{scheme}"] is None:
                    continue
                rng = np.random.default_rng(j)
                sim = (p[f"sd_{scheme}"] * _unit_t(nu, (draws, p["runs"]), rng)
                       + p["noise"] * rng.standard_t(5, (draws, p["runs"])))
                q = np.quantile(sim, [0.05, 0.25, 0.75, 0.95], axis=0)
                e = p["resid"]
                cov.append((np.mean((e >= q[1]) & (e <= q[2])), np.mean((e >= q[0]) & (e <= q[3])), p["runs"]))
            if cov:
                w = [c[2] for c in cov]
                row[f"coverage_{scheme}"] = [float(np.average([c[0] for c in cov], weights=w)),
                                             float(np.average([c[1] for c in cov], weights=w))]
        out["normal" if not np.isfinite(nu) else f"t{nu:g}"] = row
    return {"pairs": [{k: v for k, v in p.items() if k != "resid"} for p in pairs], "shapes": out,
            "chosen_nu": size_scaling.STEP_ERROR_NU}


#: per public source, its largest model size not held out by any of our splits (None: every size may be used)
#: (nanochat's 98M is held out by ``bench_extrapolation.py`` since 2026-12-07; before, its factor here was 0.75)
POOLED_SOURCES = {"embedded grid": 200064, "LossCast StepLaw": 241517568, "LossCast nanochat": 70_000_000,
                  "lr-scheduling": None, "multipowerlaw": None}
#: the sources at LM scale (every size >= size_scaling.LM_SCALE_MIN_PARAMS): those of the ``lm_studies`` prior
LM_SCALE_SOURCES = ("LossCast StepLaw", "LossCast nanochat", "lr-scheduling", "multipowerlaw")


def public_sources():
    """(name, runs) of every source with two or more model sizes, cut at :data:`POOLED_SOURCES` (LossCast Marin
    is left out: its one size pair is our held-out step)."""
    from bayes_optlaws.importers import import_runs

    shared = LOSSCAST.parents[1]
    grid = read_runs(DEFAULT_RUNS)[0]
    yield "embedded grid", grid[grid["group"] == "main"]
    if not shared.exists():
        print(f"skipping the public datasets: {shared} not found")
        return
    yield "LossCast StepLaw", losscast_family("ncpl_steplaw_")
    yield "LossCast nanochat", losscast_family("nanochat_")
    yield "lr-scheduling", import_runs("lr-scheduling", [str(shared / "lr-scheduling")])[0]
    yield "multipowerlaw", import_runs("multipower", [str(shared / "multipowerlaw")], tokens_per_step=1_048_576)[0]


def source_factor(runs: pd.DataFrame, largest) -> dict:
    """One source's size-step factor: :func:`step_factor` over every pair of its sizes (up to ``largest``)
    trained at the same token count, on their best runs (single-stage runs only)."""
    if "parent_run_id" in runs.columns:
        runs = runs[runs["parent_run_id"].isna()]
    if largest is not None:
        runs = runs[runs["model_params"] <= largest]
    f = size_factors(runs.reset_index(drop=True))
    k, se_log_k = step_factor(f["observed"], f["chinchilla"])
    return {"k": k, "se_log_k": se_log_k, "pairs": int(len(f)), "sizes": int(runs["model_params"].nunique())}


def pooled_prior_test() -> dict:
    """Would a size-step prior pooled over the public sources predict a new source's factor ``k`` better than the
    default ``size_scaling`` prior?  Leave-one-source-out: the hierarchical model of :class:`SizeStep` (hyperprior
    on ``m``: the default ``size_scaling`` prior; on ``tau``: the default ``size_step_spread``) fitted on the other
    sources' factors, and the log predictive density of the left-out source's ``log k`` under it and under the
    default prior alone.  Training sizes only; Marin (whose one pair is held out) is not among the sources."""
    from bayes_optlaws.loss_model import DEFAULT_PRIORS

    prior, spread = DEFAULT_PRIORS["size_scaling"], DEFAULT_PRIORS["size_step_spread"]
    mu0, sd0 = float(prior.kwargs["mu"]), float(prior.kwargs["sigma"])
    factors = {name: source_factor(runs, POOLED_SOURCES[name]) for name, runs in public_sources()}
    print("\n=== size-step factor k per public source (best runs of each size pair at one token count; "
          "training sizes only)")
    rows = []
    for name, f in factors.items():
        others = SizeStep([{"k": g["k"], "se_log_k": g["se_log_k"]} for n, g in factors.items() if n != name])
        m, tau, w = others.posterior_grid(prior, spread)
        y = np.log(f["k"])
        var = tau[None, :] ** 2 + f["se_log_k"] ** 2
        dens = (w * np.exp(-0.5 * (y - m[:, None]) ** 2 / var) / np.sqrt(2 * np.pi * var)).sum()
        default = -0.5 * ((y - mu0) / sd0) ** 2 - np.log(np.sqrt(2 * np.pi) * sd0)
        rows.append({"source": name, **f, "log_pred_pooled": float(np.log(dens)), "log_pred_default": float(default)})
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    total = table[["log_pred_pooled", "log_pred_default"]].sum()
    print(f"leave-one-source-out log predictive density, summed: pooled {total['log_pred_pooled']:.3f}, default "
          f"prior {total['log_pred_default']:.3f}")
    return {"sources": rows, "total": total.to_dict(), "lm_studies": lm_studies_prior_test(factors)}


def study_predictive(factors: dict, sources) -> tuple[float, float]:
    """Mean and sd of a new study's ``log k`` under the hierarchical model of ``sources``' factors (:class:`SizeStep`'s,
    the default priors as hyperpriors): the ``lm_studies`` prior of those studies."""
    from bayes_optlaws.loss_model import DEFAULT_PRIORS

    step = SizeStep([{"k": factors[n]["k"], "se_log_k": factors[n]["se_log_k"]} for n in sources])
    draws = np.log(step.factor_draws(DEFAULT_PRIORS["size_scaling"], DEFAULT_PRIORS["size_step_spread"], 200_000,
                                     np.random.default_rng(0)))
    return float(draws.mean()), float(draws.std())


#: the one-size steps of :func:`one_size_steps_test`: per LM-scale source with several training sizes, its prefix
ONE_SIZE_SOURCES = {"LossCast StepLaw": "ncpl_steplaw_", "LossCast nanochat": "nanochat_"}


def one_size_steps_test() -> dict:
    """The Marin situation on training sizes only: fit one size, score the next (every adjacent pair of StepLaw's
    and nanochat's training sizes), with Chinchilla's size-step prior and with the ``lm_studies`` prior of the
    *other* LM-scale studies (leave-one-study-out, so a source's own factor never sets its prior)."""
    factors = {name: source_factor(runs, POOLED_SOURCES[name]) for name, runs in public_sources()
               if name in LM_SCALE_SOURCES}
    rows = []
    for name, prefix in ONE_SIZE_SOURCES.items():
        if name not in factors:
            continue
        mu, sd = study_predictive(factors, [n for n in factors if n != name])
        runs = losscast_family(prefix)
        sizes = sorted(s for s in runs["model_params"].unique() if s <= POOLED_SOURCES[name])
        methods = {"chinchilla": partial(BayesOptLawMethod, model_config={"size_scaling_reference": "chinchilla"},
                                         outcomes=True),
                   "lm_studies (others)": partial(BayesOptLawMethod, outcomes=True, model_config={
                       "priors": {"size_scaling": {"dist": "LogNormal", "kwargs": {"mu": mu, "sigma": sd}}}})}
        for fit_size, score_size in zip(sizes[:-1], sizes[1:]):
            train, test = one_size_split(runs, fit_size, score_size)
            res = evaluate_transfer(train, test, methods)
            for method, m in res.methods.items():
                rows.append({"source": name, "fit": int(fit_size), "score": int(score_size), "prior": method,
                             **{k: m.get(k) for k in ("mae", "bias", "coverage_50", "coverage_90",
                                                      "interval_score_50", "interval_score_90", "crps")}})
    table = pd.DataFrame(rows)
    print("\n=== one-size steps of the training sizes: fit one size, score the next (Chinchilla's size-step prior "
          "against the other LM-scale studies')")
    print(table.round(4).to_string(index=False))
    if len(table):
        print(table.groupby("prior")[["mae", "interval_score_90", "crps"]].sum().round(4).to_string())
    return {"steps": rows}


#: the anchor-budget test: StepLaw's 200M training runs cut to at most these tokens (one budget; two budgets)
ANCHOR_BUDGET_CUTS = (1.3e9, 2.0e9)


def anchor_budget_test() -> dict:
    """Does the nearest fitted size err when it was trained only at other token budgets than the candidate's?
    StepLaw's training sizes only: fit 72M and 124M (runs at 1-4B tokens) and 200M cut to its runs at most
    :data:`ANCHOR_BUDGET_CUTS` tokens; score the 242M runs above the cut up to 4B tokens, evaluated at 200M (the
    nearest; the default) and at 124M (whose runs cover them; the anchor forced for this test).  Loss law alone,
    4 chains × 500 draws.  Per token budget: MAE / bias of the posterior mean."""
    from unittest import mock

    from bayes_optlaws.optlaw import BayesOptLaw

    runs = losscast_family("ncpl_steplaw_")
    runs = runs[runs["parent_run_id"].isna()] if "parent_run_id" in runs.columns else runs
    out = {}
    for cut in ANCHOR_BUDGET_CUTS:
        fit = runs[(runs["model_params"] < 1.5e8) | ((runs["model_params"] == 199957440) & (runs["tokens"] <= cut))]
        test = runs[(runs["model_params"] == 241517568) & (runs["tokens"] > cut) & (runs["tokens"] <= 4e9)]
        law = BayesOptLaw(random_seed=0, fit_divergence=False, fit_stages=False,
                          sampler_config={"draws": 500, "tune": 500}).fit(fit.reset_index(drop=True))
        cand = test.drop(columns=["final_loss", "diverged"]).rename(columns={"run_id": "name"})
        y = test["final_loss"].to_numpy(float)
        print(f"\n=== StepLaw 200M cut to <= {cut / 1e9:g}B tokens: score 242M at {cut / 1e9:g}-4B tokens "
              f"({len(test)} runs)")
        entry = {}
        for anchor, force in (("nearest (200M)", None), ("covering (124M)", 124097280.0)):
            patch = (mock.patch.object(size_scaling, "nearest_fitted_size",
                                       lambda sizes, own, _n=force: np.full(len(own), _n))
                     if force else contextlib.nullcontext())
            with patch, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                draws = law.predict_draws(cand)
            err = draws.loss.mean(axis=0) - y
            lo50, hi50, lo90, hi90 = np.quantile(draws.loss_noisy, [0.25, 0.75, 0.05, 0.95], axis=0)
            by = pd.DataFrame({"tokens_B": np.round(test["tokens"].to_numpy() / 1e9, 2), "err": err})
            per = by.groupby("tokens_B")["err"].agg(mae=lambda v: np.abs(v).mean(), bias="mean", n="size")
            entry[anchor] = {"mae": float(np.abs(err).mean()), "bias": float(err.mean()),
                             "coverage_50": float(((y >= lo50) & (y <= hi50)).mean()),
                             "coverage_90": float(((y >= lo90) & (y <= hi90)).mean()),
                             "by_tokens": per.reset_index().to_dict("records")}
            e = entry[anchor]
            print(f"  {anchor}: MAE {e['mae']:.4f}, bias {e['bias']:+.4f}, coverage 50 / 90 % "
                  f"{e['coverage_50']:.2f} / {e['coverage_90']:.2f}")
            print(per.round(4).to_string())
        out[f"cut {cut:g}"] = entry
    return out


def lm_studies_prior_test(factors: dict) -> dict:
    """The ``lm_studies`` size-step prior (``size_scaling.REFERENCE_PRIORS``): the predictive of a new study's
    ``log k`` under the hierarchical model of the LM-scale sources' factors (its mean and sd, which the prior
    rounds), and leave-one-LM-source-out: each source's ``log k`` under the prior of the other three as the law
    uses it — ``m ~ Normal(mean, sd)`` and a step ``log k ~ Normal(m, tau² + se²)``, ``tau`` drawn from the
    default ``size_step_spread`` — against the same with Chinchilla's prior."""
    from bayes_optlaws.loss_model import DEFAULT_PRIORS
    from bayes_optlaws.size_scaling import REFERENCE_PRIORS

    spread = DEFAULT_PRIORS["size_step_spread"]
    tau = np.abs(np.random.default_rng(1).normal(0.0, float(spread.kwargs["sigma"]), 200_000))
    names = [n for n in LM_SCALE_SOURCES if n in factors]

    def predictive(sources) -> tuple[float, float]:
        return study_predictive(factors, sources)

    def log_density(f, mu, sd) -> float:
        var = sd ** 2 + tau ** 2 + f["se_log_k"] ** 2
        y = np.log(f["k"])
        return float(np.log(np.mean(np.exp(-0.5 * (y - mu) ** 2 / var) / np.sqrt(2 * np.pi * var))))

    chin = REFERENCE_PRIORS["chinchilla"]["kwargs"]
    rows = []
    for name in names:
        mu, sd = predictive([n for n in names if n != name])
        rows.append({"source": name, "log_k": float(np.log(factors[name]["k"])), "others_mean": mu,
                     "others_sd": sd, "log_pred_lm_studies": log_density(factors[name], mu, sd),
                     "log_pred_chinchilla": log_density(factors[name], chin["mu"], chin["sigma"])})
    mu, sd = predictive(names)
    print("\n=== the lm_studies prior: leave-one-LM-scale-source-out, the others' predictive as the prior")
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    print(f"all {len(names)} LM-scale sources: a new study's log k has mean {mu:.3f}, sd {sd:.3f} "
          f"(shipped: {REFERENCE_PRIORS['lm_studies']['kwargs']})")
    return {"sources": rows, "mean": mu, "sd": sd}


def gap_slope_report(backtests: list[dict], slope_prior) -> dict:
    """The step error's growth with the LR gap on the training backtests (``size_scaling.gap_slope_search``): the
    slope from every pair and its log-likelihood gain over one sd per pair, and leave-one-pair-out — the slope
    from the other pairs and the left-out pair's log-likelihood at it against at 0."""
    from bayes_optlaws.size_scaling import gap_slope_search

    full = SizeStep.from_backtests(backtests, slope_prior)
    gamma, _ = full.token_slope_posterior(slope_prior)
    errors, gaps = [], []
    for b in backtests:
        errors.append(pair_residuals(b, gamma, full.log_tokens_ref)[2])
        gaps.append(np.asarray(b["gap"], float))
    slope, profile = gap_slope_search(errors, gaps)
    centred = np.concatenate([e - e.mean() for e in errors])
    quartile = pd.qcut(np.concatenate(gaps), 4, labels=False, duplicates="drop")
    spread = pd.Series(centred ** 2).groupby(quartile).mean() ** 0.5
    out = {"slope": slope, "loglik_gain": profile[slope] - profile[0.0], "lopo": [],
           "rms_by_gap_quartile": [float(v) for v in spread]}
    for j, b in enumerate(backtests):
        if len(backtests) < 2:
            break
        others = [i for i in range(len(backtests)) if i != j]
        c, _ = gap_slope_search([errors[i] for i in others], [gaps[i] for i in others])
        own = gap_slope_search([errors[j]], [gaps[j]], grid=(0.0, c))[1]
        out["lopo"].append({"pair": f"{b['from']:,} -> {b['to']:,}", "slope_from_others": c,
                            "loglik_gain": own[c] - own[0.0]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("grid", "steplaw", "marin"))
    ap.add_argument("--factors-only", action="store_true", help="print the k tables only (no fits)")
    ap.add_argument("--step-error", action="store_true",
                    help="the step error's shape on the training backtests only (no held-out scores)")
    ap.add_argument("--lr-exponent", action="store_true",
                    help="the learned LR-transfer exponent on the training splits only (no held-out scores)")
    ap.add_argument("--pooled-prior", action="store_true",
                    help="leave-one-source-out test of a size-step prior pooled over the public sources")
    ap.add_argument("--one-size-steps", action="store_true",
                    help="fit one training size, score the next, with Chinchilla's and the LM studies' size-step "
                         "prior (training sizes only)")
    ap.add_argument("--anchor-budget", action="store_true",
                    help="the nearest fitted size trained at other token budgets than the candidates' (StepLaw "
                         "training sizes only)")
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args(argv)
    out = {}
    single = {"anchor_budget": anchor_budget_test, "one_size_steps": one_size_steps_test,
              "pooled_prior": pooled_prior_test, "lr_exponent": lambda: lr_exponents(args.only)}
    for flag, test in single.items():  # each of these modes runs one test and writes its result
        if getattr(args, flag):
            out = test()
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
            return 0
    if args.step_error:
        from bench_extrapolation import splits

        for title, (train, _) in splits(args.only):
            if "Marin" in title:
                continue  # one fitted size: no backtests
            fitted = fitted_backtests(train)
            res = step_error_shape(*fitted)
            print(f"\n=== {title}: step error on the training backtests (held-out size not scored)")
            for p in res["pairs"]:
                print(f"  pair {p['from']:,} -> {p['to']:,}: {p['runs']} runs, excess kurtosis {p['kurtosis']:.2f}, "
                      f"step error sd (pooled rate) {p['sd_own']:.5f}, noise t5 scale {p['noise']:.5f}")
            for name, r in res["shapes"].items():
                cov = "  ".join(f"{k.split('_')[1]} {v[0]:.3f} / {v[1]:.3f}" for k, v in r.items() if k != "loglik")
                print(f"  {name:>6}: log-likelihood {r['loglik']:9.2f}  coverage 50 / 90 %: {cov}")
            res["gap"] = gap = gap_slope_report(*fitted)
            print(f"  residual root mean square by quartile of the LR gap: "
                  f"{' / '.join(f'{v:.4f}' for v in gap['rms_by_gap_quartile'])}")
            print(f"  step error sd ∝ 1 + c · (LR gap): c = {gap['slope']:.3g} per nat, log-likelihood "
                  f"{gap['loglik_gain']:+.1f} over one sd per pair")
            for r in gap["lopo"]:
                print(f"    left out {r['pair']}: c from the other pairs {r['slope_from_others']:.3g}, its "
                      f"log-likelihood {r['loglik_gain']:+.1f}")
            out[title] = res
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
        return 0
    methods = {"proxy_best": ProxyBest, "optlaw_ls": OptLawLS,
               "bayes_nearest_size": partial(BayesOptLawMethod, model_config={"new_size": "nearest_size"},
                                   outcomes=True),
               "bayes_features": partial(BayesOptLawMethod, model_config={"new_size": "features"}, outcomes=True)}
    for title, runs, (fit_size, score_size) in sources(args.only):
        entry = {}
        if "held-out" not in title:
            k = size_factors(runs)
            print(f"\n=== {title}: size-term factor k over {len(k)} size pairs: mean {k['k'].mean():.2f}, "
                  f"sd {k['k'].std():.2f}, range {k['k'].min():.2f}-{k['k'].max():.2f}")
            print(k.round(4).to_string(index=False))
            entry["k"] = {"mean": float(k["k"].mean()), "sd": float(k["k"].std()), "n": int(len(k))}
        if not args.factors_only:
            train, test = one_size_split(runs, fit_size, score_size)
            res = evaluate_transfer(train, test, methods)
            print(f"\n=== {title}: fit {fit_size:,} only, score {score_size:,}")
            print(res.table())
            entry["one_size"] = res.to_dict()["methods"]
        out[title] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
