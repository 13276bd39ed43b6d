"""Redraw the README's picture from the shipped default model (run after refitting it).

    .venv/bin/python docs/make_figures.py            # writes docs/loss_surface_S3-2k.png

The picture is the report's loss-surface map (``plots.loss_surface`` over ``surface.surface_grid``) for the
200K-parameter, 8.2M-token block of the embedded grid (2,000 steps × 4,096 tokens per step), seed 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from bayes_optlaws import plots  # noqa: E402
from bayes_optlaws.api import load  # noqa: E402
from bayes_optlaws.surface import block_runs, surface_grid  # noqa: E402

#: the README's block: S3 (200,064 non-embedding parameters) at 2,000 steps of 4,096 tokens
BLOCK = {"model_params": 200_064, "total_steps": 2_000, "tokens_per_step": 4_096}
OUT = HERE / "loss_surface_S3-2k.png"


def main() -> int:
    law = load()
    where = (BLOCK["model_params"], BLOCK["total_steps"], BLOCK["tokens_per_step"])
    grid = surface_grid(law, *where, random_seed=0)
    fig = plots.loss_surface(grid, block_runs(law.train_runs_, *where))
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
