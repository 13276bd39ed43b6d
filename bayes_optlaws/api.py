"""The Python API in four calls: ``fit``, ``load``, ``predict`` and ``rank_candidates``.

    import bayes_optlaws as bol
    law = bol.fit("data/grid/runs.csv")                  # or a DataFrame
    result = bol.rank_candidates(law, "data/examples/candidates.csv")
    result.table                                         # pandas: intervals, P(diverge), P(best), regret
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .optlaw import BayesOptLaw, PredictionDraws
from .paths import DEFAULT_MODEL, DEFAULT_RUNS
from .ranking import Ranking, check_rank_settings, rank
from .runs import RunsError, checked_count, read_candidate_table, read_table
from .runset import RunSet
from .schedules import scale_spec


def _table_or_path(value, what: str, example: str):
    """A table given to the API: a DataFrame or run set as it is, a list of row dicts as a DataFrame, a path as
    a :class:`~pathlib.Path`; anything else is a :class:`RunsError` naming ``what`` and an ``example``."""
    if isinstance(value, (pd.DataFrame, RunSet)):
        return value
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return pd.DataFrame(value)
    if isinstance(value, (str, Path)):
        return Path(value)
    raise RunsError(f"{what} must be a CSV/Parquet path, a pandas DataFrame or a list of row dicts, got "
                    f"{type(value).__name__}; e.g. {example}")


def _run_set(runs) -> RunSet:
    """A runs table (a path, a DataFrame, a list of row dicts or a run set) validated once, into a run set."""
    runs = _table_or_path(runs, "the runs table", '"data/grid/runs.csv"')
    if isinstance(runs, (pd.DataFrame, RunSet)):
        return RunSet.of_runs(runs)
    path = Path(runs)
    if path == DEFAULT_RUNS and not path.exists():
        raise RunsError(f"the embedded grid {path} is missing from this checkout")
    return RunSet.of_runs(read_table(path), where=str(path))


def fit(runs=DEFAULT_RUNS, *, random_seed: int = 0, sampler_config: dict | None = None, progress=None,
        groups: tuple[str, ...] | None = None, **kwargs) -> BayesOptLaw:
    """Fit a :class:`BayesOptLaw` on a runs table (path or DataFrame); ``groups`` selects the fitting rows
    (default: group "main" when present, else all)."""
    return BayesOptLaw(random_seed=random_seed, sampler_config=sampler_config, **kwargs).fit(
        _run_set(runs), progress=progress, groups=groups)


def load(path=DEFAULT_MODEL) -> BayesOptLaw:
    """Load a fitted model directory (default: the shipped model; ``None`` too)."""
    if path is None:
        path = DEFAULT_MODEL
    if not isinstance(path, (str, Path)):
        raise RunsError(f"load() takes a model directory's path, got {type(path).__name__}")
    return BayesOptLaw.load(path)


def _candidate_set(candidates) -> RunSet:
    """Candidates (a path, a DataFrame, a list of row dicts or a run set) validated once, into a run set."""
    candidates = _table_or_path(candidates, "candidates",
                                '[{"name": "a", "schedule": {"family": "linear", "peak_lr": 3e-3, "warmup": 100, '
                                '"total": 2000}}]')
    if isinstance(candidates, (pd.DataFrame, RunSet)):
        return RunSet.of_candidates(candidates)
    return RunSet.of_candidates(read_candidate_table(candidates), where=str(candidates))


def _training_tokens_per_step(law: BayesOptLaw) -> int:
    """The tokens per optimizer step of the model's training runs, when they all share one value.

    Raises :class:`RunsError` listing the values seen when the training runs used several (or none)."""
    seen = sorted({int(t) for t in law.train_runs_["tokens_per_step"].dropna()})
    if len(seen) != 1:
        used = f"several values ({', '.join(map(str, seen))})" if seen else "no values"
        raise RunsError(f"--tokens needs --tokens-per-step (or a tokens_per_step column) to convert tokens to "
                        f"steps; the model's training runs used {used}, so none is taken from them: give "
                        f"--tokens-per-step B")
    return seen[0]


def predict(law: BayesOptLaw, candidates, *, model_params=None, tokens_per_step=None, tokens=None,
            parent_run_id=None, scenario=None, runs=None, history_schedules=None,
            random_seed=None, note=None) -> PredictionDraws:
    """Joint posterior draws for candidates; ``tokens`` rescales family schedules to that budget.

    With ``tokens`` (a budget in tokens) the schedules are rescaled to ``tokens / tokens_per_step`` steps; without
    ``tokens_per_step`` (argument or column) it is taken from the model's training runs when they all used one
    value, and ``note`` (a callable taking one plain sentence, e.g. the CLI's stderr printer) is told so.

    ``parent_run_id`` + ``scenario``: continual training from that checkpoint, in a scenario of the model's stage
    runs (their ``group`` label, e.g. ``weak_shift``: more of the same data, ``strong_shift``: new data).
    ``history_schedules``: instead of a parent in a runs table, the earlier stages' schedules (oldest first; any
    schedule form, dict or JSON) at the candidates' tokens per step — a checkpoint the model has never seen."""
    cand_set = _candidate_set(candidates)
    if random_seed is not None:
        random_seed = checked_count(random_seed, "random_seed (--seed)", allow_zero=True)
    if tokens_per_step is not None:
        tokens_per_step = checked_count(tokens_per_step, "tokens_per_step (--tokens-per-step)")
    if tokens is not None:
        tokens = checked_count(tokens, "tokens (--tokens)")
        cand = cand_set.table.copy()
        if tokens_per_step is None and ("tokens_per_step" not in cand.columns or cand["tokens_per_step"].isna().any()):
            from_training = _training_tokens_per_step(law)
            if "tokens_per_step" not in cand.columns:
                cand["tokens_per_step"] = from_training
            cand["tokens_per_step"] = cand["tokens_per_step"].fillna(from_training).astype(int)
            if note is not None:
                note(f"tokens per step {from_training} from the model's training runs")
        tps = cand["tokens_per_step"] if tokens_per_step is None else pd.Series(tokens_per_step, index=cand.index)
        steps = [int(round(tokens / int(t))) for t in tps]
        if min(steps) < 1:
            raise RunsError(f"tokens (--tokens) {tokens:,} is less than one step of {int(max(tps)):,} tokens; give "
                            "a budget of at least one step")
        cand["schedule"] = [_rescaled(spec, n, name, tokens) for spec, n, name in
                            zip(cand["schedule"], steps, cand["name"] if "name" in cand else cand["run_id"])]
        cand_set = RunSet.of_candidates(cand)  # new schedules: parsed (and checked) once more
    cand = cand_set.table
    history = _run_set(runs) if runs is not None else None
    if history_schedules:
        if parent_run_id is not None:
            raise RunsError("give either parent_run_id (--parent: the history is in a runs table) or explicit "
                            "earlier-stage schedules (--history), not both")
        history, parent_run_id = explicit_history(history_schedules, cand, tokens_per_step)
    return law.predict_draws(cand_set, model_params=model_params, tokens_per_step=tokens_per_step,
                             parent_run_id=parent_run_id, scenario=scenario, history_runs=history,
                             random_seed=random_seed)


def _rescaled(spec: str, steps: int, name: str, tokens: int) -> str:
    """Candidate ``name``'s schedule rescaled to ``steps`` steps for the budget ``--tokens``, as JSON; a schedule
    that cannot be rescaled is a :class:`RunsError` naming the candidate and ``--tokens`` as the cause."""
    from .schedules import Schedule, ScheduleError

    try:
        text = json.dumps(scale_spec(spec, steps))
        Schedule.from_spec(text)  # e.g. a wsd cooldown that rounds to 0 steps at a small budget
        return text
    except ScheduleError as exc:
        raise RunsError(f"candidate {name!r} rescaled to --tokens {tokens:,} ({steps:,} steps): {exc}") from None


def explicit_history(schedules, candidates: pd.DataFrame, tokens_per_step=None) -> tuple[RunSet, str]:
    """A history for explicit earlier-stage schedules (oldest first): rows ``history-1`` … ``history-k``
    chained by ``parent_run_id``, as a run set; returns ``(run set, run_id of the last stage)``."""
    from .schedules import Schedule

    if tokens_per_step is None:
        tps = candidates["tokens_per_step"].dropna().unique() if "tokens_per_step" in candidates else []
        if len(tps) != 1:
            raise RunsError("explicit history needs one tokens per step: give --tokens-per-step")
        tokens_per_step = int(tps[0])
    if isinstance(schedules, (str, dict)):
        schedules = [schedules]  # one earlier stage
    if not isinstance(schedules, (list, tuple)):
        raise RunsError(f"the earlier stages (history_schedules / --history) must be a list of schedules, oldest "
                        f"first, got {type(schedules).__name__}")
    rows, parsed = [], []
    for i, spec in enumerate(schedules, start=1):
        text = spec if isinstance(spec, str) else json.dumps(spec)
        try:
            parsed.append(Schedule.from_spec(text))
        except Exception as exc:
            raise RunsError(f"history stage {i}: {exc}") from None
        rows.append({"run_id": f"history-{i}", "schedule": text, "tokens_per_step": int(tokens_per_step),
                     "parent_run_id": f"history-{i - 1}" if i > 1 else None})
    if not rows:
        raise RunsError("explicit history is empty: give at least one earlier-stage schedule")
    return RunSet(pd.DataFrame(rows), tuple(parsed)), rows[-1]["run_id"]


def rank_candidates(law: BayesOptLaw, candidates, *, delta: float | None = None, max_p_diverge: float = 0.05,
                    random_seed: int = 0, **target) -> Ranking:
    """Rank candidates: per-candidate intervals, P(diverge), P(best), expected regret, near-ties, picks.

    ``delta`` (nats) defaults to the seed noise floor measured in the model's training data.
    """
    check_rank_settings(delta, max_p_diverge)  # before the prediction, not after it
    draws = predict(law, candidates, random_seed=random_seed, **target)
    if delta is None:
        delta = law.noise_floor_ if np.isfinite(law.noise_floor_) else None
    return rank(draws, delta=delta, max_p_diverge=max_p_diverge, random_seed=random_seed)
