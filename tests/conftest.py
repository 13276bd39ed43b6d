"""Shared fixtures: one small real fit per test session on a SYNTHETIC grid (tests/synthetic.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
TEST_SAMPLER = {"draws": 200, "tune": 300, "chains": 4}


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("BAYES_OPTLAWS_RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_table():
    from synthetic import synthetic_runs

    return synthetic_runs(seed=0)


@pytest.fixture(scope="session")
def fitted_law(synthetic_table):
    """A BayesOptLaw fitted once (4 chains × 200 draws) on the synthetic grid, fixed exponents."""
    import warnings

    from bayes_optlaws.features import FeatureSpec
    from bayes_optlaws.optlaw import BayesOptLaw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=TEST_SAMPLER, random_seed=3).fit(synthetic_table)


@pytest.fixture(scope="session")
def saved_model(fitted_law, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "synthetic-law"
    fitted_law.save(path)
    return path


@pytest.fixture
def shared_datasets():
    if not SHARED_DATASETS.exists():
        pytest.skip(f"../shared/datasets not found at {SHARED_DATASETS}: public run logs are not in this checkout")
    return SHARED_DATASETS
