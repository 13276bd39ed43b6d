"""Run a sweep: plan groups, train them (in-process or in worker processes), append results, export the grid.

Results file (JSONL): one line per finished run, written by the parent process with write + flush + fsync as soon
as its group finishes, so a killed sweep loses at most the group(s) in progress.  Runs whose ``run_id`` is already
in the results file are skipped.  A continual-training stage starts from the final parameters of its parent run,
kept as ``<results>.ckpt/<parent_run_id>.npz``; if that file is missing (a sweep resumed elsewhere) the parent is
retrained alone first (deterministic, but with G = 1 instead of the original group size).
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import __version__
from ..runs import RunsError
from ..schedules import Schedule
from .spec import RunConfig, expand, load_spec

HARNESS = f"bayes_optlaws-sweep {__version__}"
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

_CORPUS_CACHE: dict = {}


# ---------------------------------------------------------------------------- results file
def read_results(path: str | Path) -> "OrderedDict[str, dict]":
    """Finished runs of a results JSONL (run_id -> record); a torn last line (killed writer) is ignored."""
    out: OrderedDict[str, dict] = OrderedDict()
    path = Path(path)
    if not path.exists():
        return out
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["run_id"]] = rec
    return out


def append_result(path: str | Path, record: dict) -> None:
    """Append one JSON line and fsync it (atomic enough: a torn line is skipped by :func:`read_results`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with open(path, "a") as fh:
        if fh.tell() > 0:
            # make sure a torn previous line cannot swallow this one
            with open(path, "rb") as rf:
                rf.seek(-1, os.SEEK_END)
                if rf.read(1) != b"\n":
                    fh.write("\n")
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------- data for a group
def _corpus(name: str, cache):
    from .corpus import load_corpus

    key = (name, str(cache))
    if key not in _CORPUS_CACHE:
        _CORPUS_CACHE[key] = load_corpus(name, cache)
    return _CORPUS_CACHE[key]


def train_slice(corpus, slc) -> tuple[int, int]:
    n = len(corpus.train)
    a, b = int(np.floor(slc[0] * n)), int(np.floor(slc[1] * n))
    if not 0 <= a < b <= n:
        raise RunsError(f"corpus slice {slc} is empty or outside [0, 1]")
    return a, b


def data_order(cfg: RunConfig, corpus) -> tuple[np.ndarray, float]:
    """Window start offsets (steps, batch) of a run, and the number of epochs over its slice it reads."""
    a, b = train_slice(corpus, cfg.slice)
    W = cfg.seq_len + 1
    n_win = (b - a) // W
    need = cfg.steps * cfg.batch_size
    if n_win < cfg.batch_size:
        raise RunsError(f"corpus {cfg.corpus} slice {cfg.slice} holds {n_win} windows, fewer than one batch")
    ss = np.random.SeedSequence([cfg.seed, int(round(cfg.slice[0] * 1e6)), int(round(cfg.slice[1] * 1e6)),
                                 zlib.crc32(cfg.corpus.encode())])
    rng = np.random.default_rng(ss)
    parts, have = [], 0
    while have < need:
        parts.append(rng.permutation(n_win))
        have += n_win
    order = np.concatenate(parts)[:need]
    starts = (a + order.astype(np.int64) * W).astype(np.int32).reshape(cfg.steps, cfg.batch_size)
    return starts, need / n_win


def eval_windows(cfg: RunConfig, corpus) -> np.ndarray:
    """The fixed evaluation set: ``eval_seqs`` non-overlapping windows of the validation split (seeded choice)."""
    W = cfg.seq_len + 1
    n_win = len(corpus.val) // W
    if n_win < cfg.eval_seqs:
        raise RunsError(f"corpus {cfg.corpus}: validation split holds {n_win} windows, fewer than eval_seqs "
                        f"{cfg.eval_seqs}")
    idx = np.sort(np.random.default_rng(cfg.eval_seed).choice(n_win, size=cfg.eval_seqs, replace=False))
    return np.stack([corpus.val[i * W:(i + 1) * W] for i in idx])


# ---------------------------------------------------------------------------- checkpoints
def save_params(path: Path, params) -> None:
    import jax

    leaves = jax.tree_util.tree_leaves(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, *[np.asarray(x) for x in leaves])
    os.replace(tmp, path)


def load_params(path: Path, cfg: RunConfig):
    import jax

    from .model import ModelShape, init_params

    shape = ModelShape(cfg.d, cfg.layers, cfg.heads, cfg.seq_len)
    treedef = jax.tree_util.tree_structure(jax.eval_shape(lambda: init_params(shape, jax.random.PRNGKey(0))))
    with np.load(path) as z:
        leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------------------- one group
def device_label() -> str:
    import jax

    return jax.default_backend()


def run_group(cfgs: list[RunConfig], cache=None, ckpt_dir: Path | None = None, save_ckpt: Iterable[str] = (),
              parent_params=None, progress=None) -> list[dict]:
    """Train one group (same shape, steps, data source, parent) and return one result record per run."""
    import jax

    from .model import ModelShape
    from .train import GroupJob, divergence, stack_params, take_params, train_group

    c0 = cfgs[0]
    keys = {c.group_key() for c in cfgs}
    if len(keys) != 1:
        raise RunsError("run_group needs runs with one group key (shape, steps, data source, parent)")
    corpus = _corpus(c0.corpus, cache)
    shape = ModelShape(c0.d, c0.layers, c0.heads, c0.seq_len)
    orders = [data_order(c, corpus) for c in cfgs]
    starts = np.stack([o[0] for o in orders])
    lrs = np.stack([Schedule.from_spec(c.schedule).applied_lr().astype(np.float32) for c in cfgs])
    init = None
    retrained_parent = False
    if c0.parent is not None:
        if parent_params is None:
            ck = Path(ckpt_dir) / f"{c0.parent.run_id}.npz" if ckpt_dir else None
            if ck is not None and ck.exists():
                parent_params = load_params(ck, c0.parent)
            else:
                rec = run_group([c0.parent], cache, ckpt_dir, save_ckpt=[c0.parent.run_id])
                retrained_parent = True
                parent_params = load_params(Path(ckpt_dir) / f"{c0.parent.run_id}.npz", c0.parent) \
                    if ckpt_dir else rec[0].pop("_params")
        init = stack_params([parent_params] * len(cfgs))
    job = GroupJob(shape=shape, batch=c0.batch_size, steps=c0.steps, lrs=lrs, starts=starts,
                   data=corpus.train, val_windows=eval_windows(c0, corpus), seeds=[c.seed for c in cfgs],
                   log_every=c0.log_every, eval_every=c0.eval_every, periodic_eval_seqs=c0.periodic_eval_seqs,
                   init_params=init, precision=c0.precision)
    res = train_group(job, progress=progress)
    backend = jax.default_backend()
    source = f"{HARNESS} jax {jax.__version__} {backend}"
    save_ckpt = set(save_ckpt)
    records = []
    G = len(cfgs)
    L = c0.log_every
    idx = np.arange(L - 1, c0.steps, L)
    unigram = corpus.unigram_entropy
    for i, c in enumerate(cfgs):
        final = float(res.final_val_loss[i])
        div = divergence(res.step_losses[i], final, unigram)
        lr_err = float(np.max(np.abs(res.applied_lrs[i] - lrs[i].astype(np.float64))))
        if lr_err != 0.0:
            raise RuntimeError(f"run {c.run_id}: applied LR differs from the schedule by {lr_err:g}")
        losses = res.step_losses[i]
        row = {
            "run_id": c.run_id,
            "model_params": shape.non_embedding_params,
            "tokens": c.tokens,
            "tokens_per_step": c.tokens_per_step,
            "schedule": json.dumps(c.schedule, sort_keys=True),
            "final_loss": final if np.isfinite(final) else None,
            "diverged": div["diverged"],
            "parent_run_id": c.parent.run_id if c.parent else None,
            "seed": c.seed,
            "group": c.group,
            "source": source,
            "x_block": c.block,
            "x_family": c.family,
            "x_template": c.template,
            "x_peak_lr": float(c.schedule["peak_lr"]),
            "x_warmup_frac": c.warmup_frac,
            "x_steps": c.steps,
            "x_d_model": c.d,
            "x_n_layers": c.layers,
            "x_n_heads": c.heads,
            "x_total_params": shape.total_params,
            "x_corpus": c.corpus,
            "x_slice": f"{c.slice[0]:g}-{c.slice[1]:g}",
            "x_epochs": round(orders[i][1], 4),
            "x_early_spike": div["early_spike"],
            "x_at_unigram": div["at_unigram"],
            "x_max_excursion": round(div["max_excursion"], 5),
            "x_unigram_entropy": round(unigram, 6),
            "x_final_train_loss": float(np.mean(losses[-max(1, c.steps // 50):])),
            "x_device": backend,
            "x_xla_threads": (os.environ.get("BAYES_OPTLAWS_XLA_THREADS", "default") if backend == "cpu"
                              else backend),
            "x_group_size": G,
            "x_wall_s": round(res.wall_s, 3),
            "x_tag": c.tag,
        }
        curve = {
            "step": idx.tolist(),
            "lr": [float(x) for x in res.applied_lrs[i][idx]],
            "train_loss": [round(float(x), 5) for x in losses[idx]],
            "train_loss_mean": [round(float(x), 5) for x in losses.reshape(-1, L).mean(axis=1)],
            "grad_norm": [round(float(x), 5) for x in res.grad_norms[i][idx]],
            "val_step": list(res.val_steps),
            "val_loss": [round(float(x), 5) for x in res.val_losses[i]],
        }
        rec = {"run_id": c.run_id, "row": row, "config": c.to_json(), "curve": curve,
               "wall_s": res.wall_s, "compile_s": res.compile_s, "group_size": G, "device": backend,
               "jax": jax.__version__, "retrained_parent": retrained_parent,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if c.run_id in save_ckpt:
            p = take_params(res.final_params, i)
            if ckpt_dir is not None:
                save_params(Path(ckpt_dir) / f"{c.run_id}.npz", p)
            else:
                rec["_params"] = p
        records.append(rec)
    return records


# ---------------------------------------------------------------------------- planning
def plan_groups(cfgs: list[RunConfig], max_group: int) -> list[list[RunConfig]]:
    """Runs that share a group key, in order of first appearance, split into groups of at most ``max_group``."""
    buckets: OrderedDict[tuple, list[RunConfig]] = OrderedDict()
    for c in cfgs:
        buckets.setdefault(c.group_key(), []).append(c)
    groups = []
    for runs in buckets.values():
        n = -(-len(runs) // max_group)
        size = -(-len(runs) // n)  # balanced split
        for k in range(0, len(runs), size):
            groups.append(runs[k:k + size])
    return groups


def _worker_init():
    os.environ["BAYES_OPTLAWS_XLA_THREADS"] = "1"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + SINGLE_THREAD_XLA).strip()


def _worker_run(cfg_json: list[dict], cache, ckpt_dir, save_ckpt) -> list[dict]:
    cfgs = [RunConfig.from_json(d) for d in cfg_json]
    return run_group(cfgs, cache, Path(ckpt_dir), save_ckpt)


def run_sweep(spec_path, results, *, jobs: int = 1, max_group: int | None = None, cache=None,
              time_limit: float | None = None, only_groups: Iterable[str] | None = None,
              progress: bool = True, log=None) -> dict:
    """Train every run of ``spec_path`` not yet in ``results``; returns a summary dict."""
    if log is None:
        def log(*a, flush=False):
            print(*a, flush=True)
    spec = load_spec(spec_path)
    cfgs = expand(spec)
    if only_groups:
        keep = set(only_groups)
        wanted = [c for c in cfgs if c.group in keep or c.block in keep]
        ids = {c.run_id for c in wanted}
        cfgs = [c for c in cfgs if c.run_id in ids or any(w.parent and w.parent.run_id == c.run_id for w in wanted)]
    results = Path(results)
    done = read_results(results)
    pending = [c for c in cfgs if c.run_id not in done]
    ckpt_dir = Path(str(results) + ".ckpt")
    parents = {c.parent.run_id for c in cfgs if c.parent is not None}
    if max_group is None:
        if jobs > 1:
            max_group = 1
        else:
            import jax

            max_group = 1 if jax.default_backend() == "cpu" else 64
    groups = plan_groups(pending, max_group)
    log(f"{spec.name}: {len(cfgs)} runs in spec, {len(cfgs) - len(pending)} done, {len(pending)} to run "
        f"in {len(groups)} groups (max group {max_group}, jobs {jobs})")
    t0 = time.time()
    n_done = 0
    bar = None
    if progress and pending:
        from tqdm import tqdm

        bar = tqdm(total=len(pending), unit="run", smoothing=0.05, dynamic_ncols=True, file=sys.stderr)

    def record(recs):
        nonlocal n_done
        if recs and bar is None:
            r0 = recs[0]
            log(f"[{n_done + len(recs)}/{len(pending)}] {r0['row']['x_block']} d{r0['config']['d']} "
                f"{r0['config']['steps']} steps: {len(recs)} runs in {r0['wall_s']:.1f} s "
                f"(compile {r0['compile_s']:.1f} s), elapsed {time.time() - t0:.0f} s", flush=True)
        for r in recs:
            r.pop("_params", None)
            append_result(results, r)
            done[r["run_id"]] = r
            n_done += 1
        if bar is not None:
            bar.n = n_done
            bar.refresh()

    def ready(g):
        p = g[0].parent
        return p is None or p.run_id in done

    def next_ready(queue):
        # continual stages first once their parent is done (its checkpoint is fresh), then spec order
        kids = [g for g in queue if g[0].parent is not None and ready(g)]
        return kids[0] if kids else next((g for g in queue if ready(g)), None)

    def expired():
        return time_limit is not None and time.time() - t0 > time_limit

    queue = list(groups)
    if jobs <= 1:
        while queue and not expired():
            g = next_ready(queue)
            if g is None:
                raise RunsError("a continual stage's parent is neither done nor planned; check the spec")
            queue.remove(g)
            base = n_done
            cb = None
            if bar is not None:
                steps = g[0].steps

                def cb(k, _g=len(g), _base=base, _steps=steps):
                    bar.n = _base + _g * k / _steps
                    bar.refresh()
            record(run_group(g, cache, ckpt_dir, [c.run_id for c in g if c.run_id in parents], progress=cb))
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as ex:
            running = {}
            while queue or running:
                while queue and len(running) < jobs and not expired():
                    g = next_ready(queue)
                    if g is None:
                        break
                    queue.remove(g)
                    fut = ex.submit(_worker_run, [c.to_json() for c in g], str(cache) if cache else None,
                                    str(ckpt_dir), [c.run_id for c in g if c.run_id in parents])
                    running[fut] = g
                if not running:
                    if queue and not expired():
                        raise RunsError("a continual stage's parent is neither done nor planned; check the spec")
                    break
                fin, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in fin:
                    running.pop(f)
                    record(f.result())
    if bar is not None:
        bar.close()
    left = len(pending) - n_done
    log(f"finished {n_done} runs in {time.time() - t0:.1f} s; {left} left" + (" (time limit)" if left else ""))
    return {"done": n_done, "left": left, "wall_s": time.time() - t0, "results": str(results)}


# ---------------------------------------------------------------------------- rerun
def rerun(run_id: str, runs_path: str | Path = "data/grid/runs.csv", cache=None, log=print) -> dict:
    """Re-train one stored run (and its parent chain) with G = 1 on this machine; compare with the stored loss."""
    import jax

    from .export import load_curves
    from .. import runs as runs_mod

    df, _ = runs_mod.read_runs(runs_path)
    if run_id not in set(df["run_id"]):
        raise RunsError(f"run_id {run_id!r} is not in {runs_path}")
    curves = load_curves(Path(runs_path).parent / "curves.jsonl.gz")
    if run_id not in curves:
        raise RunsError(f"{run_id!r} has no stored config in curves.jsonl.gz next to {runs_path}; cannot rerun")
    cfg = RunConfig.from_json(curves[run_id]["config"])
    chain = []
    p = cfg.parent
    while p is not None:
        chain.append(p)
        p = p.parent
    stored_row = df.set_index("run_id").loc[run_id]
    if (str(stored_row.get("x_xla_threads", "")) in ("1", "1.0") and os.environ.get("BAYES_OPTLAWS_XLA_THREADS") != "1"
            and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu"):
        # the stored run came from a one-thread worker: re-train in one too (same thread count, same bits)
        log("re-training in a one-thread worker process, as the stored run was")
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_worker_init) as ex:
            return ex.submit(rerun, run_id, str(runs_path), str(cache) if cache else None, _quiet).result()
    params = None
    t0 = time.time()
    for pc in reversed(chain):
        log(f"training parent {pc.run_id} first")
        recs = run_group([pc], cache, None, save_ckpt=[pc.run_id], parent_params=params)
        params = recs[0]["_params"]
    rec = run_group([cfg], cache, None, parent_params=params)[0]
    stored = float(df.set_index("run_id").loc[run_id, "final_loss"])
    new = rec["row"]["final_loss"]
    diff = (new - stored) if new is not None else float("nan")
    return {"run_id": run_id, "stored": stored, "new": new, "diff": diff, "wall_s": time.time() - t0,
            "device": jax.default_backend(), "stored_device": df.set_index("run_id").loc[run_id].get("x_device")}


def _quiet(*a, **k):
    return None


def package_versions() -> dict:
    out = {}
    for name in ("jax", "jaxlib", "optax", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
