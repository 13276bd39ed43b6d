"""posterior.py: flattening (chain, draw) into one sample axis (synthetic posterior, named so)."""

import numpy as np
import xarray as xr

from bayes_optlaws.posterior import interval_coverage, posterior_arrays


def synthetic_idata():
    """A made-up posterior: 2 chains × 3 draws of a scalar, a vector (4) and a deterministic."""
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(24.0).reshape(2, 3, 4)
    ds = xr.Dataset({"a": (("chain", "draw"), a), "b": (("chain", "draw", "k"), b),
                     "p_diverge": (("chain", "draw"), a / 10)})
    return xr.DataTree.from_dict({"posterior": ds})


def test_flattens_chain_major_and_keeps_trailing_axes():
    post = posterior_arrays(synthetic_idata(), ["a", "b"])
    assert post["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # chain 0's draws, then chain 1's
    assert post["b"].shape == (6, 4)
    np.testing.assert_array_equal(post["b"][4], np.arange(16.0, 20.0))  # chain 1, draw 1


def test_names_absent_from_the_posterior_are_skipped():
    assert sorted(posterior_arrays(synthetic_idata(), ["a", "not_there"])) == ["a"]


def test_default_is_every_variable_but_the_excluded():
    assert sorted(posterior_arrays(synthetic_idata())) == ["a", "b", "p_diverge"]
    assert sorted(posterior_arrays(synthetic_idata(), exclude=["p_diverge"])) == ["a", "b"]


def test_interval_coverage_counts_observations_inside_central_intervals():
    """Synthetic draws 0..100 per column: the 50 % interval is [25, 75], the 90 % one [5, 95]."""
    draws = np.tile(np.arange(101.0)[:, None], (1, 4))
    cov = interval_coverage(draws, [50.0, 80.0, 4.0, 25.0])
    assert cov == {"coverage_50": 0.5, "coverage_90": 0.75}
