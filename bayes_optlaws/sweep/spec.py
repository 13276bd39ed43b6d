"""Sweep spec files (TOML) and their expansion into run configurations.

A spec names model shapes, schedule templates and a list of grids; each grid is the Cartesian product of its
list-valued keys.  Example (see ``data/specs/`` for the real ones)::

    name = "demo"
    batch_size = 32          # sequences per step
    seq_len = 128            # tokens (bytes) per sequence -> tokens_per_step = 4096
    log_every = 10           # train loss / applied LR recorded every 10 steps (one jitted chunk)
    eval_points = 20         # periodic validation evaluations per run
    eval_seqs = 1024         # final validation loss on this many fixed held-out sequences
    periodic_eval_seqs = 256 # periodic validation on the first 256 of them

    [models]
    S1 = { d = 32, layers = 2, heads = 2 }

    [schedules]
    linear = { family = "linear" }
    wsd20 = { family = "wsd", cooldown = 0.2, cooldown_shape = "linear" }
    poly = { family = "polygon", t2 = 0.3, t3 = 0.7, mid_ratio = 0.5 }   # t1 = the warmup fraction

    [[grid]]
    block = "S1-2k"          # free label (x_block)
    group = "main"           # runs-table group
    corpus = "main"          # corpus name (bayes_optlaws.sweep.corpus)
    slice = [0.0, 0.85]      # fraction of the corpus' train split that this grid reads
    models = ["S1"]
    steps = [2000]
    schedules = ["linear"]
    peak_lr = [0.004, 0.016]
    warmup = [0.0, 0.05]     # fractions of the run's steps
    seeds = [0]

    [[stage]]                # continual training: children of one parent run
    block = "weak"
    group = "weak_shift"
    parent = { model = "S1", steps = 2000, schedule = "linear", peak_lr = 0.008, warmup = 0.05, seed = 0 }
    corpus = "main"
    slice = [0.85, 1.0]
    steps = [1000]
    schedules = ["linear", "wsd20"]
    peak_lr = [0.002, 0.008]
    warmup = [0.05]

Fractions (warmup, cooldown, t2, t3) become whole steps with ``round(fraction * steps)``.  ``run_id`` is derived
from the training content of a run (shape, batch, steps, schedule, seed, corpus slice, parent, evaluation set,
``tag``), never from labels, so it is stable across spec edits that do not change the run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..runs import RunsError, read_toml
from ..schedules import Schedule, ScheduleError

DEFAULTS = {"batch_size": 32, "seq_len": 128, "log_every": 10, "eval_points": 20, "eval_seqs": 1024,
            "periodic_eval_seqs": 256, "precision": "highest", "eval_seed": 1234, "tag": ""}
DEFAULT_SLICE = (0.0, 0.85)


@dataclass(frozen=True)
class RunConfig:
    """One training run (or stage).  ``schedule`` is the runs-format JSON spec in steps of this stage."""

    d: int
    layers: int
    heads: int
    seq_len: int
    batch_size: int
    steps: int
    schedule: dict
    seed: int
    corpus: str
    slice: tuple[float, float]
    parent: "RunConfig | None" = None
    log_every: int = 10
    eval_every: int = 100
    eval_seqs: int = 1024
    periodic_eval_seqs: int = 256
    eval_seed: int = 1234
    precision: str = "highest"
    tag: str = ""
    # labels (not part of the run_id)
    group: str = "main"
    block: str = ""
    model_name: str = ""
    template: str = ""
    warmup_frac: float | None = None

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    def content(self) -> dict:
        """The fields that determine training and the final loss (the run_id is a hash of this)."""
        c = {"d": self.d, "layers": self.layers, "heads": self.heads, "seq_len": self.seq_len,
             "batch_size": self.batch_size, "steps": self.steps, "schedule": self.schedule, "seed": self.seed,
             "corpus": self.corpus, "slice": [float(self.slice[0]), float(self.slice[1])],
             "parent": self.parent.run_id if self.parent else None, "eval_seqs": self.eval_seqs,
             "eval_seed": self.eval_seed, "precision": self.precision}
        if self.tag:
            c["tag"] = self.tag
        return c

    @property
    def run_id(self) -> str:
        h = hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:10]
        return f"d{self.d}L{self.layers}-{self.steps}-{h}"

    @property
    def family(self) -> str:
        fam = self.schedule.get("family", "knots")
        if fam == "wsd":
            return f"wsd-{self.schedule.get('cooldown_shape', 'linear')}"
        return fam

    def group_key(self) -> tuple:
        """Runs with the same key can be trained together in one vmapped group."""
        return (self.d, self.layers, self.heads, self.seq_len, self.batch_size, self.steps, self.corpus,
                tuple(self.slice), self.parent.run_id if self.parent else None, self.log_every, self.eval_every,
                self.eval_seqs, self.periodic_eval_seqs, self.eval_seed, self.precision)

    def to_json(self) -> dict:
        d = asdict(self)
        d["parent"] = self.parent.to_json() if self.parent else None
        d["slice"] = list(self.slice)
        d["run_id"] = self.run_id
        return d

    @classmethod
    def from_json(cls, d: dict) -> "RunConfig":
        d = dict(d)
        d.pop("run_id", None)
        parent = cls.from_json(d["parent"]) if d.get("parent") else None
        d["parent"] = parent
        d["slice"] = tuple(d["slice"])
        return cls(**d)


def _steps(frac: float, total: int) -> int:
    return int(round(float(frac) * total))


def make_schedule(template: dict, peak_lr: float, warmup_frac: float, total: int) -> dict:
    """A runs-format family spec (absolute steps) from a template with fractions."""
    t = dict(template)
    fam = t.pop("family", None)
    if fam is None:
        raise RunsError(f"schedule template {template} has no 'family'")
    w = _steps(warmup_frac, total)
    if fam in ("linear", "cosine"):
        spec = {"family": fam, "peak_lr": peak_lr, "warmup": w, "total": total}
        if "final_ratio" in t:
            spec["final_lr"] = peak_lr * float(t["final_ratio"])
    elif fam == "constant":
        spec = {"family": "constant", "peak_lr": peak_lr, "warmup": w, "total": total}
    elif fam == "wsd":
        spec = {"family": "wsd", "peak_lr": peak_lr, "warmup": w, "total": total,
                "cooldown": _steps(t["cooldown"], total), "cooldown_shape": t.get("cooldown_shape", "linear")}
    elif fam == "polygon":
        t1 = w
        t2 = max(t1, _steps(t["t2"], total))
        t3 = max(t2, _steps(t["t3"], total))
        spec = {"family": "polygon", "peak_lr": peak_lr, "t1": t1, "t2": t2, "t3": t3,
                "mid_lr": peak_lr * float(t["mid_ratio"]), "total": total}
    else:
        raise RunsError(f"unknown schedule family {fam!r} in template {template}")
    try:
        Schedule.from_spec(spec)
    except ScheduleError as exc:
        raise RunsError(f"schedule template {template} at peak {peak_lr}, warmup {warmup_frac}, {total} steps: "
                        f"{exc}") from None
    return spec


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


@dataclass
class Spec:
    name: str
    settings: dict
    models: dict
    schedules: dict
    grids: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    path: str = ""


def load_spec(path: str | Path) -> Spec:
    return parse_spec(read_toml(path, "spec file"), str(path))


def parse_spec(raw: dict, where: str = "spec") -> Spec:
    settings = dict(DEFAULTS)
    for k in DEFAULTS:
        if k in raw:
            settings[k] = raw[k]
    models = raw.get("models") or {}
    if not models:
        raise RunsError(f"{where}: needs a [models] table, e.g. S1 = {{ d = 32, layers = 2, heads = 2 }}")
    for name, m in models.items():
        for key in ("d", "layers", "heads"):
            if key not in m:
                raise RunsError(f"{where}: model {name!r} is missing {key!r}")
    schedules = raw.get("schedules") or {"linear": {"family": "linear"}}
    grids = raw.get("grid") or []
    stages = raw.get("stage") or []
    if not grids and not stages:
        raise RunsError(f"{where}: no [[grid]] or [[stage]] tables: nothing to run")
    return Spec(name=raw.get("name", Path(where).stem), settings=settings, models=models, schedules=schedules,
                grids=grids, stages=stages, path=where)


def _config(spec: Spec, where: str, *, model: str, steps: int, template: str, peak_lr: float, warmup: float,
            seed: int, corpus: str, slc, group: str, block: str, parent: RunConfig | None = None,
            tag: str | None = None) -> RunConfig:
    s = spec.settings
    if model not in spec.models:
        raise RunsError(f"{where}: unknown model {model!r}; defined: {', '.join(spec.models)}")
    if template not in spec.schedules:
        raise RunsError(f"{where}: unknown schedule {template!r}; defined: {', '.join(spec.schedules)}")
    m = spec.models[model]
    steps = int(steps)
    log_every = int(s["log_every"])
    if steps % log_every:
        raise RunsError(f"{where}: steps {steps} is not a multiple of log_every {log_every}")
    n_eval = int(s["eval_points"])
    eval_every = max(log_every, (steps // n_eval) // log_every * log_every)
    sched = make_schedule(spec.schedules[template], float(peak_lr), float(warmup), steps)
    return RunConfig(d=int(m["d"]), layers=int(m["layers"]), heads=int(m["heads"]), seq_len=int(s["seq_len"]),
                     batch_size=int(s["batch_size"]), steps=steps, schedule=sched, seed=int(seed), corpus=corpus,
                     slice=(float(slc[0]), float(slc[1])), parent=parent, log_every=log_every,
                     eval_every=eval_every, eval_seqs=int(s["eval_seqs"]),
                     periodic_eval_seqs=int(s["periodic_eval_seqs"]), eval_seed=int(s["eval_seed"]),
                     precision=str(s["precision"]), tag=str(s["tag"] if tag is None else tag), group=group,
                     block=block, model_name=model, template=template, warmup_frac=float(warmup))


def _product(g: dict, where: str):
    for key in ("models", "steps", "peak_lr"):
        if key not in g:
            raise RunsError(f"{where}: missing {key!r}")
    return itertools.product(_as_list(g["models"]), _as_list(g["steps"]),
                             _as_list(g.get("schedules", ["linear"])), _as_list(g["peak_lr"]),
                             _as_list(g.get("warmup", [0.0])), _as_list(g.get("seeds", [0])))


def expand(spec: Spec | str | Path) -> list[RunConfig]:
    """All run configurations of a spec, parents before children, duplicates (same run_id) removed."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    out: dict[str, RunConfig] = {}

    def add(c: RunConfig):
        if c.run_id not in out:
            out[c.run_id] = c

    for i, g in enumerate(spec.grids):
        where = f"{spec.path}: [[grid]] #{i + 1}"
        for model, steps, tmpl, lr, w, seed in _product(g, where):
            add(_config(spec, where, model=model, steps=steps, template=tmpl, peak_lr=lr, warmup=w, seed=seed,
                        corpus=g.get("corpus", "main"), slc=g.get("slice", DEFAULT_SLICE),
                        group=g.get("group", "main"), block=g.get("block", f"{model}-{steps}"), tag=g.get("tag")))
    for i, st in enumerate(spec.stages):
        where = f"{spec.path}: [[stage]] #{i + 1}"
        p = st.get("parent")
        if not isinstance(p, dict):
            raise RunsError(f"{where}: needs parent = {{ model=..., steps=..., schedule=..., peak_lr=..., "
                            "warmup=..., seed=... }}")
        parent = _config(spec, where + " parent", model=p["model"], steps=p["steps"],
                         template=p.get("schedule", "linear"), peak_lr=p["peak_lr"], warmup=p.get("warmup", 0.0),
                         seed=p.get("seed", 0), corpus=p.get("corpus", "main"),
                         slc=p.get("slice", DEFAULT_SLICE), group=p.get("group", "main"),
                         block=p.get("block", f"{p['model']}-{p['steps']}"), tag=p.get("tag"))
        if parent.run_id in out:
            parent = out[parent.run_id]
        else:
            add(parent)
        g = dict(st)
        g["models"] = [p["model"]]
        for model, steps, tmpl, lr, w, seed in _product(g, where):
            add(_config(spec, where, model=model, steps=steps, template=tmpl, peak_lr=lr, warmup=w, seed=seed,
                        corpus=st.get("corpus", "main"), slc=st.get("slice", DEFAULT_SLICE),
                        group=st.get("group", "continual"), block=st.get("block", "stage"), parent=parent,
                        tag=st.get("tag")))
    return list(out.values())


def to_jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x))
