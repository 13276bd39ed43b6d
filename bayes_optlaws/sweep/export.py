"""Turn results JSONL files into the embedded grid: runs.csv + runs.csv.meta.json + curves.jsonl.gz + MANIFEST.md."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import RunsError, write_runs
from .runner import HARNESS, package_versions, read_results
from .train_rules import DIVERGENCE_RULE, OPTIMIZER, MODEL

ROW_ORDER = ("run_id", "model_params", "tokens", "tokens_per_step", "schedule", "final_loss", "diverged",
             "parent_run_id", "seed", "group", "source")


def load_curves(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise RunsError(f"{path}: no such curves file")
    out = {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                out[rec["run_id"]] = rec
    return out


def collect(results_paths) -> "OrderedDict[str, dict]":
    recs: OrderedDict[str, dict] = OrderedDict()
    for p in results_paths:
        if not Path(p).exists():
            raise RunsError(f"{p}: no such results file")
        recs.update(read_results(p))
    if not recs:
        raise RunsError("no finished runs in " + ", ".join(map(str, results_paths)))
    return recs


def export(results_paths, out_dir: str | Path = "data/grid", *, spec_paths=(), corpus_cache=None,
           notes: str = "", extra_meta: dict | None = None) -> dict:
    """Write the grid files from one or more results JSONL files (later files win on duplicate run_ids)."""
    if isinstance(results_paths, (str, Path)):
        results_paths = [results_paths]
    recs = collect(results_paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r["row"] for r in recs.values()]
    df = pd.DataFrame(rows)
    cols = [c for c in ROW_ORDER if c in df.columns] + sorted(c for c in df.columns if c not in ROW_ORDER)
    df = df[cols]
    df["final_loss"] = df["final_loss"].astype(float)
    df["seed"] = df["seed"].astype("Int64")

    corpora = {}
    try:
        from .corpus import corpus_summary, load_corpus

        for name in sorted(set(df["x_corpus"])):
            corpora[name] = corpus_summary(load_corpus(name, corpus_cache, build=False))
    except (RunsError, OSError) as exc:  # corpus not built here: keep what the records say
        corpora = {"note": f"corpus manifests not available at export time ({exc})"}

    by_dev = Counter(r["device"] for r in recs.values())
    # group wall time is shared by the runs of a vmapped group: count it once per group
    seen = set()
    wall = Counter()
    for r in recs.values():
        key = (r["device"], r["row"]["x_wall_s"], r["group_size"], r["config"]["steps"], r["config"]["d"])
        if key not in seen:
            seen.add(key)
            wall[r["device"]] += float(r["wall_s"])
    jax_versions = sorted({f"{r['device']}: jax {r['jax']}" for r in recs.values()})
    repeats = sorted(r["run_id"] for r in recs.values() if r["row"]["x_epochs"] > 1.0)
    meta = {
        "harness": HARNESS,
        "package_versions_at_export": package_versions(),
        "jax_versions": jax_versions,
        "devices": dict(by_dev),
        "wall_time_s_by_device": {k: round(v, 1) for k, v in wall.items()},
        "param_count_rule": "non-embedding",
        "param_count_detail": "model_params excludes token and position embeddings (tied output head); the "
                              "total is in x_total_params",
        "loss_kind": "val, nats per byte",
        "loss_detail": "final_loss = mean next-byte cross-entropy (nats) of the final parameters on a fixed set of "
                       "held-out validation windows (eval_seqs windows of seq_len+1 bytes, seeded choice)",
        "tokenizer": "bytes (vocab 256); tokens = bytes",
        "divergence_rule": DIVERGENCE_RULE,
        "model": MODEL,
        "optimizer": OPTIMIZER,
        "schedule_rule": "the LR applied at update k (0-based) is Schedule.from_spec(schedule).applied_lr()[k] "
                         "(midpoint rule); the curves record the LR read back from the optimizer state",
        "continual": "a stage (parent_run_id set) starts from its parent's final parameters with a fresh AdamW "
                     "state (moments reset), re-warmed with its own schedule; tokens count this stage only",
        "data_order": "each run reads non-overlapping windows of its corpus slice in a random order seeded by "
                      "(seed, slice, corpus); x_epochs > 1 means data repeats",
        "runs_repeating_data": repeats,
        "corpora": corpora,
        "threads": "CPU runs: one XLA thread per run (--xla_cpu_multi_thread_eigen=false "
                   "intra_op_parallelism_threads=1), --jobs parallel processes; GPU runs: one process, runs of "
                   "a group vmapped",
        "spec_files": [str(p) for p in spec_paths],
        "n_runs": len(df),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    missing = {}
    for sp in spec_paths:
        try:
            from .spec import expand

            for c in expand(sp):
                if c.run_id not in recs:
                    missing.setdefault(f"{Path(sp).name}:{c.block}", []).append(c.run_id)
        except RunsError:
            continue
    meta["spec_runs_not_trained"] = {k: len(v) for k, v in missing.items()}
    if extra_meta:
        meta.update(extra_meta)
    write_runs(df, out_dir / "runs.csv", meta, force=True)
    with gzip.GzipFile(out_dir / "curves.jsonl.gz", "wb", mtime=0) as gz:
        for r in recs.values():
            line = {"run_id": r["run_id"], "config": r["config"], **r["curve"]}
            gz.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
    write_manifest(out_dir / "MANIFEST.md", df, meta, notes)
    return meta


def write_manifest(path: Path, df: pd.DataFrame, meta: dict, notes: str = "") -> None:
    lines = ["# Embedded default grid", "",
             "Produced by the committed sweep harness (`bayes_optlaws/sweep`).  Files:", "",
             "- `runs.csv`: one row per run (runs-format.md); `runs.csv.meta.json`: metadata side-car;",
             "- `curves.jsonl.gz`: per run, its config and curve (step = 0-based update index, lr = LR the "
             "optimizer applied, train_loss at that step, train_loss_mean over the logging interval, grad_norm, "
             "val_step/val_loss on the periodic validation subset).", "",
             f"Harness: {meta['harness']}; {', '.join(meta['jax_versions'])}.",
             f"Runs: {meta['n_runs']} ({', '.join(f'{k}: {v}' for k, v in meta['devices'].items())}).",
             "Wall time (group wall clock, summed): "
             + ", ".join(f"{k}: {v:.0f} s" for k, v in meta["wall_time_s_by_device"].items()) + ".",
             f"Spec files: {', '.join(meta['spec_files']) or '-'}.", "",
             "| group | block | model_params | tokens | runs | diverged | families |",
             "|---|---|---|---|---|---|---|"]
    for (g, b), sub in df.groupby(["group", "x_block"], sort=False):
        fams = ", ".join(sorted(set(sub["x_family"])))
        lines.append(f"| {g} | {b} | {', '.join(str(x) for x in sorted(set(sub['model_params'])))} | "
                     f"{', '.join(str(x) for x in sorted(set(sub['tokens'])))} | {len(sub)} | "
                     f"{int(sub['diverged'].sum())} | {fams} |")
    if meta.get("spec_runs_not_trained"):
        lines += ["", "Runs of the spec files not trained yet (`bayes-optlaws sweep SPEC` resumes them): "
                  + ", ".join(f"{k} ({v})" for k, v in meta["spec_runs_not_trained"].items()) + "."]
    lines += ["", "Divergence rule: " + meta["divergence_rule"], ""]
    if notes:
        lines += [notes, ""]
    path.write_text("\n".join(lines))


def merge_results(paths, out) -> int:
    """Concatenate results files into one (dedup by run_id, later wins)."""
    recs = collect(paths)
    out = Path(out)
    with open(out, "w") as fh:
        for r in recs.values():
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    return len(recs)


def _np(x):
    return np.asarray(x)
