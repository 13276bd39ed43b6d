"""Training throughput of the sweep harness (tokens/s) per model size and vmap group size, on the default device.

    .venv/bin/python benchmarks/bench_sweep.py                  # CPU: sizes S1..S3, G = 1
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" taskset -c 0 \
        .venv/bin/python benchmarks/bench_sweep.py              # one core, as a --jobs worker runs
    python benchmarks/bench_sweep.py --groups 1 16 64 --sizes 32:2:2 64:4:4 128:4:4 128:6:8   # GPU

Measures the jitted chunk of ``log_every`` optimizer steps (the harness' own code path) on random bytes, after
one warm-up chunk (compile); reports per-run and aggregate tokens/s (aggregate = G runs together).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["32:2:2", "48:3:3", "64:4:4"], help="d:layers:heads")
    ap.add_argument("--groups", nargs="+", type=int, default=[1], help="vmap group sizes G")
    ap.add_argument("--chunk", type=int, default=10, help="steps per jitted chunk (log_every)")
    ap.add_argument("--chunks", type=int, default=3, help="timed chunks")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--precision", default="highest")
    ap.add_argument("--json", default=None, help="also write results as JSON lines to this file")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from bayes_optlaws.sweep.model import ModelShape
    from bayes_optlaws.sweep.train import _build_functions, init_stack

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.integers(0, 256, size=4_000_000, dtype=np.uint8))
    out = []
    for s in args.sizes:
        d, L, H = (int(x) for x in s.split(":"))
        shape = ModelShape(d, L, H, args.seq)
        for G in args.groups:
            with jax.default_matmul_precision(args.precision):
                chunk_fn, _, init_opt = _build_functions(shape, G, 128, args.precision)
                params = init_stack(shape, list(range(G)))
                if G == 1:
                    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), params)
                else:
                    params = jax.tree_util.tree_map(jnp.asarray, params)
                opt = init_opt(params)
                shp = (args.chunk, args.batch) if G == 1 else (G, args.chunk, args.batch)
                starts = jnp.asarray(rng.integers(0, len(data) - args.seq - 1, size=shp, dtype=np.int32))
                lrs = jnp.full(shp[:-1], 1e-3, dtype=jnp.float32)
                t = time.perf_counter()
                params, opt, o = chunk_fn(params, opt, starts, lrs, data)
                jax.block_until_ready(o)
                compile_s = time.perf_counter() - t
                t = time.perf_counter()
                for _ in range(args.chunks):
                    params, opt, o = chunk_fn(params, opt, starts, lrs, data)
                jax.block_until_ready(o)
                dt = time.perf_counter() - t
            tokens = args.chunks * args.chunk * args.batch * args.seq
            rec = {"d": d, "layers": L, "heads": H, "non_emb_params": shape.non_embedding_params, "G": G,
                   "tok_s_per_run": tokens / dt, "tok_s_total": G * tokens / dt,
                   "ms_per_step": 1000 * dt / (args.chunks * args.chunk), "compile_s": compile_s,
                   "backend": jax.default_backend(), "precision": args.precision}
            out.append(rec)
            print(f"d={d:4d} L={L} H={H} N={shape.non_embedding_params:>9,d} G={G:3d}: "
                  f"{rec['tok_s_per_run']:>12,.0f} tok/s per run, {rec['tok_s_total']:>13,.0f} tok/s total, "
                  f"{rec['ms_per_step']:8.2f} ms/step, compile {compile_s:5.1f} s", flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            for r in out:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
