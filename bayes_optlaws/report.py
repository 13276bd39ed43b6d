"""``bayes-optlaws report``: one self-contained HTML page with the pictures and tables behind a schedule decision.

    bayes-optlaws report --model models/default --evaluation eval.json --out reports/

writes ``reports/report.html``: model summary (data, exponents, sampler diagnostics with plain warnings), the
loss surface and divergence map of one block, the posterior predictive check per block, the candidate ranking
(table + figure), and, when an evaluation JSON is given, calibration and ablation figures.  Every image is an
embedded base64 PNG (``data:`` URI) and every style is inline, so the file opens anywhere, offline, on its own.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import __version__
from .jsonsafe import json_safe
from .runs import RunsError, atomic_write_text, ensure_writable
from .schedules import schedule_family

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
 max-width:1200px;padding:16px 28px 48px;color:#1b1b1b;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin-bottom:0.1em}h2{border-bottom:2px solid #e3e3e3;padding-bottom:4px;margin-top:2em}
h3{margin-bottom:0.3em}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:8px 0 12px;font-size:0.9em}
th,td{border:1px solid #d6d6d6;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.pick td{background:#fff8d6}
figure{margin:12px 0 24px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:0.92em;margin-top:4px}
.warn{background:#fff4e5;border-left:5px solid #f0a020;padding:8px 12px;margin:8px 0}
.ok{background:#eef8ee;border-left:5px solid #3a9a3a;padding:8px 12px;margin:8px 0}
.note{background:#f3f6fb;border-left:5px solid #6d8bc7;padding:8px 12px;margin:8px 0}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
nav a{margin-right:12px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
"""


# ---------------------------------------------------------------------------------------------- html helpers
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    """A table cell: "–" for a missing number (None, NaN, inf), yes/no, integers with thousands separators."""
    v = json_safe(v)  # numpy -> Python, NaN/inf -> None
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.{digits}f}"
    return str(v)


def _prob(v: Any) -> str:
    """A probability cell: "n/a" when missing (the model has no such outcome), "< 0.001" when tiny."""
    v = json_safe(v)
    if v is None:
        return "n/a"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _int(v: Any) -> str:
    """A count cell (ESS, draws) rounded to a whole number; "–" when missing."""
    v = json_safe(v)
    return "–" if v is None else f"{float(v):,.0f}"


def _table(rows: Iterable[Mapping[str, Any]], columns: list[tuple[str, str]], left: Iterable[str] = (),
           row_class=None, formats: Mapping[str, Any] | None = None) -> str:
    """HTML table: ``columns`` = [(key, header)]; ``left`` keys are left-aligned; ``formats`` maps a key to a
    value -> text function; all text is escaped."""
    left = set(left)
    formats = dict(formats or {})
    head = "".join(f'<th class="{"l" if k in left else ""}">{_e(h)}</th>' for k, h in columns)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = "".join(f'<td class="{"l" if k in left else ""}">{_e(formats.get(k, _fmt)(r.get(k)))}</td>'
                        for k, _ in columns)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(_fmt(v))}</td></tr>' for k, v in pairs)
    return f"<table><tbody>{rows}</tbody></table>"


def _figure(fig, alt: str, caption: str, dpi: int = 100) -> str:
    """Embed a matplotlib figure as a base64 PNG data URI (and close it)."""
    from .plots import to_png_bytes

    try:
        data = to_png_bytes(fig, dpi=dpi)
    finally:
        _close(fig)
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    try:
        plt.close(fig)
    except Exception:  # noqa: BLE001 - a figure not managed by pyplot needs no closing
        pass


def _box(kind: str, text_html: str) -> str:
    return f'<div class="{kind}">{text_html}</div>'


# ---------------------------------------------------------------------------------------------- choices
def _stage_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that start from scratch (no parent), from the ``main`` group when the table has one."""
    df = runs
    if "parent_run_id" in df.columns:
        df = df[df["parent_run_id"].isna() | (df["parent_run_id"].astype(str) == "")]
    if "group" in df.columns and (df["group"] == "main").any():
        df = df[df["group"] == "main"]
    return df if len(df) else runs


def focus_block(law) -> dict:
    """The block the maps show: the one holding the best (lowest final loss) non-diverged from-scratch run
    (of the ``main`` group when there is one).

    Returns ``model_params``, ``tokens``, ``tokens_per_step``, ``total_steps`` and the best run's ``run_id``,
    ``peak_lr``, ``warmup_frac``, ``final_loss``.
    """
    runs = _stage_rows(law.train_runs_)
    ok = runs[~runs["diverged"].astype(bool) & np.isfinite(runs["final_loss"].astype(float))]
    if not len(ok):
        ok = runs
    best = ok.loc[ok["final_loss"].astype(float).idxmin()] if ok["final_loss"].notna().any() else ok.iloc[0]
    sched = law.train_set_.schedule_of(best["run_id"])
    return {"model_params": int(best["model_params"]), "tokens": int(best["tokens"]),
            "tokens_per_step": int(best["tokens_per_step"]), "total_steps": int(sched.total),
            "run_id": str(best["run_id"]), "peak_lr": float(sched.peak_lr),
            "warmup_frac": float(sched.phases().t1 / sched.total), "final_loss": float(best["final_loss"])}


def default_candidates(law, block: dict | None = None) -> tuple[pd.DataFrame, str]:
    """The shipped example candidates if present, else a small grid around the data's best run.

    Returns ``(candidates, description)``; missing target columns are filled with the focus block's size and
    tokens per step.
    """
    from . import paths

    block = block or focus_block(law)
    path = getattr(paths, "DEFAULT_CANDIDATES", None)
    if path is not None and Path(path).exists():
        from .runs import read_candidates

        return read_candidates(path), f"the shipped example candidates ({Path(path).name})"
    from .optimize import candidate_grid

    p, w = block["peak_lr"], block["warmup_frac"]
    warmups = sorted({0.0, round(w, 4), round(max(w, 0.01) * 2, 4)})
    cands = candidate_grid(block["total_steps"], [p / 2, p, 2 * p], warmups, (0.2,),
                           ("linear", "cosine", "wsd-linear"))
    return cands, (f"a small grid around the best observed run {block['run_id']} (peak LR {p:.3g} × ½, 1, 2; "
                   f"warmup {', '.join(f'{x:g}' for x in warmups)} of the run; linear, cosine and WSD with a "
                   "20 % linear cooldown)")


def _fill_target(cands: pd.DataFrame, block: dict) -> tuple[pd.DataFrame, bool]:
    cands = cands.copy()
    filled = False
    for col in ("model_params", "tokens_per_step"):
        if col not in cands.columns:
            cands[col] = block[col]
            filled = True
        elif cands[col].isna().any():
            cands[col] = cands[col].fillna(block[col])
            filled = True
    return cands, filled


def evaluation_from_json(data: Mapping, source: str = "the evaluation"):
    """An :class:`~bayes_optlaws.evaluation.EvaluationResult` from its JSON form (``EvaluationResult.to_dict()``,
    the output of ``bayes-optlaws evaluate --json``, or a transfer evaluation's ``to_dict()``).

    The JSON holds no per-run predictions (``predictions`` is empty) and carries each method's P(best)
    reliability table inside the method (``methods[NAME]["pbest_reliability"]``): it moves to ``reliability``.
    ``source`` names the input in the :class:`~bayes_optlaws.runs.RunsError` raised for a dict that is not one.
    """
    from .evaluation.protocol import EvaluationResult

    methods = data.get("methods") if isinstance(data, Mapping) else None
    if not isinstance(methods, Mapping) or not all(isinstance(v, Mapping) for v in methods.values()):
        raise RunsError(f"{source}: not an evaluation result (no 'methods' table of metrics per method); "
                        "write one with `bayes-optlaws evaluate --json EVAL.json`")
    metrics = {name: {k: v for k, v in vals.items() if k != "pbest_reliability"} for name, vals in methods.items()}
    reliability = {name: pd.DataFrame(vals["pbest_reliability"]) for name, vals in methods.items()
                   if vals.get("pbest_reliability")}
    return EvaluationResult(methods=metrics, divergence=dict(data.get("divergence") or {}),
                            folds=dict(data.get("folds") or {}), data=dict(data.get("data") or {}),
                            predictions=pd.DataFrame(), reliability=reliability,
                            errors=dict(data.get("errors") or {}))


def _read_evaluation_file(path: Path) -> Any:
    """The parsed JSON of an evaluation file (RunsError when it is missing or not JSON)."""
    if not path.is_file():
        raise RunsError(f"evaluation file {path} does not exist (or is not a file); write one with "
                        "`bayes-optlaws evaluate --json EVAL.json`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunsError(f"{path}: not valid JSON ({exc})") from None


def _as_evaluation(item) -> tuple[str, Any]:
    """``(label, EvaluationResult)`` of one evaluation given as a JSON path, its dict, a result object with
    ``to_dict()`` (e.g. a transfer evaluation) or an ``EvaluationResult``."""
    from .evaluation.protocol import EvaluationResult

    if isinstance(item, EvaluationResult):
        return "evaluation", item
    if isinstance(item, (str, Path)):
        path = Path(item)
        return path.name, evaluation_from_json(_read_evaluation_file(path), str(path))
    if isinstance(item, Mapping):
        return "evaluation", evaluation_from_json(item)
    if hasattr(item, "to_dict"):
        return "evaluation", evaluation_from_json(item.to_dict())
    raise RunsError(f"cannot read an evaluation from an object of type {type(item).__name__!r}; pass an "
                    "evaluation JSON path, its dict or an EvaluationResult")


def _load_evaluations(evaluation) -> list[tuple[str, Any]]:
    """Normalise ``evaluation`` (None, a path, a dict, an EvaluationResult, or a list of those) to
    ``[(label, EvaluationResult)]``: the one form the evaluation plots accept."""
    if evaluation is None:
        return []
    items = evaluation if isinstance(evaluation, (list, tuple)) else [evaluation]
    return [_as_evaluation(item) for item in items]


# ---------------------------------------------------------------------------------------------- sections
def size_step_text(law) -> str:
    """How the law predicts a model size it was not fitted on, with the size-step factor it learned."""
    from .loss_model import loss_priors
    from .plots import human_count
    from .size_scaling import EXCESS_DISTANCE_POWER, describe_prior

    if law.model_config_.get("new_size", "features") != "nearest_size":
        return "from the law's features at that size (new_size='features')"
    step = law.size_step_
    priors = loss_priors(law.model_config_)
    summary = step.summary(priors["size_scaling"], priors["size_step_spread"])

    steps = "; ".join(f"{p['k']:.2f} ({human_count(p['from'])} → {human_count(p['to'])})" for p in step.pairs)
    prior = describe_prior(priors["size_scaling"], law.model_config_.get("size_scaling_reference"))
    learned = f"factor per fitted step: {steps}" if steps else f"one fitted size: the factor is the prior's ({prior})"
    lo, hi = summary["k_90"]
    shape = f"Student-t, {step.error_nu:g} dof" if np.isfinite(step.error_nu) else "normal"
    by_gap = (f", × (1 + {step.gap_slope:.3g} × its LR gap in nats) / {step.gap_rms:.3g}" if step.gap_slope
              else "")
    error = (f"; each configuration's own step error: {step.error_rate:.4f} nats of log loss × "
             f"|Δ log N|^{EXCESS_DISTANCE_POWER:g}{by_gap} (sd; {shape})" if step.pairs else "")
    slope, slope_sd = step.token_slope_posterior(priors["size_step_token_slope"])
    tokens = (f"; k × (D / {human_count(np.exp(step.log_tokens_ref))} tokens)^γ, γ = {slope:.2f} ± {slope_sd:.2f}"
              if slope_sd > 0 or slope != 0 else "")
    return (f"the nearest fitted size plus k × Chinchilla's size term; {learned}; a new step: k "
            f"{summary['k_median']:.2f} (90 % {lo:.2f}–{hi:.2f}){error}{tokens}")


def _summary_section(law, model_label: str | None) -> str:
    runs = law.train_runs_
    div = runs["diverged"].astype(bool)
    blocks = runs.groupby(["model_params", "tokens"]).size()
    fams = pd.Series([schedule_family(s) for s in runs["schedule"]]).value_counts()
    spec = law.spec_
    data_pairs = [
        ("runs", len(runs)), ("diverged runs (divergence boundary only)", int(div.sum())),
        ("runs in the loss model", int((~div).sum())),
        ("blocks (model size × token budget)", len(blocks)),
        ("model sizes (parameters)", ", ".join(f"{int(s):,}" for s in sorted(runs["model_params"].unique()))),
        ("token budgets", ", ".join(f"{int(t):,}" for t in sorted(runs["tokens"].unique()))),
        ("schedule shapes", ", ".join(f"{k} ({v})" for k, v in fams.items())),
        ("seed noise floor (sd of repeat seeds, nats)",
         law.noise_floor_ if np.isfinite(law.noise_floor_) else "not measured (no repeated seeds)"),
    ]
    if "parent_run_id" in runs.columns:
        n_cont = int(runs["parent_run_id"].notna().sum())
        if n_cont:
            data_pairs.append(("continual-training stages (with a parent run)", n_cont))
    model_pairs = [
        ("exponents p_s / p_cc / p_e / p_m", f"{spec.p_s:g} / {spec.p_cc:g} / {spec.p_e:g} / {spec.p_m:g}"),
        ("reference LR (normalised LR 1.0)", f"{spec.lr_ref:g}"),
        ("feature blocks", ", ".join(spec.blocks) + f" ({len(spec.feature_names)} features + intercept)"),
        ("sampler", ", ".join(f"{k} {v}" for k, v in law.sampler_config_.items() if k in ("chains", "draws",
                                                                                           "tune",
                                                                                           "nuts_sampler"))),
    ]
    if law.size_step_ is not None:
        model_pairs.append(("an unseen model size", size_step_text(law)))
    if law.div_fit_ is not None and law.div_fit_.unstable_level is not None:
        model_pairs.append(("where an unstable run ends", law.div_fit_.unstable_level.describe()))
    elif np.isfinite(law.unstable_excess_):
        model_pairs.append(("where an unstable run ends", f"{law.unstable_excess_:.3f} nats above the law's loss"))
    for value, label in ((law.data_hash_, "training-data hash"), (law.fit_seconds_, "fit time (s)")):
        if value is not None:
            model_pairs.append((label, value))
    settings = law.settings_ or {}
    if settings.get("package_version"):
        model_pairs.append(("fitted with bayes-optlaws", settings["package_version"]))
    if model_label:
        model_pairs.insert(0, ("model", model_label))
    out = ['<section id="summary"><h2>1. Model summary</h2><div class="grid2"><div><h3>Data</h3>',
           _kv_table(data_pairs), "</div><div><h3>Model</h3>", _kv_table(model_pairs), "</div></div>"]
    out.append("<h3>Sampler diagnostics</h3>")
    rows, msgs = [], []
    for name, d in (("loss model", law.loss_diagnostics_), ("divergence boundary", law.div_diagnostics_)):
        if not d:
            rows.append({"part": name, "max_rhat": None, "min_ess_bulk": None, "min_ess_tail": None,
                         "divergences": None, "draws": None, "status": "not fitted (no diverged runs)"
                         if name == "divergence boundary" else "not fitted"})
            continue
        bad = list(d.get("warnings") or [])
        rows.append({"part": name, "max_rhat": d.get("max_rhat"), "min_ess_bulk": d.get("min_ess_bulk"),
                     "min_ess_tail": d.get("min_ess_tail"), "divergences": d.get("divergences"),
                     "draws": d.get("draws"), "status": "check" if bad else "ok"})
        msgs += [f"{name}: {m}" for m in bad]
    out.append(_table(rows, [("part", "part"), ("max_rhat", "max R-hat (want ≤ 1.01)"),
                             ("min_ess_bulk", "min bulk ESS (want ≥ 400)"), ("min_ess_tail", "min tail ESS"),
                             ("divergences", "divergent transitions (want 0)"), ("draws", "draws"),
                             ("status", "status")], left=("part", "status"),
                      formats={"max_rhat": lambda v: _fmt(v, 3), "min_ess_bulk": _int, "min_ess_tail": _int}))
    checks = []
    pc, ppc, loo = law.prior_check_, law.ppc_, law.loo_
    if pc:
        checks.append(f"prior predictive: {pc.get('share_inside_98', float('nan')):.0%} of observed log losses "
                      "inside the prior's 98 % range")
        msgs += list(pc.get("warnings") or [])
    if ppc:
        nan = float("nan")
        checks.append(f"posterior predictive coverage on the training runs: 50 % interval → "
                      f"{ppc.get('coverage_50', nan):.0%}, 90 % → {ppc.get('coverage_90', nan):.0%}")
        msgs += list(ppc.get("warnings") or [])
    if loo:
        if "elpd_loo" in loo:
            checks.append(f"PSIS-LOO: elpd {loo['elpd_loo']:.1f}, p_loo {loo.get('p_loo', float('nan')):.1f}, "
                          f"{loo.get('n_pareto_k_gt_0.7', 0)} runs with Pareto k > 0.7")
        msgs += list(loo.get("warnings") or [])
    if checks:
        out.append("<p>Workflow checks: " + "; ".join(_e(c) for c in checks) + ".</p>")
    if msgs:
        out.append(_box("warn", "<strong>Warnings — read before trusting the intervals:</strong><ul>"
                        + "".join(f"<li>{_e(m)}</li>" for m in msgs) + "</ul>"))
    else:
        out.append(_box("ok", "No warnings: R-hat ≤ 1.01, ESS ≥ 400 and no divergent transitions in both "
                        "models; the posterior checks are within their tolerances."))
    out.append("</section>")
    return "".join(out)


def _maps_section(law, block: dict, random_seed: int) -> str:
    from . import plots
    from .surface import block_runs, surface_grid

    where_args = (block["model_params"], block["total_steps"], block["tokens_per_step"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid = surface_grid(law, *where_args, random_seed=random_seed)  # one grid of predictions for both maps
    runs = block_runs(law.train_runs_, *where_args)
    where = (f"the block N = {block['model_params']:,} parameters, D = {block['tokens']:,} tokens "
             f"({block['total_steps']:,} steps × {block['tokens_per_step']:,} tokens per step), "
             + ("the block chosen for this report" if block.get("chosen") else
                f"the block of the best observed run <code>{_e(block['run_id'])}</code>"))
    out = ['<section id="surface"><h2>2. Loss surface</h2>',
           f"<p>Predicted final loss of linear-warmup + linear-decay schedules over peak LR × warmup for {where}. "
           "The dashed line is P(diverge) = 0.5; markers are the observed runs of this block.</p>",
           _warnings_box("Read these before trusting the maps (each \"candidate\" below is a point of their grid):",
                         _unique_messages(caught))]
    out.append(_figure(plots.loss_surface(grid, runs), "loss surface",
                       "Left: posterior mean of the expected final loss (nats), hatched where P(diverge) > 0.5; "
                       "observed runs coloured by their measured loss on the same scale. Right: width of the 90 % "
                       "credible interval of the expected loss (nats) — large away from the data. Star: the "
                       "predicted best schedule on this grid with P(diverge) &lt; 0.5."))
    out.append("</section>")
    out.append('<section id="divergence"><h2>3. Divergence map</h2>')
    out.append(_figure(plots.divergence_map(grid, runs), "divergence map",
                       "Posterior mean P(diverge) (left) and the width of its 90 % credible interval (right) over "
                       "the same grid; red crosses: runs that diverged, open circles: runs that trained normally."))
    out.append("</section>")
    return "".join(out)


def training_draws(law, random_seed: int = 0):
    """The non-diverged training runs with a finite final loss and their posterior predictive draws
    (``(runs, PredictionDraws)``, one draws column per run, same order): the input of
    :func:`bayes_optlaws.plots.ppc_by_block`."""
    runs = law.train_runs_
    trained = (~runs["diverged"].astype(bool) & np.isfinite(runs["final_loss"].astype(float))).to_numpy()
    return runs[trained], law.predict_draws(law.train_set_.rows(trained), random_seed=random_seed)


def _ppc_section(law, random_seed: int) -> str:
    from . import plots

    observed, draws = training_draws(law, random_seed)
    return ('<section id="ppc"><h2>4. Posterior predictive check by block</h2>'
            + _figure(plots.ppc_by_block(observed, draws), "posterior predictive check by block",
                      "Every non-diverged training run: observed final loss against the posterior predictive "
                      "median of a new run with its 90 % interval (left), and the residuals per block (right). "
                      "In-sample: this checks the fit, not predictive accuracy on unseen runs — see the "
                      "evaluation section for that.")
            + "</section>")


def _p_best_pick_item(picks: dict) -> str:
    """List item for the pick by P(best), saying whether it is the pick by expected loss."""
    by_pb = picks.get("by_p_best")
    same = by_pb == picks.get("by_expected_loss")
    return (f"<li>Pick by P(best): <strong>{_e(by_pb)}</strong>"
            + (" (the same)" if same else " — differs from the pick by expected loss: the most likely best is "
               "not the lowest expected loss") + "</li>")


def _candidates_section(law, candidates, block: dict, random_seed: int) -> str:
    from . import plots
    from .api import rank_candidates

    if candidates is None:
        cands, desc = default_candidates(law, block)
    elif isinstance(candidates, pd.DataFrame):
        cands, desc = candidates, f"{len(candidates)} candidates given to the report"
    else:
        from .runs import read_candidates

        cands, desc = read_candidates(candidates), f"<code>{_e(Path(candidates).name)}</code>"
    cands, filled = _fill_target(cands, block)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranking = rank_candidates(law, cands, random_seed=random_seed)
    t = ranking.table
    picks = ranking.picks
    out = ['<section id="candidates"><h2>5. Candidate ranking</h2>',
           f"<p>Candidates: {desc}."]
    if filled:
        out.append(f" Candidates without a target size were scored at N = {block['model_params']:,} parameters "
                   f"with {block['tokens_per_step']:,} tokens per step (the block of the best observed run).")
    out.append("</p>")
    out.append(_prediction_warnings(ranking, caught))
    rows = []
    for _, r in t.iterrows():
        rows.append({"rank": int(r["rank"]), "name": r["name"], "mean": r["loss_mean"],
                     "interval": f"[{_fmt(r['loss_q05'])}, {_fmt(r['loss_q95'])}]",
                     "expected_loss": r["expected_loss"],
                     "p_diverge": r["p_diverge"],
                     "p_best": r["p_best"], "regret": r["expected_regret"],
                     "extrap": r.get("extrap_max", float("nan"))})
    pick_names = {picks.get("by_expected_loss"), picks.get("risk_aware")}
    out.append(_table(rows, [("rank", "rank"), ("name", "candidate"), ("mean", "mean loss if it trains (nats)"),
                             ("interval", "90 % predictive interval"),
                             ("expected_loss", "expected loss incl. divergence risk (sort key)"),
                             ("p_diverge", "P(diverge)"), ("p_best", "P(best)"),
                             ("regret", "expected regret (nats)"),
                             ("extrap", "extrapolation (× beyond the fitted runs; 1 = inside)")],
                      left=("name", "interval"),
                      row_class=lambda r: "pick" if r["name"] in pick_names else "",
                      formats={"p_diverge": _prob, "p_best": lambda v: _fmt(v, 3),
                               "extrap": lambda v: "–" if not np.isfinite(v) else f"{v:.3g}"}))
    items = [f"<li>Pick by expected loss (the first row): <strong>{_e(picks.get('by_expected_loss'))}</strong>"
             "</li>", _p_best_pick_item(picks),
             f"<li>Risk-aware pick ({_e(picks.get('risk_aware_rule', ''))}): "
             f"<strong>{_e(picks.get('risk_aware'))}</strong></li>"]
    for nt in ranking.near_ties:
        if nt.get("near_tie"):
            items.append(f"<li>Near-tie: {_e(nt['a'])} vs {_e(nt['b'])}: P(|Δloss| &lt; {nt['delta']:.4f} nats) = "
                         f"{nt['p_within_delta']:.2f}, P({_e(nt['a'])} better) = {nt['p_a_better']:.2f} — "
                         "the data cannot order these two confidently.</li>")
    if ranking.near_ties and not any(nt.get("near_tie") for nt in ranking.near_ties):
        nt = ranking.near_ties[0]
        items.append(f"<li>Top two rows: P({_e(nt['a'])} better than {_e(nt['b'])}) = {nt['p_a_better']:.2f}; "
                     f"P(|Δloss| &lt; {nt['delta']:.4f} nats) = {nt['p_within_delta']:.2f}.</li>")
    out.append("<ul>" + "".join(items) + "</ul>")
    out.append(_figure(plots.candidates(ranking), "candidate ranking",
                       "Per candidate (best first): 90 % predictive interval of a new run's final loss with median "
                       "and mean; P(best) bars with P(diverge). P(best) counts a draw in which a candidate "
                       "diverges as not best."))
    out.append("</section>")
    return "".join(out)


def _prediction_warnings(ranking, caught: list) -> str:
    """A warning box with what the terminal's ranking says about the candidates' predictions: how far they
    extrapolate beyond the fitted runs, rows whose mean lies outside their interval, and every warning raised while
    predicting them (extrapolation, draws held at the loss floor or ceiling, a one-size law, ...), each once; ""
    when there is nothing to say."""
    from .extrapolation import OutsideRangeWarning
    from .ranking import extrapolation_lines, outside_interval_lines

    messages = _unique_messages(caught)
    # the law warns about what lies beyond its thresholds; the summary line also covers milder extrapolation, so
    # it is shown only when the law said nothing of the kind
    far = any(issubclass(w.category, OutsideRangeWarning) for w in caught)
    lines = [] if far else extrapolation_lines(ranking.table, pointer=False)
    return _warnings_box("Read these before trusting the candidates' intervals:",
                         lines + outside_interval_lines(ranking.table) + messages)


def _unique_messages(caught: list) -> list[str]:
    """The texts of the recorded warnings meant for users (``UserWarning`` and its subclasses, not a library's
    deprecation or numerical notes), each once, in the order first raised."""
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))


def _warnings_box(title: str, lines: list[str]) -> str:
    """A warning box with ``title`` and one item per line (escaped); "" when there are none."""
    if not lines:
        return ""
    return _box("warn", f"<strong>{_e(title)}</strong><ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines)
                + "</ul>")


def _evaluation_section(evaluations: list[tuple[str, Any]]) -> str:
    from . import plots

    out = ['<section id="evaluation"><h2>6. Evaluation (held-out, block-wise cross-validation)</h2>']
    have_cal = have_abl = False
    for label, res in evaluations:
        methods, data = res.methods, res.data
        out.append(f"<h3>{_e(label)}</h3>")
        if data:
            out.append(f"<p>{_e(data.get('n_cv_runs', '?'))} runs in {_e(data.get('n_blocks', '?'))} blocks; "
                       f"{_e(data.get('n_loss_runs', '?'))} in the loss task, {_e(data.get('n_diverged', '?'))} "
                       "diverged.</p>")
        cols = [("name", "method"), ("r2", "R² (log loss)"), ("rel_err_pct", "rel. error %"),
                ("spearman", "Spearman"), ("top2", "Top-2 (fraction)"), ("regret", "regret (nats)"),
                ("coverage_90", "90 % coverage"), ("crps", "CRPS"), ("pbest_ece", "P(best) ECE"), ("n", "n")]
        rows = [{"name": k, **{c: v.get(c) for c, _ in cols[1:]}} for k, v in methods.items()]
        out.append(_table(rows, cols, left=("name",)))
        dv = res.divergence
        if dv:
            dcols = [("name", "divergence method"), ("precision", "precision"), ("recall", "recall"),
                     ("f1", "F1"), ("balanced_accuracy", "balanced accuracy"), ("brier", "Brier"), ("n", "n")]
            out.append(_table([{"name": k, **{c: v.get(c) for c, _ in dcols[1:]}} for k, v in dv.items()], dcols,
                              left=("name",)))
        try:
            fig = plots.calibration(res)
        except ValueError:
            fig = None
        if fig is not None:
            have_cal = True
            out.append(_figure(fig, f"calibration ({label})",
                               "Left: share of held-out runs inside their central 50/80/90 % predictive "
                               "intervals (on the diagonal = calibrated). Right: among held-out configurations "
                               "given P(best) ≈ p, the share that actually was the best of its block and fold."))
        try:
            fig = plots.ablation(res)
        except ValueError:
            fig = None
        if fig is not None:
            have_abl = True
            out.append(_figure(fig, f"ablation ({label})",
                               "Feature blocks added one at a time; grey: the paper's Table 9 on its own data, "
                               "for orientation only."))
    if not have_cal:
        out.append(_box("note", "No calibration figure: no method with predictive draws in the evaluation "
                        "(run <code>bayes-optlaws evaluate --json EVAL.json</code> without <code>--no-bayes</code>)."))
    if not have_abl:
        out.append(_box("note", "No ablation figure: run <code>bayes-optlaws evaluate --ablation --json "
                        "ABLATION.json</code> and pass it with another <code>--evaluation</code>."))
    out.append("</section>")
    return "".join(out)


def _diagnostics_section(law) -> str:
    from . import plots

    try:
        fig = plots.trace(law.loss_idata_, law.loss_diagnostics_ or {}, kind="forest")
    except Exception as exc:  # noqa: BLE001 - the diagnostics picture is optional, the table above is not
        return (f'<section id="diagnostics"><h2>7. Sampler diagnostics (plots)</h2>'
                f'{_box("note", "Parameter plot unavailable: " + _e(exc))}</section>')
    return ('<section id="diagnostics"><h2>7. Loss-model parameters</h2>'
            + _figure(fig, "loss model parameters (forest plot per chain)",
                      "94 % intervals of the intercept, the 15 slopes (per standard deviation of each feature) and "
                      "the noise and size scales, one row per chain (arviz-plots). Rows that disagree mean the "
                      "chains have not mixed.", dpi=80)
            + "</section>")


# ---------------------------------------------------------------------------------------------- entry points
def render_report(law, candidates=None, evaluation=None, *, model_label: str | None = None,
                  block: Mapping | None = None, random_seed: int = 0) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    evaluations = _load_evaluations(evaluation)
    focus = focus_block(law)
    if block is not None:
        focus = {**focus, **dict(block), "chosen": True}
        if "tokens" in block and "total_steps" not in block:
            focus["total_steps"] = int(round(int(block["tokens"]) / int(focus["tokens_per_step"])))
        focus["tokens"] = int(focus["total_steps"]) * int(focus["tokens_per_step"])
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [_summary_section(law, model_label), _maps_section(law, focus, random_seed),
                 _ppc_section(law, random_seed), _candidates_section(law, candidates, focus, random_seed)]
        if evaluations:
            parts.append(_evaluation_section(evaluations))
        parts.append(_diagnostics_section(law))
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("summary", "Summary"), ("surface", "Loss surface"), ("divergence", "Divergence"), ("ppc", "PPC"),
        ("candidates", "Candidates")) + ((("evaluation", "Evaluation"),) if evaluations else ())
        + (("diagnostics", "Parameters"),))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>bayes-optlaws report</title><style>{_CSS}</style></head><body>"
            "<h1>bayes-optlaws report</h1>"
            f'<p class="sub">Which learning-rate schedule to run: Bayesian Opt-Law predictions with uncertainty. '
            f"Generated {_e(now)} by bayes-optlaws {_e(__version__)}. Losses in nats; learning rates as in the "
            "runs table.</p>"
            f"<nav>{nav}</nav>"
            + "".join(parts)
            + '<footer><p class="sub">Reproduce: <code>bayes-optlaws report --model DIR [--candidates PATH] '
              "[--evaluation EVAL.json] --out DIR</code>. The feature formulas are a reconstruction of the "
              "paper's prose (see README), tested by the ablation, not the paper's exact equations.</p></footer>"
            "</body></html>\n")


def write_report(law, out_dir, candidates=None, evaluation=None, force: bool = False, *,
                 block: Mapping | None = None, random_seed: int = 0) -> Path:
    """Write ONE self-contained ``out_dir/report.html`` and return its path.

    The report composes: it computes every number through the API (:mod:`bayes_optlaws.surface` for the maps,
    :func:`training_draws` for the posterior predictive check, :func:`~bayes_optlaws.api.rank_candidates` for the
    ranking), hands them to :mod:`bayes_optlaws.plots` (which only draws) and writes the HTML.

    ``law``: a fitted :class:`~bayes_optlaws.optlaw.BayesOptLaw` or a model directory.  ``candidates``: a
    candidate file or DataFrame (default: the shipped examples if present, else a small grid around the data's
    best run).  ``evaluation``: an evaluation JSON path, its dict, an ``EvaluationResult``, or a list of those
    (e.g. the main evaluation and an ``--ablation`` one).  ``block``: override the block of the maps
    (``model_params``, ``total_steps`` or ``tokens``, ``tokens_per_step``).  Refuses to overwrite an existing
    report unless ``force`` (raises :class:`~bayes_optlaws.runs.RunsError`).
    """
    out = ensure_writable(Path(out_dir) / REPORT_NAME, force)
    label = None
    if isinstance(law, (str, Path)):
        from .api import load

        label = str(law)
        law = load(law)
    text = render_report(law, candidates, evaluation, model_label=label, block=block, random_seed=random_seed)
    atomic_write_text(out, text)
    return out


def cmd_report(args) -> int:
    block = None
    if args.params is not None or args.tokens is not None:
        if args.params is None or args.tokens is None:
            raise RunsError("--params and --tokens choose the block of the maps together; give both "
                            "(and --tokens-per-step if it is not 4096)")
        block = {"model_params": args.params, "tokens": args.tokens, "tokens_per_step": args.tokens_per_step}
    path = write_report(args.model, args.out, candidates=args.candidates, evaluation=args.evaluation,
                        force=args.force, block=block, random_seed=args.seed)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB, self-contained; open it in a browser)")
    return 0


def register(subparsers) -> None:
    """Add ``report [--model DIR] [--candidates PATH] [--evaluation EVAL.json] [--out DIR] [--force]
    [--params N --tokens D [--tokens-per-step B]]``."""
    from .paths import DEFAULT_MODEL

    p = subparsers.add_parser("report", help="write one self-contained HTML report (figures and tables)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="fitted model directory (default: shipped model)")
    p.add_argument("--candidates", help="candidate CSV/TOML to rank (default: the shipped examples, or a small "
                   "grid around the best observed run)")
    p.add_argument("--evaluation", action="append", metavar="EVAL.json",
                   help="output of `bayes-optlaws evaluate --json` (repeat to add e.g. an --ablation run)")
    p.add_argument("--out", default=".", help="directory for report.html (default: current directory)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report.html")
    p.add_argument("--params", type=int, help="block of the maps: model size (default: the block of the best run)")
    p.add_argument("--tokens", type=int, help="block of the maps: token budget (with --params)")
    p.add_argument("--tokens-per-step", type=int, default=4096, help="block of the maps: tokens per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the predictive draws")
    p.set_defaults(func=cmd_report)
