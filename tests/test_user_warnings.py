"""Warnings are attributed to the caller's code (bayes_optlaws.user_warnings), not to a line of the package."""

from __future__ import annotations

import warnings

import pandas as pd

from bayes_optlaws.extrapolation import ExtrapolationWarning
from bayes_optlaws.paths import DEFAULT_CANDIDATES
from bayes_optlaws.user_warnings import warn_user


def test_warn_user_points_at_the_first_frame_outside_the_package():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warn_user("look here", ExtrapolationWarning)
    assert [(w.filename, w.category, str(w.message)) for w in seen] == [(__file__, ExtrapolationWarning,
                                                                          "look here")]


def test_a_prediction_far_from_the_data_warns_at_the_users_line():
    """The shipped model at 3M parameters warns twice from deep inside predict_draws (the anchor's token range, draws
    at the ceiling); both are reported at this file's line, whichever internal path raised them."""
    import bayes_optlaws as bol

    law = bol.load()
    cand = pd.read_csv(DEFAULT_CANDIDATES).assign(model_params=3_000_000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        law.predict_draws(cand)
    ours = [w for w in seen if issubclass(w.category, ExtrapolationWarning)]
    assert len(ours) >= 2
    assert {w.filename for w in ours} == {__file__}
