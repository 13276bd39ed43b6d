"""label_outcomes / unstable_excess on small hand-made tables (SYNTHETIC numbers, chosen to hit each rule)."""

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws import instability as ins


def _table():
    # block A (3 runs): best 2.0, one run 0.6 above (unstable), one 0.3 above (normal), one diverged
    # block B: a single non-diverged run -> cannot label, counts as normal even though its loss is high
    return pd.DataFrame({
        "run_id": ["a1", "a2", "a3", "a4", "b1"],
        "model_params": [100, 100, 100, 100, 200],
        "tokens": [1000, 1000, 1000, 1000, 1000],
        "final_loss": [2.0, 2.6, 2.3, 5.0, 9.0],
        "diverged": [False, False, False, True, False],
        "group": ["main"] * 5,
    })


def test_labels_follow_the_gap_to_the_block_best():
    lab = ins.label_outcomes(_table(), unstable_gap=0.5)
    assert list(lab) == ["normal", "unstable", "normal", "diverged", "normal"]


def test_the_gap_is_a_setting():
    assert list(ins.label_outcomes(_table(), unstable_gap=0.25)) == ["normal", "unstable", "unstable",
                                                                      "diverged", "normal"]


def test_blocks_are_split_by_group():
    t = _table()
    t.loc[1, "group"] = "other"  # a2 alone in its block now: normal
    assert ins.label_outcomes(t)[1] == "normal"


def test_unstable_excess_is_the_median_gap_of_the_unstable_runs():
    assert ins.unstable_excess(_table(), 0.25) == pytest.approx(np.median([0.6, 0.3]))
    assert np.isnan(ins.unstable_excess(_table(), 5.0))


def test_the_excess_can_be_measured_above_a_prediction_of_each_run():
    """SYNTHETIC: with ``above`` (e.g. the loss law's prediction) the excess is final loss minus it, per
    unstable run; the block's best is the default baseline."""
    law = np.array([2.1, 2.2, 2.2, 4.0, 8.0])  # the law already puts a2 0.2 above the block's best
    np.testing.assert_allclose(ins.unstable_excesses(_table(), 0.25, above=law), [0.4, 0.1])
    np.testing.assert_allclose(ins.unstable_excesses(_table(), 0.25), [0.6, 0.3])
    assert ins.unstable_excess(_table(), 0.25, above=law) == pytest.approx(0.25)
    assert ins.unstable_excesses(_table(), 5.0).size == 0


def test_outcome_codes_are_ordered():
    assert list(ins.outcome_codes(["normal", "unstable", "diverged"])) == [0, 1, 2]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_non_positive_gap_is_refused(bad):
    with pytest.raises(ValueError, match="unstable_gap must be a positive number"):
        ins.label_outcomes(_table(), bad)
