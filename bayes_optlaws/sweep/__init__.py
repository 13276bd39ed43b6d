"""Sweep harness: train grids of tiny byte-level LMs and write runs tables (optional extra ``[sweep]``: jax, optax).

Modules: :mod:`.corpus` (offline corpora), :mod:`.model` (pre-LN GPT), :mod:`.train` (vmapped training loop,
divergence rule), :mod:`.spec` (TOML sweep specs -> :class:`~.spec.RunConfig`), :mod:`.runner` (resumable sweeps,
rerun), :mod:`.export` (runs.csv + metadata + curves + MANIFEST), :mod:`.summary` (``data summary``),
:mod:`.cli` (``register(subparsers)``).  ``python -m bayes_optlaws.sweep sweep SPEC`` works stand-alone.

Why JAX + optax (measured 2026-11-22 on this 2-core AMD EPYC (AVX2) box and one H100):

* **Install on Python >= 3.12.**  ``pip install jax optax`` takes ~20 s and ~590 MB and runs CPU-only out of the
  box.  The only CPU PyTorch wheel available here is for Python 3.11; on 3.12 pip fetches torch 2.14.1
  (555 MB wheel) plus several GB of CUDA/cuDNN/NCCL/triton dependencies.
* **Determinism.**  Same seed and same thread count give bit-identical losses across processes on CPU
  (``tests/test_sweep.py``; ``sweep --rerun`` of a stored 2,000-step run from a one-thread worker reproduced its
  final loss exactly, difference 0.0).  Across thread counts the first 50 steps agree bit for bit, but a
  2,000-step run drifted by 1.4e-5 nats, so ``--rerun`` re-trains in a one-thread worker when the stored run came
  from one (``x_xla_threads``).  Initial parameters are computed on the CPU backend, the same bits on CPU and GPU;
  the same configuration trained on CPU and on the H100 ended 9e-6 and 1.4e-3 nats apart.
* **Speed on CPU is the cost.**  In an A/B measurement eager PyTorch was 1.5-1.9x faster per core on these
  models (25K non-embedding params ~77K vs ~45K tokens/s on one core; 200K ~22K vs ~12K; 0.8M ~8.8K vs ~6.0K), and
  ``torch.compile`` gave nothing.  This harness' own chunk on one quiet-ish core (``benchmarks/bench_sweep.py``,
  one XLA thread): 88K tokens/s (25K params), 37K (85K), 19K (200K), 8.5K (0.8M); the sweep's two workers got
  22-51K tokens/s each for 25K params while other jobs shared the two cores.  XLA:CPU tuning did not close the gap; 2-D activations (B*T, d) and the LR as
  a jit argument (``optax.inject_hyperparams``) are what keep JAX within that factor.
* **Speed on a GPU is the gain.**  Runs that share (shape, steps, data source) train together in one jitted
  ``vmap`` of a ``lax.scan`` over optimizer steps.  On one H100 (fp32, matmul precision "highest"), the
  harness' own chunk (``benchmarks/bench_sweep.py``) did 4.7M tokens/s for one 25K-param run and 30.8M tokens/s
  for 48 such runs vmapped; 8.9M (200K params, G=48), 4.4M (0.8M, G=48), 2.0M (1.9M, G=48).  The whole sweep,
  compile and evaluation included, ran at 8.2M (25K), 5.4M (85K), 3.3M (200K) and 1.2M (0.8M) tokens/s:
  ~400 runs of 8-16M tokens in ~17 minutes of GPU time, against ~10 core-hours estimated on this CPU.

Defaults: on CPU one run per process (``--jobs K`` worker processes, one XLA thread each); on GPU groups of up
to 64 runs (``--max-group``).  Compilation takes ~5 s per model shape on CPU and 12-50 s per (shape, group
size) on GPU (``XLA_FLAGS=--xla_gpu_autotune_level=0`` cut it to 12-20 s).
"""

from .spec import RunConfig, expand, load_spec  # noqa: F401

__all__ = ["RunConfig", "expand", "load_spec"]
