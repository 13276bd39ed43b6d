"""``BayesOptLaw``: the estimator users fit, predict with, save and load (scikit-learn / pymc-marketing style).

    law = BayesOptLaw(random_seed=0).fit(runs)          # exponent search + loss model + divergence boundary
                                                         # (+ the stage model when runs has continual stages)
    draws = law.predict_draws(candidates)                # loss, noisy loss and P(diverge) draws per candidate
    law.save("models/my-law");  law = BayesOptLaw.load("models/my-law")

Fitted state lives in attributes ending in ``_``.  All randomness flows from ``random_seed``.
"""

from __future__ import annotations

import copy
import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from . import continual as ct
from . import divergence as div
from . import instability as ins
from . import covariates as cov
from . import loss_model as lm
from . import size_scaling
from . import fitted
from .fitted import data_hash, model_id  # noqa: F401  (re-exported: a fitted model's identity lives in fitted.py)
from .features import (FeatureError, FeatureSpec, Standardiser, design_matrix, reference_lr, select_exponents,
                       with_lr_scaled)
from .runs import RunsError, shown_names
from .runset import RunSet
from .extrapolation import ExtrapolationWarning, FittedRange
from .loss_law import LossLawFit
from .draws import PredictionDraws  # noqa: F401  (re-exported: moved to draws.py)
from .user_warnings import warn_user


def block_key(df: pd.DataFrame) -> np.ndarray:
    """(model_params, tokens) block label per row."""
    return (df["model_params"].astype(str) + "|" + df["tokens"].astype(str)).to_numpy()


def replicate_noise(df: pd.DataFrame) -> float:
    """Seed noise floor (nats): the median over repeated configurations of the std of final loss across seeds.

    The median, not a pooled sd: unstable configurations (no warmup, near-critical LR) have seed sds 10× those of
    well-tuned ones and would otherwise set the near-tie threshold; the candidates people compare are the good
    ones.  NaN when no configuration was repeated.
    """
    ok = df[~df["diverged"]]
    sds = [float(np.std(g.to_numpy(), ddof=1)) for _, g in
           ok.groupby(["model_params", "tokens", "schedule"])["final_loss"] if len(g) > 1]
    return float(np.median(sds)) if sds else float("nan")


class BayesOptLaw:
    """Hierarchical Bayesian Opt-Law with a probabilistic divergence boundary.

    Parameters
    ----------
    feature_spec: fixed exponents/normalisation, or ``None`` to search the exponent groups on the training rows.
    blocks: feature blocks to use (ablation), default all four.
    model_config / sampler_config: priors and NUTS settings (see :mod:`bayes_optlaws.loss_model`).
    random_seed: seeds the exponent-search folds, the samplers and the predictive noise.
    """

    def __init__(self, feature_spec: FeatureSpec | None = None, *, blocks=None, model_config: dict | None = None,
                 sampler_config: dict | None = None, divergence_draws: int | None = None, random_seed: int = 0,
                 fit_divergence: bool = True, fit_stages: bool = True, stage_config: dict | None = None,
                 divergence_config: dict | None = None) -> None:
        # scikit-learn's convention: the constructor stores its arguments as given (get_params / clone read them
        # back); fit() resolves them against the defaults into model_config_, sampler_config_, ...
        self.feature_spec = feature_spec
        self.blocks = blocks
        self.model_config = model_config
        self.sampler_config = sampler_config
        self.divergence_draws = divergence_draws
        self.random_seed = random_seed
        self.fit_divergence = fit_divergence
        self.fit_stages = fit_stages
        self.stage_config = stage_config
        self.divergence_config = divergence_config

    name = "bayes_optlaw"

    def get_params(self, deep: bool = False) -> dict:
        """The constructor's arguments, as given (scikit-learn's estimator API; ``deep`` is accepted and ignored:
        no argument is itself an estimator)."""
        return {name: getattr(self, name) for name in CONSTRUCTOR_PARAMETERS}

    def set_params(self, **params) -> "BayesOptLaw":
        """Change constructor arguments (an unknown name is a ValueError); takes effect at the next :meth:`fit`."""
        unknown = sorted(set(params) - set(CONSTRUCTOR_PARAMETERS))
        if unknown:
            raise ValueError(f"BayesOptLaw has no parameter {', '.join(unknown)}; its parameters are "
                             f"{', '.join(CONSTRUCTOR_PARAMETERS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def clone(self) -> "BayesOptLaw":
        """An unfitted law with the same constructor arguments (copies of the config dicts)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def _resolve_configs(self, check_priors: bool = True) -> None:
        """The configs a fit uses (``*_config_``): the defaults updated by the constructor's arguments, with the
        loss law's priors resolved and checked (``check_priors``; a loaded model's saved config already is)."""
        model = {**lm.DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        self.model_config_ = lm.resolved_config(model) if check_priors else model
        self.divergence_config_ = {**div.DEFAULT_DIVERGENCE_CONFIG, **(self.divergence_config or {})}
        self._resolve_stage_configs()

    def _resolve_stage_configs(self) -> None:
        """The sampler's and the stage model's configs (``sampler_config_``, ``stage_config_``): all that
        :meth:`fit_continual` re-reads, so ``law.set_params(sampler_config=...)`` takes effect there too."""
        self.sampler_config_ = {**lm.DEFAULT_SAMPLER_CONFIG, **(self.sampler_config or {})}
        self.stage_config_ = {**ct.DEFAULT_STAGE_CONFIG, **(self.stage_config or {})}

    # ------------------------------------------------------------------ fitting
    def fit(self, runs: "pd.DataFrame | RunSet", progress: Callable[[str], None] | None = None,
            groups: tuple[str, ...] | None = None) -> "BayesOptLaw":
        """Fit on a runs table (validated here into a :class:`~bayes_optlaws.runset.RunSet`, or a run set as it
        is).  Diverged runs inform only the divergence boundary.

        ``groups``: the ``group`` values of the single-stage runs to fit the loss law on (default: ``("main",)``
        when the table has that group — the embedded grid keeps extrapolation checks in another group — else
        every single-stage row).  Continual-training stages (``parent_run_id`` set) of the whole table, whatever
        their group, fit the stage model (:mod:`bayes_optlaws.continual`; the group is their scenario) when
        there are at least ``continual.MIN_STAGE_RUNS`` of them and ``fit_stages`` is on.
        The whole table is kept as ``history_set_`` (its table: ``history_runs_``) so continual-training
        predictions can find their parents; the single-stage rows fitted on as ``train_set_`` (``train_runs_``).
        """
        say = progress or (lambda msg: None)
        t0 = time.perf_counter()
        self._resolve_configs()
        div.recorded_divergence_config(self.divergence_config_)  # its priors and choices checked
        size_scaling.check_mode(self.model_config_.get("new_size"))
        size_scaling.check_lr_exponent(self.model_config_.get("size_step_lr_exponent", 0.0))
        size_scaling.check_reference(self.model_config_.get("size_scaling_reference"),
                                     self.model_config_["priors"]["size_scaling"])
        full = RunSet.of_runs(runs)
        train = full.rows(fit_row_mask(full.table, groups) & ~ct.is_stage(full.table).to_numpy())
        if not len(train):
            raise RunsError("the runs table has no single-stage runs (every row has a parent_run_id); the "
                            "pre-training law needs runs trained from scratch")
        self.history_set_, self.train_set_ = full, train
        self._fitted_range = None  # recomputed from these runs (a refit must not keep an earlier fit's range)
        runs = train.table
        base = self.feature_spec or FeatureSpec(lr_ref=reference_lr(train),
                                                blocks=tuple(self.blocks or FeatureSpec(1.0).blocks))
        say(f"computing segment integrals for {len(runs)} runs")
        train.integrals(base.lr_ref, base.history_escape)
        fit_set = train.rows(self._loss_rows(runs))  # its integrals come along
        ok = fit_set.table
        if len(ok) < 5:
            raise RunsError(f"only {len(ok)} non-diverged runs with a final loss; the loss model needs at least 5")
        ok_int = fit_set.integrals(base.lr_ref, base.history_escape)
        y = np.log(ok["final_loss"].to_numpy(float))
        if self.feature_spec is None:
            say("searching exponent groups (inner 5-fold CV within blocks)")
            spec, self.exponent_search_ = select_exponents(ok_int, y, block_key(ok), base, seed=self.random_seed)
        else:
            spec, self.exponent_search_ = self.feature_spec, None
        self.spec_ = spec
        self.model_config_["covariates"] = cov.resolve(self.model_config_.get("covariates"), ok)
        self.model_config_["group_column"] = cov.resolve_group_column(self.model_config_.get("group_column"), ok)
        try:
            X = self._with_covariates(design_matrix(ok_int, spec), ok, "runs")
        except FeatureError as exc:
            raise exc.named(ok["run_id"].astype(str).tolist(), "run") from None
        standardiser = Standardiser.fit(X)
        y_mean, y_sd = float(y.mean()), float(y.std()) or 1.0
        sizes = sorted(int(s) for s in ok["model_params"].unique())
        self._record_size_scaling_prior(sizes)
        group = np.array([sizes.index(int(s)) for s in ok["model_params"]])
        level, levels = cov.group_index(ok, self._group_column)
        Xs = standardiser.transform(X)
        data = lm.LossData(Xs, (y - y_mean) / y_sd, group, sizes, self.loss_feature_names_,
                           size_covariates(Xs, group, len(sizes), spec.feature_names), level, levels)
        self.noise_floor_ = replicate_noise(runs)
        self.diverged_loss_ = self._diverged_charge(runs, ok)
        self.log_N_center_ = float(np.log(runs["model_params"].to_numpy(float) / 1e9).mean())
        self.log_D_center_ = float(np.log(runs["tokens"].to_numpy(float) / 1e9).mean())
        # one model after another (each samples its chains on every core, see loss_model.nuts_kwargs): running
        # the divergence model in a worker thread beside the loss law (tried) crashed once in PyTensor's prior
        # predictive sampling ("Scalar check failed"), so compiled PyTensor functions are not run concurrently
        how = lm.sampling_summary(data, self.model_config_, self.sampler_config_)
        say(f"sampling the loss model: {len(ok)} runs, {len(sizes)} model sizes, "
            f"{len(self.loss_feature_names_)} terms ({how})")
        self.loss_fit_ = LossLawFit.fit(data, standardiser, y_mean, y_sd, self.model_config_, self.sampler_config_,
                                        self.random_seed)
        _warn(self.loss_fit_.warnings)
        self.size_step_ = self._fit_size_step(fit_set, y)
        self._fit_side_models(train, full, say)
        self.fit_seconds_ = time.perf_counter() - t0
        self.data_hash_ = data_hash(runs)
        self.settings_ = fitted.model_settings(self)
        say(f"done in {self.fit_seconds_:.0f} s")
        return self

    # the loss law's fitted state, by the names of earlier versions (read-only; see loss_law.LossLawFit)
    standardiser_ = property(lambda self: self.loss_fit_.standardiser)
    y_mean_ = property(lambda self: self.loss_fit_.y_mean)
    y_sd_ = property(lambda self: self.loss_fit_.y_sd)
    sizes_ = property(lambda self: self.loss_fit_.sizes)
    levels_ = property(lambda self: self.loss_fit_.levels)
    group_means_ = property(lambda self: self.loss_fit_.group_means)
    loss_idata_ = property(lambda self: self.loss_fit_.idata)
    loss_post_ = property(lambda self: self.loss_fit_.post)
    loss_diagnostics_ = property(lambda self: self.loss_fit_.diagnostics)
    prior_check_ = property(lambda self: self.loss_fit_.prior_check)
    ppc_ = property(lambda self: self.loss_fit_.ppc)
    loo_ = property(lambda self: self.loss_fit_.loo)
    # the training tables of the run sets (train_set_: the single-stage runs the law is fitted on, history_set_:
    # the whole table, where continual-training candidates find their parents)
    train_runs_ = property(lambda self: self.train_set_.table)
    history_runs_ = property(lambda self: self.history_set_.table)
    # ... and the divergence model's (None / NaN without one; see divergence.DivergenceFit)
    div_idata_ = property(lambda self: None if self.div_fit_ is None else self.div_fit_.idata)
    div_post_ = property(lambda self: None if self.div_fit_ is None else self.div_fit_.post)
    div_diagnostics_ = property(lambda self: None if self.div_fit_ is None else self.div_fit_.diagnostics)
    div_log_c_center_ = property(lambda self: None if self.div_fit_ is None else self.div_fit_.log_c_center)
    unstable_excess_ = property(lambda self: float("nan") if self.div_fit_ is None else self.div_fit_.unstable_excess)

    def _diverged_charge(self, runs: pd.DataFrame, ok: pd.DataFrame) -> float:
        """What a diverged run is charged (nats): the mean final loss of the diverged training runs that logged one
        (else the worst loss of a run that trained), at most the loss ceiling (``ln(vocab_size)`` when the runs give
        it: a run logged far above it, e.g. an importer's 55-nat curve, is charged no more than an untrained
        model's loss)."""
        logged = runs.loc[runs["diverged"].astype(bool), "final_loss"].astype(float)
        logged = logged[np.isfinite(logged)]
        charge = float(logged.mean()) if len(logged) else float(ok["final_loss"].max())
        return min(charge, self.fitted_range_.loss_ceiling)

    def _record_size_scaling_prior(self, sizes: list[int]) -> None:
        """Set ``model_config_``'s size-step prior (``priors["size_scaling"]``) and ``size_scaling_reference`` from
        the fitted ``sizes`` (parameters): a prior of the user's own, else that of the reference
        (:func:`~bayes_optlaws.size_scaling.size_scaling_prior`; by default LM-scale studies for a law fitted on one
        size of at least 10M parameters, Chinchilla otherwise)."""
        reference, prior = size_scaling.size_scaling_prior(self.model_config_.get("size_scaling_reference"), sizes,
                                                           self.model_config_["priors"]["size_scaling"])
        self.model_config_["size_scaling_reference"] = reference
        self.model_config_["priors"]["size_scaling"] = prior

    def _fit_size_step(self, ok: RunSet, log_loss: np.ndarray) -> size_scaling.SizeStep:
        """Backtest of the nearest-size rule on the fitted sizes: for each adjacent pair, the law evaluated at the
        smaller size for every run of the larger one, and the factor on Chinchilla's step that takes it to the
        observed log losses (:class:`~bayes_optlaws.size_scaling.SizeStep`); the law at the smaller size sees the
        runs' LRs times ``(larger / smaller)^alpha``, alpha the LR-transfer exponent (:meth:`_lr_exponent`; 0 by
        default)."""
        sizes = ok.table["model_params"].to_numpy()
        pairs = list(zip(self.sizes_[:-1], self.sizes_[1:]))
        # per pair, the larger size's runs: at their own size the run set's integrals are the fit's (carried by
        # rows()); at the smaller one they are computed once, and an LR scaling of them is exact and cheap
        upper_runs = [ok.rows(sizes == upper) for _, upper in pairs]
        at_lower = [runs.assign(model_params=lower) for runs, (lower, _) in zip(upper_runs, pairs)]

        def law_from_lower(alpha: float) -> list[np.ndarray]:
            return [self._law_log_loss(runs, (upper / lower) ** alpha)
                    for runs, (lower, upper) in zip(at_lower, pairs)]

        alpha, profile = self._lr_exponent(law_from_lower, [log_loss[sizes == upper] for _, upper in pairs],
                                           [runs.table["tokens"].to_numpy() for runs in upper_runs])
        backtests = []
        by_gap = bool(self.model_config_.get("size_step_error_gap", False))
        for (lower, upper), runs, low, from_lower in zip(pairs, upper_runs, at_lower, law_from_lower(alpha)):
            rows = sizes == upper
            tokens = runs.table["tokens"].to_numpy(float)
            backtests.append({"from": lower, "to": upper, "observed": log_loss[rows] - from_lower,
                              "chinchilla": size_scaling.chinchilla_log_shift(lower, upper, tokens),
                              "log_tokens": np.log(tokens), "in_sample": log_loss[rows] - self._law_log_loss(runs)})
            if by_gap:
                backtests[-1]["gap"] = self._lr_gap(low, (upper / lower) ** alpha)
        prior = lm.loss_priors(self.model_config_)["size_step_token_slope"]
        step = size_scaling.SizeStep.from_backtests(backtests, prior)
        step.lr_exponent, step.lr_exponent_profile = alpha, profile
        return step

    def _lr_exponent(self, law_from_lower, observed: list[np.ndarray],
                     blocks: list[np.ndarray]) -> tuple[float, dict | None]:
        """The LR-transfer exponent of the nearest-size rule and the search's profile: the number
        ``model_config["size_step_lr_exponent"]`` (no profile), or for ``"learned"`` the backtests'
        :func:`~bayes_optlaws.size_scaling.lr_exponent_search` (0 without a pair of fitted sizes)."""
        setting = size_scaling.check_lr_exponent(self.model_config_.get("size_step_lr_exponent", 0.0))
        if setting != "learned":
            return setting, None
        if not observed:
            return 0.0, None
        return size_scaling.lr_exponent_search(law_from_lower, observed, blocks)

    def _lr_gap(self, runs: RunSet, lr_factor=1.0, history: "RunSet | None" = None) -> np.ndarray:
        """Per run, its **LR gap**: how far the law's posterior-mean log loss of the run lies above the lowest the
        law gives the same schedule scaled to another peak LR (by :data:`~bayes_optlaws.size_scaling.
        GAP_LR_MULTIPLIERS`, kept inside the fitted peak-LR range) — nats of log loss, 0 at the law's best LR.
        ``runs`` at fitted sizes, their LRs times ``lr_factor`` (a number or one per run: the LR transfer);
        ``history``: where continual rows find their earlier stages."""
        factor = np.broadcast_to(np.asarray(lr_factor, float), (len(runs.table),))
        peak = runs.peak_lr * factor
        low, high = self.fitted_range_.low["lr"] * (1 - 1e-9), self.fitted_range_.high["lr"] * (1 + 1e-9)
        own = self._law_log_loss(runs, factor, history)
        best = own.copy()
        for c in size_scaling.GAP_LR_MULTIPLIERS:
            inside = (peak * c >= low) & (peak * c <= high)
            if inside.any():
                best = np.where(inside, np.minimum(best, self._law_log_loss(runs, factor * c, history)), best)
        return np.maximum(own - best, 0.0)

    def _scaled_integrals(self, runs: RunSet, lr_factor=1.0, history: "RunSet | None" = None) -> pd.DataFrame:
        """The segment integrals of ``runs`` with their LRs multiplied by ``lr_factor`` (a number or one per run;
        a continual stage whose escape integrals are normalised by its own peak LR keeps them); ``history``:
        where continual rows find their earlier stages."""
        integrals = runs.integrals(self.spec_.lr_ref, self.spec_.history_escape, history)
        if np.all(np.asarray(lr_factor) == 1.0):
            return integrals
        invariant = ct.is_stage(runs.table).to_numpy() if self.spec_.history_escape == "peak" else None
        return with_lr_scaled(integrals, lr_factor, invariant)

    def _law_log_loss(self, runs: RunSet, lr_factor=1.0, history: "RunSet | None" = None) -> np.ndarray:
        """Posterior-mean log loss of the pre-training law for ``runs`` at their ``model_params`` (which must be
        fitted sizes), their LRs multiplied by ``lr_factor`` (a number or one per run; see
        :meth:`_scaled_integrals`)."""
        return self._law_log_loss_draws(runs, lr_factor, history).mean(axis=0)

    def _law_log_loss_draws(self, runs: RunSet, lr_factor=1.0, history: "RunSet | None" = None) -> np.ndarray:
        """Draws (samples × runs) of the pre-training law's mean log loss for ``runs`` (LRs times ``lr_factor``)."""
        X_raw = design_matrix(self._scaled_integrals(runs, lr_factor, history), self.spec_)
        log_mu, _ = self._pretraining_log_loss(X_raw, runs.table, np.random.default_rng(self.random_seed + 11),
                                               noise=False)
        return log_mu

    def _fit_side_models(self, runs: RunSet, full: RunSet, say) -> None:
        """The divergence model (on ``runs``) and the stage model (on the stages of ``full``), when there is
        something to fit; their warnings come from this thread."""
        self.div_fit_ = None
        self.stage_fit_ = None
        if self.fit_divergence and runs.table["diverged"].any() and (~runs.table["diverged"]).any():
            # an unstable run is predicted as the law's loss plus the excess, so the excess is measured above it
            # (the law's prediction of every training run is needed only then)
            law_loss = (np.exp(self._law_log_loss_draws(runs)).mean(axis=0)
                        if self.divergence_config_["unstable_excess_above"] == "law" else None)
            self.div_fit_ = div.fit_divergence(runs, self.spec_.lr_ref, self.divergence_config_, self.sampler_config_,
                                               random_seed=self.random_seed + 1, draws=self.divergence_draws, say=say,
                                               emit_warnings=False, law_loss=law_loss)
            _warn(self.div_fit_.warnings)
        elif self.fit_divergence:
            warn_user("the runs table has no diverged runs (or only diverged runs): the divergence boundary "
                      "cannot be learned and P(diverge) will be reported as unknown (NaN)")
        if self.fit_stages and int(ct.is_stage(full.table).sum()) >= ct.MIN_STAGE_RUNS:
            self.stage_fit_, self.stage_runs_ = self._fit_stage_model(full, say)
            _warn(self.stage_fit_.warnings)

    @property
    def covariates_(self) -> list[str]:
        """The covariates the fitted law uses (resolved at fit time; a model saved before covariates has none)."""
        names = self.model_config_.get("covariates")
        return list(names) if isinstance(names, (list, tuple)) else []

    @property
    def _group_column(self) -> str | None:
        """The pooled group column (resolved at fit time; ``"auto"`` left by an older saved model means none)."""
        col = self.model_config_.get("group_column")
        return None if col in (None, "auto") else col

    @property
    def loss_feature_names_(self) -> list[str]:
        """The loss law's terms: the Opt-Laws features of ``spec_`` and then the covariates (if any)."""
        return list(self.spec_.feature_names) + self.covariates_

    def _with_covariates(self, X: np.ndarray, table: pd.DataFrame, where: str) -> np.ndarray:
        """The Opt-Laws feature matrix with the covariate columns of :mod:`bayes_optlaws.covariates` appended."""
        names = self.covariates_
        return np.column_stack([X, cov.covariate_matrix(table, names, where)]) if names else X

    def _loss_rows(self, runs: pd.DataFrame) -> np.ndarray:
        """Rows the loss law is fitted on: not diverged, a finite final loss and, with the divergence config's
        ``exclude_unstable`` (default), not unstable (:func:`instability.label_outcomes`); the unstable runs left
        out are recorded in ``excluded_unstable_`` (run ids)."""
        keep = ~runs["diverged"].to_numpy(bool) & np.isfinite(runs["final_loss"].to_numpy(float))
        self.excluded_unstable_ = []
        if self.divergence_config_["exclude_unstable"]:
            unstable = ins.label_outcomes(runs, self.divergence_config_["unstable_gap"]) == "unstable"
            self.excluded_unstable_ = runs.loc[keep & unstable, "run_id"].astype(str).tolist()
            keep &= ~unstable
        return keep

    def fit_continual(self, runs: pd.DataFrame, progress: Callable[[str], None] | None = None) -> "BayesOptLaw":
        """(Re)fit only the stage model on the continual-training rows of ``runs``, with this law's features.

        Their parents are looked up in ``runs`` itself.  Diverged stages are left out.  Used by :meth:`fit` and
        by leave-one-stage-out evaluation (the pre-training law stays as it is).
        """
        self._check_fitted()
        self._resolve_stage_configs()
        self.stage_fit_, self.stage_runs_ = self._fit_stage_model(RunSet.of_runs(runs), progress or (lambda m: None))
        _warn(self.stage_fit_.warnings)
        self.settings_ = fitted.model_settings(self)
        return self

    def _fit_stage_model(self, full: RunSet, say) -> tuple[ct.StageFit, pd.DataFrame]:
        """The stage model on the non-diverged continual-training rows of a run set (parents looked up in the
        set itself) and those rows; needs only ``spec_``."""
        table = full.table
        stage_set = full.rows(ct.is_stage(table) & ~table["diverged"] & np.isfinite(table["final_loss"]))
        stages = stage_set.table
        if len(stages) < ct.MIN_STAGE_RUNS:
            raise RunsError(f"only {len(stages)} non-diverged continual-training rows (parent_run_id set); the "
                            f"stage model needs at least {ct.MIN_STAGE_RUNS}")
        X_raw = design_matrix(stage_set.integrals(self.spec_.lr_ref, self.spec_.history_escape, full), self.spec_)
        scen = ct.scenario_labels(stages)
        say(f"sampling the stage model: {len(stages)} continual-training runs, scenarios "
            f"{', '.join(sorted(set(scen)))} (4 chains, nutpie)")
        fit = ct.fit_stage_model(X_raw, np.log(stages["final_loss"].to_numpy(float)),
                                 stages["parent_run_id"].astype(str).to_numpy(), scen, self.spec_.feature_names,
                                 self.stage_config_, self.sampler_config_, random_seed=self.random_seed + 2)
        return fit, stages

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if getattr(self, "loss_fit_", None) is None:
            raise RuntimeError("this BayesOptLaw is not fitted yet; call fit(runs) or BayesOptLaw.load(path)")

    def predict_draws(self, candidates: "pd.DataFrame | RunSet", *, model_params=None, tokens_per_step=None,
                      parent_run_id: str | None = None, scenario: str | None = None,
                      history_runs: "pd.DataFrame | RunSet | None" = None,
                      random_seed: int | None = None) -> PredictionDraws:
        """Joint posterior predictive draws for candidate schedules at a target size (vectorised numpy).

        ``candidates``: a table with ``name, schedule`` (+ optional ``model_params``, ``tokens_per_step``,
        ``parent_run_id``, ``scenario``), validated here, or a :class:`~bayes_optlaws.runset.RunSet` of them
        (validated already).  With ``parent_run_id`` the history (earlier stages) is looked up in
        ``history_runs`` (default: the runs table the model was fitted from) and, when the model has a stage
        model, the candidate is predicted by it in ``scenario`` (a ``group`` label of its stage runs, e.g.
        ``weak_shift``); without one, by the pre-training law with history-aware features (paper §6).
        """
        self._check_fitted()
        cand = RunSet.of_candidates(candidates).with_target(model_params, tokens_per_step, parent_run_id)
        hist = self.history_set_ if history_runs is None else RunSet.of_table(history_runs, "history runs")
        for message in ct.check_parents(cand.table, hist.table):
            warn_user(message)
        if scenario is not None and not ct.is_stage(cand.table).any():
            warn_user(f"scenario {scenario!r} is ignored: no candidate continues an earlier run (give "
                      "--parent / parent_run_id, or --history, to predict a continuation)")
        seed = self.random_seed + 7 if random_seed is None else random_seed
        S = self.loss_post_["intercept"].shape[0]
        # every per-schedule (pure Python) step first: integrals and the divergence model's schedule grids ...
        try:
            X_raw = design_matrix(cand.integrals(self.spec_.lr_ref, self.spec_.history_escape, hist), self.spec_)
        except FeatureError as exc:
            raise exc.named(cand.names, "candidate") from None
        law_cand, X_law = self._size_anchored(cand, hist, X_raw)
        self._warn_anchor_tokens(cand, law_cand)
        gaps = self._candidate_gaps(law_cand, cand, hist)
        div_inputs = self.div_fit_.inputs(cand) if self._has_divergence_model() else cand
        # ... then the two numpy parts at once: the divergence / instability model is independent of the loss law
        # given the candidates, so it runs in a second thread (numpy releases the GIL; a Python loop beside it
        # would hold the GIL between its numpy calls) with its own seeded generator, so the draws do not depend
        # on which thread finishes first
        with ThreadPoolExecutor(max_workers=1) as pool:
            outcomes = pool.submit(self._p_outcomes, div_inputs, S, np.random.default_rng([seed, 1]))
            log_mu, log_noisy, extrap = self._log_loss_draws(cand, X_raw, law_cand, X_law, scenario,
                                                             np.random.default_rng(seed), S, gaps)
            p_div, p_unst = outcomes.result()
        loss = np.exp(log_mu)
        excess = self._unstable_excess(cand, loss, p_unst, np.random.default_rng([seed, 2]))
        return PredictionDraws(cand.names, loss, np.exp(log_noisy), p_div, self.diverged_loss_, p_unst, excess,
                               extrap)

    def _nearest_size_rule(self) -> bool:
        """Whether unseen sizes are predicted at the nearest fitted size plus the size step of
        :mod:`bayes_optlaws.size_scaling` (``model_config["new_size"] == "nearest_size"``; a model saved before
        this option predicts them from its features)."""
        return size_scaling.check_mode(self.model_config_.get("new_size", "features")) == "nearest_size"

    def _size_anchored(self, cand: RunSet, hist: RunSet, X_raw: np.ndarray) -> tuple[RunSet, np.ndarray]:
        """The pre-training law's candidates and raw design: with the nearest-size rule, a candidate of a size
        the law was not fitted on is evaluated at the nearest fitted size (in log N); else ``(cand, X_raw)``."""
        own = cand.table["model_params"].to_numpy(float)
        nearest = size_scaling.nearest_fitted_size(self.sizes_, own)
        if not self._nearest_size_rule() or np.array_equal(nearest, own):
            return cand, X_raw
        anchored = cand.assign(model_params=nearest.astype("int64"))
        step = self.size_step_ if self.size_step_ is not None else size_scaling.SizeStep()
        # the LR transfer: a larger model trains like the fitted one at a scaled LR (factor 1: none)
        return anchored, design_matrix(self._scaled_integrals(anchored, step.lr_factor(nearest, own), hist),
                                       self.spec_)

    def _warn_anchor_tokens(self, cand: RunSet, law_cand: RunSet) -> None:
        """Warn about single-stage candidates that :meth:`_size_anchored` evaluates at a fitted size trained at
        other token counts (:func:`~bayes_optlaws.size_scaling.anchor_token_messages`; ``cand``: at its target, with
        ``tokens``; a continuation's tokens include its history, which the fitted runs' ranges do not, so
        continuations are left out)."""
        single = ~ct.is_stage(cand.table).to_numpy()
        if not single.any():
            return
        own = cand.table[single]
        for message in size_scaling.anchor_token_messages(
                law_cand.table["model_params"].to_numpy(float)[single], own["model_params"].to_numpy(float),
                own["tokens"].to_numpy(float), own["run_id"].astype(str).tolist(), self._token_ranges()):
            warn_user(message, ExtrapolationWarning)

    def _token_ranges(self) -> dict[int, tuple[float, float]]:
        """Per fitted size (parameters), the least and most tokens of its single-stage training runs that trained
        (not diverged, a finite final loss)."""
        runs = self.train_runs_
        ok = runs[~runs["diverged"].astype(bool) & np.isfinite(runs["final_loss"].astype(float))]
        span = ok.groupby("model_params")["tokens"].agg(["min", "max"])
        return {int(n): (float(r["min"]), float(r["max"])) for n, r in span.iterrows()}

    def _candidate_gaps(self, law_set: RunSet, cand_set: RunSet, hist: RunSet) -> np.ndarray | None:
        """Per candidate, its LR gap at the size the law evaluates it at (:meth:`_lr_gap`, with the LR transfer
        of :meth:`_size_anchored`), which sets its share of the size step's error; ``None`` when no candidate
        changes size or the size step's error does not depend on it (``gap_slope`` 0)."""
        step = self.size_step_
        own, law = cand_set.table["model_params"], law_set.table["model_params"]
        if step is None or step.gap_slope == 0 or law.equals(own):
            return None
        return self._lr_gap(law_set, step.lr_factor(law.to_numpy(float), own.to_numpy(float)), hist)

    def _log_loss_draws(self, cand_set: RunSet, X_raw: np.ndarray, law_set: RunSet, X_law: np.ndarray,
                        scenario: str | None, rng, S: int, gaps: np.ndarray | None = None):
        """(mean, new-run) log-loss draws (S × candidates) from the pre-training law (on ``law_cand`` /
        ``X_law``, see :meth:`_size_anchored`, plus the size step to each candidate's own size, its error scaled
        by the candidates' LR ``gaps``) or the stage model (on the candidates' raw design ``X_raw``), held inside
        the physical bounds, and the candidates' extrapolation factors."""
        cand, law_cand = cand_set.table, law_set.table
        log_mu, log_noisy = np.empty((S, len(cand))), np.empty((S, len(cand)))
        staged = ct.is_stage(cand).to_numpy() & (self.stage_fit_ is not None)
        pre = np.flatnonzero(~staged)
        if pre.size:
            if len(self.sizes_) < 2 and (cand["model_params"].iloc[pre] != self.sizes_[0]).any():
                warn_user(self._one_size_message(), ExtrapolationWarning)
            log_mu[:, pre], log_noisy[:, pre] = self._pretraining_log_loss(X_law[pre], law_cand.iloc[pre], rng)
            if not law_cand["model_params"].equals(cand["model_params"]):
                shift = self._size_step_draws(law_cand.iloc[pre], cand.iloc[pre], S, rng,
                                              None if gaps is None else gaps[pre])
                log_mu[:, pre] += shift
                log_noisy[:, pre] += shift
        cols = np.flatnonzero(staged)
        if cols.size:
            scen = self._scenarios(cand.iloc[cols], scenario)
            by_feature = self.stage_fit_.outside_by_feature(X_raw[cols])
            far = by_feature.any(axis=1)
            if far.any():
                names = list(cand["run_id"].iloc[cols[far]])
                features = [f for f, out in zip(self.spec_.feature_names, by_feature[far].any(axis=0)) if out]
                warn_user(f"{len(names)} continual candidate(s) ({shown_names(names, limit=4)}) lie outside the "
                          f"range of the {self.stage_fit_.n_runs} stage runs the stage model was fitted on, in the "
                          f"feature(s) {', '.join(features)} (e.g. a warmup, peak LR or length it has not "
                          "seen): its predictions there are extrapolations; add stage runs near them")
            m, n = self.stage_fit_.predict_log_loss(X_raw[cols], cand["parent_run_id"].iloc[cols].astype(str),
                                                    scen, rng)
            if m.shape[0] != S:  # pair stage-model draws with loss-model draws
                idx = rng.choice(m.shape[0], size=S, replace=m.shape[0] < S)
                m, n = m[idx], n[idx]
            log_mu[:, cols], log_noisy[:, cols] = m, n
        return self._bounded(cand_set, log_mu, log_noisy)

    @property
    def fitted_range_(self) -> FittedRange:
        """N, D, peak LR and tokens-per-step range of the training runs, and the loss ceiling (recomputed from
        ``train_runs_``, so a loaded model has the same)."""
        if getattr(self, "_fitted_range", None) is None:
            self._fitted_range = FittedRange.from_runs(self.train_set_)
        return self._fitted_range

    def _bounded(self, cand: RunSet, log_mu: np.ndarray, log_noisy: np.ndarray):
        """Log-loss draws held inside the physical bounds, the extrapolation factors of every candidate, and a
        warning for candidates far outside the fitted range (:mod:`bayes_optlaws.extrapolation`)."""
        rng_ = self.fitted_range_
        factors = rng_.factors(cand)
        rng_.warn_far(factors, cand.names)
        rng_.warn_bounded(log_mu, cand.names)
        extrap = {col: factors[col].to_numpy(float) for col in factors.columns}
        return rng_.bound_log_loss(log_mu), rng_.bound_log_loss(log_noisy), extrap

    def _pretraining_log_loss(self, X_raw: np.ndarray, cand: pd.DataFrame, rng,
                              noise: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Draws of (mean, new-run) log loss from the pre-training law (samples × rows); ``noise=False``: the
        mean draws only (``None`` for the new-run ones)."""
        level, _ = cov.group_index(cand, self._group_column, self.levels_, "candidates")
        return self.loss_fit_.predict_log_loss(self._with_covariates(X_raw, cand, "candidates"),
                                               cand["model_params"].to_numpy(), level, self.model_config_, rng,
                                               noise)

    def _size_step_draws(self, law_cand: pd.DataFrame, cand: pd.DataFrame, S: int, rng,
                         gaps: np.ndarray | None = None) -> np.ndarray:
        """Draws (S × candidates) of the log-loss change from the size each candidate was evaluated at to its
        own size, by the size-scaling prior (0 where they are the same); ``gaps``: the candidates' LR gaps
        (:meth:`_lr_gap`; ``None``: every candidate the backtests' average error)."""
        priors = lm.loss_priors(self.model_config_)
        step = self.size_step_ if self.size_step_ is not None else size_scaling.SizeStep()
        factor = step.factor_draws_at(priors["size_scaling"], priors["size_step_spread"],
                                      priors["size_step_token_slope"], np.log(cand["tokens"].to_numpy(float)), S, rng)
        shift = size_scaling.size_shift_draws(factor, law_cand["model_params"].to_numpy(float),
                                              cand["model_params"].to_numpy(float), cand["tokens"].to_numpy(float))
        # each configuration's own step error, beyond the shared factor, growing with the step's length
        return shift + step.error_draws(law_cand["model_params"].to_numpy(float), cand["model_params"].to_numpy(float),
                                        S, rng, gaps)

    def _one_size_message(self) -> str:
        """The warning for predictions at another size by a law fitted on one size."""
        head = (f"the law was fitted on one model size ({self.sizes_[0]:,} parameters): how the loss changes with "
                "size is not learned from these data, so ")
        if self._nearest_size_rule():
            prior = size_scaling.describe_prior(lm.loss_priors(self.model_config_)["size_scaling"],
                                                self.model_config_.get("size_scaling_reference"))
            return head + ("predictions at another size take the size step from Chinchilla's loss surface "
                           f"(Hoffmann et al. 2022) times an uncertain factor ({prior}), with the schedule's "
                           "effect at the fitted size; fit on at least two sizes to learn it")
        return head + ("predictions at another size rest on the feature form alone and their intervals do not "
                       "include that uncertainty (new_size='features'); fit on at least two sizes")

    def _scenarios(self, cand: pd.DataFrame, scenario: str | None) -> list[str]:
        """Scenario per staged candidate: the argument, else the candidate's ``scenario`` column, else the stage
        model's only scenario; an unknown one is predicted as a new scenario (with a warning)."""
        known = self.stage_fit_.scenarios
        if scenario is not None:
            out = [str(scenario)] * len(cand)
        elif "scenario" in cand.columns and cand["scenario"].notna().all():
            out = cand["scenario"].astype(str).tolist()
        elif len(known) == 1:
            out = [known[0]] * len(cand)
        else:
            out = ["(unspecified)"] * len(cand)
        unknown = sorted(set(out) - set(known))
        if unknown:
            warn_user(f"continual scenario {', '.join(unknown)} is not one the stage model was fitted on "
                      f"({', '.join(known)}): predicted as a new scenario, with wide intervals and an "
                      f"uncertain order; pass scenario= (CLI: --scenario) to use one of them")
        return out

    def _has_divergence_model(self) -> bool:
        return self.div_fit_ is not None and self.div_post_ is not None

    def _p_outcomes(self, cand, n_samples: int, rng) -> tuple[np.ndarray, np.ndarray | None]:
        """Draws (n_samples × candidates) of P(diverge) (NaN without a divergence model) and P(unstable)
        (``None`` when the model has no unstable outcome), paired with the loss draws by one resampling.
        ``cand``: a candidate table or (with a divergence model) its
        :class:`~bayes_optlaws.divergence.DivergenceInputs`."""
        if not self._has_divergence_model():
            return np.full((n_samples, len(cand)), np.nan), None
        p_div, p_unst = self.div_fit_.predict(cand, rng)
        if p_div.shape[0] != n_samples:  # pair divergence draws with loss draws (independent posteriors)
            idx = rng.choice(p_div.shape[0], size=n_samples, replace=p_div.shape[0] < n_samples)
            p_div, p_unst = p_div[idx], p_unst[idx]
        return p_div, (None if np.isnan(p_unst).all() else p_unst)

    def _unstable_excess(self, cand: RunSet, loss: np.ndarray, p_unst: np.ndarray | None,
                         rng: np.random.Generator) -> "float | np.ndarray":
        """The excess of an unstable outcome (nats) for :class:`PredictionDraws`: per draw and candidate from the
        divergence model's unstable-loss regression (:mod:`bayes_optlaws.unstable_loss`) when it has one, else
        the fixed ``unstable_excess_``; 0 when the model has no unstable outcome.  The regression's excess is
        capped so that an unstable run never ends above ``diverged_loss_``, what a diverged run is charged (far
        outside the fitted sizes its plateau can extrapolate above it: at 1e12 parameters on the default grid).
        The fixed excess (``divergence_config["unstable_loss"] = "excess"``) is one number measured on the
        training runs and is not capped: it does not extrapolate."""
        level = None if self.div_fit_ is None else self.div_fit_.unstable_level
        if p_unst is not None and level is not None:
            return np.minimum(level.excess_draws(cand, loss, rng), np.maximum(self.diverged_loss_ - loss, 0.0))
        value = self.unstable_excess_
        return float(value) if np.isfinite(value) else 0.0

    def predict(self, runs: pd.DataFrame, **kwargs) -> np.ndarray:
        """Posterior mean of the final loss (nats) for each row (the evaluation's point prediction)."""
        return self.predict_draws(runs, **kwargs).loss.mean(axis=0)

    # ------------------------------------------------------------------ persistence
    def save(self, path, force: bool = False) -> Path:
        return fitted.save_model(self, path, force=force)

    @classmethod
    def load(cls, path) -> "BayesOptLaw":
        return fitted.load_model(path)


#: the arguments of ``BayesOptLaw(...)``, in order: what :meth:`BayesOptLaw.get_params` returns
CONSTRUCTOR_PARAMETERS = tuple(name for name in inspect.signature(BayesOptLaw.__init__).parameters if name != "self")


def _warn(messages: list[str]) -> None:
    """Emit sampler / predictive-check messages as ConvergenceWarnings (from the fitting thread)."""
    for msg in messages:
        warn_user(msg, lm.ConvergenceWarning)


def fit_row_mask(runs: pd.DataFrame, groups: tuple[str, ...] | None = None) -> np.ndarray:
    """Which rows of a runs table the law is fitted on: those whose ``group`` is in ``groups`` (default:
    "main" when present, else all rows; a row without a group always)."""
    if "group" not in runs.columns:
        return np.ones(len(runs), bool)
    if groups is None:
        if not (runs["group"] == "main").any():
            return np.ones(len(runs), bool)
        groups = ("main",)
    keep = (runs["group"].isin(list(groups)) | runs["group"].isna()).to_numpy()
    if not keep.any():
        raise RunsError(f"no runs in group(s) {', '.join(groups)}; the table has groups "
                        f"{', '.join(sorted(map(str, runs['group'].dropna().unique())))}")
    return keep


def size_covariates(X: np.ndarray, group: np.ndarray, n_sizes: int, feature_names: list[str]) -> np.ndarray | None:
    """Per-size value of the pure-size feature ``N^-ps`` (standardised), if the scale block is in the model."""
    if "N^-ps" not in feature_names or n_sizes < 2:
        return None
    col = X[:, feature_names.index("N^-ps")]
    return np.array([[col[group == g].mean()] for g in range(n_sizes)])


__all__ = ["BayesOptLaw", "PredictionDraws", "replicate_noise", "block_key", "data_hash", "model_id",
           "__version__"]
