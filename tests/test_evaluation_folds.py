"""Block-wise folds: replicate seeds stay together, every fold sees every block, deterministic, CV-row selection."""

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.evaluation.folds import block_keys, config_keys, cv_mask, fold_summary, make_folds


def _table(n_configs=(7, 9, 5), seeds=(1, 2, 3)):
    """Three blocks; configuration j of a block has seeds[j % len(seeds)] replicate rows."""
    rows = []
    blocks = [(1_000_000, 400 * 4096), (4_000_000, 400 * 4096), (4_000_000, 800 * 4096)]
    for (n, tokens), k in zip(blocks, n_configs):
        steps = tokens // 4096
        for j in range(k):
            spec = {"family": "cosine" if j % 2 else "linear", "peak_lr": 1e-3 * (1 + j), "warmup": 20,
                    "total": steps}
            for s in range(seeds[j % len(seeds)]):
                rows.append({"run_id": f"N{n}-D{tokens}-c{j}-s{s}", "model_params": n, "tokens": tokens,
                             "tokens_per_step": 4096, "schedule": json.dumps(spec), "final_loss": 3.0,
                             "diverged": False, "seed": s})
    return pd.DataFrame(rows)


def test_seeds_stay_together_and_every_fold_covers_every_block():
    df = _table()
    folds = make_folds(df, n_folds=5, seed=0)
    assert folds.min() == 0 and folds.max() == 4
    cfg = config_keys(df)
    for c in set(cfg):
        assert len(set(folds[cfg == c])) == 1, "replicate seeds of one configuration were split"
    blocks = block_keys(df)
    for b in set(blocks):
        # every block has >= 5 configurations here, so every fold holds out some of each block
        assert set(folds[blocks == b]) == set(range(5))
        # configurations are spread as evenly as possible within the block
        per_fold = [len(set(cfg[(blocks == b) & (folds == f)])) for f in range(5)]
        assert max(per_fold) - min(per_fold) <= 1


def test_small_blocks_spread_over_folds_and_sizes_balance():
    df = _table(n_configs=(2, 2, 2, ), seeds=(1,))
    folds = make_folds(df, n_folds=3, seed=1)
    # three blocks of two configurations fill all three folds with 2 configurations each
    assert sorted(np.bincount(folds, minlength=3).tolist()) == [2, 2, 2]


def test_deterministic_and_row_order_invariant():
    df = _table()
    a = make_folds(df, 5, seed=3)
    assert np.array_equal(a, make_folds(df, 5, seed=3))
    assert not np.array_equal(a, make_folds(df, 5, seed=4))
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    b = make_folds(shuffled, 5, seed=3)
    assert dict(zip(df["run_id"], a)) == dict(zip(shuffled["run_id"], b))


def test_equivalent_schedule_specs_are_one_configuration():
    df = _table(n_configs=(5, 5, 5), seeds=(1,))
    spec = json.loads(df.loc[0, "schedule"])
    knots = {"knots": [[0, 0.0], [spec["warmup"], spec["peak_lr"]], [spec["total"], 0.0]]}
    extra = df.iloc[[0]].assign(run_id="same-as-row-0", schedule=json.dumps(knots))
    df2 = pd.concat([df, extra], ignore_index=True)
    folds = make_folds(df2, 5, seed=0)
    assert folds[-1] == folds[0]


def test_cv_rows_exclude_continual_stages_and_other_groups():
    df = _table(n_configs=(5, 5, 5), seeds=(1,))
    df["group"] = "main"
    df["parent_run_id"] = None
    df.loc[1, "group"] = "extrapolation"
    df.loc[2, "group"] = np.nan  # absent group counts as main
    df.loc[3, "parent_run_id"] = df.loc[0, "run_id"]
    mask = cv_mask(df)
    assert not mask[1] and mask[2] and not mask[3]
    folds = make_folds(df, 5, seed=0)
    assert folds[1] == -1 and folds[3] == -1 and folds[2] >= 0
    # the selection is an argument
    assert cv_mask(df, groups=("main", "extrapolation"))[1]
    assert cv_mask(df, groups=None)[1]
    assert cv_mask(df, include_continual=True)[3]
    summary = fold_summary(df, folds)
    assert summary["n_folds"] == 5 and sum(summary["rows_per_fold"]) == len(df) - 2
    assert df.loc[1, "run_id"] not in summary["assignment"]


def test_bad_arguments():
    df = _table()
    with pytest.raises(ValueError, match="--folds"):
        make_folds(df, 1)
    with pytest.raises(ValueError, match="mask"):
        make_folds(df, 5, mask=np.ones(3, dtype=bool))
    assert (make_folds(df, 5, mask=np.zeros(len(df), dtype=bool)) == -1).all()


def test_diverged_configurations_are_spread_separately():
    # 10 configurations per block, the first 5 diverged: every fold holds out one usable and one diverged config
    df = _table(n_configs=(10, 10, 10), seeds=(1,))
    df["diverged"] = df["run_id"].str.contains(r"-c[0-4]-")
    df.loc[df["diverged"], "final_loss"] = np.nan
    folds = make_folds(df, 5, seed=2)
    blocks = block_keys(df)
    for b in set(blocks):
        for dv in (True, False):
            sel = (blocks == b) & (df["diverged"].to_numpy() == dv)
            assert sorted(np.bincount(folds[sel], minlength=5)) == [1] * 5


def test_groups_never_share_a_block_or_configuration():
    df = _table(n_configs=(5, 5, 5), seeds=(1,))
    other = df.assign(group="openwebtext2", run_id=df["run_id"] + "-owt")
    both = pd.concat([df.assign(group="slimpajama"), other], ignore_index=True)
    assert len(set(block_keys(both))) == 2 * len(set(block_keys(df)))
    assert len(set(config_keys(both))) == len(both)
    folds = make_folds(both, 5, seed=0, groups=None)
    blocks = block_keys(both)
    for b in set(blocks):
        assert set(folds[blocks == b]) == set(range(5))


def test_fewer_than_two_folds_is_a_runs_error():
    from bayes_optlaws.runs import RunsError

    df = pd.DataFrame({"x": [1]})
    with pytest.raises(RunsError, match=r"--folds\) must be at least 2"):
        make_folds(df, n_folds=1, seed=0)
