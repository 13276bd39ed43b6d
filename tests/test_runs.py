"""Unit tests for bayes_optlaws.runs: validation of runs tables (errors name row and column), IO, history."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.runs import (REQUIRED_COLUMNS, RunsError, history_of, read_candidates, read_metadata, read_runs,
                                read_table, validate_candidates, validate_runs, write_runs)

TPS = 64


def sched(total: int = 100, peak: float = 1e-3, warmup: int = 10) -> str:
    return json.dumps({"family": "linear", "peak_lr": peak, "warmup": warmup, "total": total})


def good_table() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["a", "b", "c"],
        "model_params": [1_000_000, 2_000_000, 3_000_000],
        "tokens": [100 * TPS, 200 * TPS, 100 * TPS],
        "tokens_per_step": [TPS] * 3,
        "schedule": [sched(100), sched(200, 2e-3), sched(100, 5e-2)],
        "final_loss": [3.1, 2.9, np.nan],
        "diverged": [False, False, True],
    })


def expect_error(df: pd.DataFrame, *fragments: str) -> str:
    with pytest.raises(RunsError) as info:
        validate_runs(df, where="runs.csv")
    msg = str(info.value)
    assert msg.startswith("runs.csv: ")
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------- good tables
def test_validate_good_table_types_and_values():
    df = good_table()
    out = validate_runs(df)
    assert list(out.columns) == list(REQUIRED_COLUMNS)
    assert list(out["run_id"]) == ["a", "b", "c"]
    assert out["model_params"].dtype == np.int64
    assert out["tokens"].tolist() == [6400, 12800, 6400]
    assert out["diverged"].dtype == bool and out["diverged"].tolist() == [False, False, True]
    assert out["final_loss"].iloc[0] == 3.1 and np.isnan(out["final_loss"].iloc[2])
    # the input is not modified
    assert df["final_loss"].iloc[0] == 3.1
    pd.testing.assert_frame_equal(df, good_table())


def test_validate_accepts_string_typed_columns_like_a_csv():
    df = good_table().astype(str)
    df.loc[2, "final_loss"] = "nan"
    out = validate_runs(df)
    assert out["model_params"].tolist() == [1_000_000, 2_000_000, 3_000_000]
    assert out["diverged"].tolist() == [False, False, True]
    assert out["final_loss"].iloc[1] == 2.9


@pytest.mark.parametrize("raw, value", [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True),
                                        ("n", False), (True, True), (np.False_, False), ("1.0", True)])
def test_diverged_accepts_boolean_spellings(raw, value):
    df = good_table()
    df["diverged"] = df["diverged"].astype(object)
    df.loc[0, "diverged"] = raw
    assert bool(validate_runs(df)["diverged"].iloc[0]) is value


def test_optional_and_x_columns_allowed():
    df = good_table()
    df["x_lr_label"] = ["lo", "mid", "hi"]
    df["seed"] = [0, 1, 2]
    df["group"] = "main"
    df["source"] = "unit test"
    out = validate_runs(df)
    assert out["x_lr_label"].tolist() == ["lo", "mid", "hi"]
    assert out["seed"].tolist() == [0, 1, 2]


def test_nan_loss_allowed_for_diverged_run():
    df = good_table()
    df.loc[2, "final_loss"] = np.nan
    df.loc[2, "diverged"] = True
    assert np.isnan(validate_runs(df)["final_loss"].iloc[2])


def test_tokens_tolerate_one_step_rounding():
    df = good_table()
    df.loc[0, "tokens"] = 100 * TPS + TPS // 2  # within one step
    validate_runs(df)


# ---------------------------------------------------------------------------- bad tables: row + field named
def test_missing_column():
    expect_error(good_table().drop(columns=["tokens_per_step"]), "missing column(s) tokens_per_step")


def test_unknown_column():
    df = good_table()
    df["lr"] = 1.0
    expect_error(df, "unknown column(s) lr", "x_")


def test_non_numeric_model_params():
    df = good_table()
    df["model_params"] = df["model_params"].astype(object)
    df.loc[1, "model_params"] = "1.2B"
    expect_error(df, "run_id 'b'", "column 'model_params'", "'1.2B' is not a number")


def test_fractional_model_params():
    df = good_table()
    df["model_params"] = df["model_params"].astype(float)
    df.loc[0, "model_params"] = 1.5
    expect_error(df, "run_id 'a'", "column 'model_params'", "whole number")


@pytest.mark.parametrize("value", [-6400, 0])
def test_non_positive_tokens(value):
    df = good_table()
    df.loc[1, "tokens"] = value
    expect_error(df, "row 3 (run_id 'b')", "column 'tokens'", "must be > 0")


def test_zero_tokens_per_step():
    df = good_table()
    df.loc[0, "tokens_per_step"] = 0
    expect_error(df, "run_id 'a'", "column 'tokens_per_step'", "must be > 0")


def test_non_finite_tokens():
    df = good_table()
    df["tokens"] = df["tokens"].astype(float)
    df.loc[0, "tokens"] = np.inf
    expect_error(df, "run_id 'a'", "column 'tokens'", "finite")


def test_bad_diverged_value():
    df = good_table()
    df["diverged"] = df["diverged"].astype(object)
    df.loc[0, "diverged"] = "maybe"
    expect_error(df, "run_id 'a'", "column 'diverged'", "'maybe' is not true/false")


def test_nan_loss_on_non_diverged_run():
    df = good_table()
    df.loc[1, "final_loss"] = np.nan
    expect_error(df, "run_id 'b'", "column 'final_loss'", "did not diverge")


def test_non_numeric_and_negative_loss():
    df = good_table()
    df["final_loss"] = df["final_loss"].astype(object)
    df.loc[0, "final_loss"] = "low"
    expect_error(df, "run_id 'a'", "column 'final_loss'", "'low' is not a number")
    df = good_table()
    df.loc[0, "final_loss"] = -1.0
    expect_error(df, "run_id 'a'", "column 'final_loss'", "must be > 0")


def test_tokens_not_steps_times_tokens_per_step():
    df = good_table()
    df.loc[1, "tokens"] = 100 * TPS  # schedule lasts 200 steps
    expect_error(df, "run_id 'b'", "'tokens'", "200 steps", "12800")


def test_duplicate_run_id():
    df = good_table()
    df.loc[2, "run_id"] = "a"
    expect_error(df, "column 'run_id'", "'a' appears more than once")


def test_empty_run_id():
    df = good_table()
    df.loc[1, "run_id"] = ""
    expect_error(df, "row 3", "column 'run_id'", "empty")


def test_empty_table():
    expect_error(good_table().iloc[0:0], "empty")


@pytest.mark.parametrize("bad, frag", [("{not json", "not valid JSON"),
                                       ("", "empty"),
                                       (json.dumps({"family": "linear", "peak_lr": -1, "warmup": 1, "total": 100}),
                                        "'peak_lr' must be >= 0"),
                                       (json.dumps({"family": "exp", "total": 100}), "unknown schedule family")])
def test_bad_schedule(bad, frag):
    df = good_table()
    df.loc[1, "schedule"] = bad
    expect_error(df, "row 3 (run_id 'b')", "column 'schedule'", frag)


def test_unknown_parent_run_id():
    df = good_table()
    df["parent_run_id"] = [None, "zzz", None]
    expect_error(df, "run_id 'b'", "column 'parent_run_id'", "'zzz' is not a run_id")


def test_self_parent():
    df = good_table()
    df["parent_run_id"] = [None, "b", None]
    expect_error(df, "run_id 'b'", "column 'parent_run_id'", "own parent")


def test_parent_cycle():
    df = good_table()
    df["parent_run_id"] = ["c", "a", "b"]
    expect_error(df, "run_id 'a'", "parent_run_id", "loops back")


def test_runs_error_is_value_error():
    assert issubclass(RunsError, ValueError)


# ---------------------------------------------------------------------------- history
def chain_table() -> pd.DataFrame:
    df = good_table()
    df["parent_run_id"] = [None, "a", "b"]  # a -> b -> c
    return df


def test_history_of_is_oldest_first():
    runs = validate_runs(chain_table())
    assert pd.isna(runs["parent_run_id"].iloc[0])  # blank parent -> missing (None/NaN), never the string 'None'
    assert runs["parent_run_id"].tolist()[1:] == ["a", "b"]
    assert [r["run_id"] for r in history_of(runs, "c")] == ["a", "b"]
    assert [r["run_id"] for r in history_of(runs, "b")] == ["a"]
    assert history_of(runs, "a") == []
    assert history_of(validate_runs(good_table()), "a") == []
    # rows carry their data
    assert history_of(runs, "c")[0]["model_params"] == 1_000_000
    with pytest.raises(RunsError, match="'zzz' is not in the runs table"):
        history_of(runs, "zzz")


def test_history_from_csv_with_empty_parents(tmp_path):
    path = tmp_path / "runs.csv"
    chain_table().to_csv(path, index=False)
    runs, meta = read_runs(path)
    assert meta == {}
    assert [r["run_id"] for r in history_of(runs, "c")] == ["a", "b"]


# ---------------------------------------------------------------------------- IO
def test_write_runs_refuses_overwrite_and_writes_side_car(tmp_path):
    path = tmp_path / "sub" / "runs.csv"
    meta = {"divergence_rule": "loss > 10 or NaN", "param_rule": "embeddings counted"}
    assert write_runs(good_table(), path, meta) == path
    assert path.exists()
    assert json.loads((tmp_path / "sub" / "runs.csv.meta.json").read_text()) == meta
    before = path.read_text()
    with pytest.raises(RunsError, match="already exists"):
        write_runs(good_table().iloc[:1], path, meta)
    assert path.read_text() == before
    write_runs(good_table().iloc[:1], path, {"v": 2}, force=True)
    assert len(pd.read_csv(path)) == 1
    assert read_metadata(path) == {"v": 2}
    # no stray temporary files
    assert sorted(p.name for p in path.parent.iterdir()) == ["runs.csv", "runs.csv.meta.json"]


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "runs.csv"
    df = chain_table()
    df["x_note"] = ["p, q", "r", "s"]
    write_runs(df, path, {"loss": "val nats"})
    back, meta = read_runs(path)
    assert meta == {"loss": "val nats"}
    expected = validate_runs(df)
    assert back["run_id"].tolist() == expected["run_id"].tolist()
    assert back["schedule"].tolist() == expected["schedule"].tolist()
    assert back["tokens"].tolist() == expected["tokens"].tolist()
    assert back["diverged"].tolist() == expected["diverged"].tolist()
    np.testing.assert_array_equal(back["final_loss"].to_numpy(), expected["final_loss"].to_numpy())
    assert pd.isna(back["parent_run_id"].iloc[0]) and back["parent_run_id"].tolist()[1:] == ["a", "b"]
    assert back["x_note"].tolist() == ["p, q", "r", "s"]


def test_write_runs_validates_first(tmp_path):
    df = good_table()
    df.loc[0, "tokens"] = -1
    with pytest.raises(RunsError, match="column 'tokens'"):
        write_runs(df, tmp_path / "runs.csv")
    assert not (tmp_path / "runs.csv").exists()


def test_read_errors(tmp_path):
    with pytest.raises(RunsError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(RunsError, match="is a directory"):
        read_table(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(RunsError, match="cannot be read"):
        read_table(tmp_path / "empty.csv")
    good = tmp_path / "r.csv"
    good_table().to_csv(good, index=False)
    (tmp_path / "r.csv.meta.json").write_text("{broken")
    with pytest.raises(RunsError, match="metadata is not valid JSON"):
        read_runs(good)


def test_read_runs_reports_the_file_in_errors(tmp_path):
    path = tmp_path / "bad.csv"
    df = good_table()
    df.loc[1, "final_loss"] = np.nan
    df.to_csv(path, index=False)
    with pytest.raises(RunsError, match=r"bad\.csv: row 3 \(run_id 'b'\), column 'final_loss'"):
        read_runs(path)


def test_read_runs_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "runs.parquet"
    good_table().to_parquet(path)
    runs, _ = read_runs(path)
    assert runs["run_id"].tolist() == ["a", "b", "c"]


# ---------------------------------------------------------------------------- candidates
def test_read_candidates_csv(tmp_path):
    path = tmp_path / "cands.csv"
    pd.DataFrame({"name": ["short", "long"], "schedule": [sched(100), sched(200)],
                  "model_params": [5_000_000, 5_000_000], "tokens_per_step": [TPS, TPS]}).to_csv(path, index=False)
    c = read_candidates(path)
    assert c["name"].tolist() == ["short", "long"]
    assert json.loads(c["schedule"].iloc[1])["total"] == 200
    assert c["model_params"].tolist() == [5_000_000, 5_000_000]


def test_read_candidates_toml(tmp_path):
    path = tmp_path / "cands.toml"
    path.write_text(
        '[[candidate]]\nname = "wsd"\nschedule = { family = "wsd", peak_lr = 1e-3, warmup = 10, total = 100, '
        'cooldown = 20 }\nmodel_params = 2000000\n\n'
        '[[candidate]]\nname = "lin"\nschedule = \'{"family": "linear", "peak_lr": 1e-3, "warmup": 10, '
        '"total": 100}\'\nmodel_params = 1000000\n')
    c = read_candidates(path)
    assert c["name"].tolist() == ["wsd", "lin"]
    assert json.loads(c["schedule"].iloc[0]) == {"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 100,
                                                 "cooldown": 20}
    assert c["model_params"].tolist() == [2_000_000, 1_000_000]


def test_candidates_with_target_column_given_for_only_some_rows(tmp_path):
    # blanks in an optional target column are allowed: --params / --tokens-per-step fills them at ranking time
    path = tmp_path / "cands.toml"
    path.write_text('[[candidate]]\nname = "a"\nschedule = \'%s\'\n\n'
                    '[[candidate]]\nname = "b"\nschedule = \'%s\'\nmodel_params = 1000000\n' % (sched(), sched()))
    c = read_candidates(path)
    assert c["model_params"].isna().tolist() == [True, False] and int(c["model_params"].iloc[1]) == 1_000_000


def test_read_candidates_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[candidate]\nname=")
    with pytest.raises(RunsError, match="not valid TOML"):
        read_candidates(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("title = 'x'\n")
    with pytest.raises(RunsError, match=r"\[\[candidate\]\]"):
        read_candidates(empty)
    with pytest.raises(RunsError, match="no such file"):
        read_candidates(tmp_path / "missing.toml")
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"name": ["x", "x"], "schedule": [sched(), sched()]}).to_csv(dup, index=False)
    with pytest.raises(RunsError, match="'x' appears more than once"):
        read_candidates(dup)


def test_validate_candidates_names_row_and_field():
    df = pd.DataFrame({"name": ["ok", "broken"], "schedule": [sched(), "{oops"]})
    with pytest.raises(RunsError, match=r"row 3 \(name 'broken'\), column 'schedule'"):
        validate_candidates(df)
    df = pd.DataFrame({"name": ["ok", "neg"], "schedule": [sched(), sched()], "model_params": [10, -5]})
    with pytest.raises(RunsError, match="column 'model_params': must be > 0"):
        validate_candidates(df)
    with pytest.raises(RunsError, match="missing column"):
        validate_candidates(pd.DataFrame({"name": ["a"]}))
    with pytest.raises(RunsError, match="unknown column"):
        validate_candidates(pd.DataFrame({"name": ["a"], "schedule": [sched()], "lr": [1]}))


# ---------------------------------------------------------------------------- bad input found by a battery (2026-12-07)
def test_seed_must_be_a_whole_number_or_blank():
    df = good_table().assign(seed=[0, None, 2])
    assert validate_runs(df)["seed"].tolist()[0] == 0
    assert pd.isna(validate_runs(df)["seed"].iloc[1])
    expect_error(good_table().assign(seed=[0, 0.5, 1]), "row 3 (run_id 'b')", "column 'seed'", "whole number")
    expect_error(good_table().assign(seed=["0", "abc", "1"]), "row 3 (run_id 'b')", "column 'seed'", "not a number")


def test_a_count_beyond_int64_is_refused_not_wrapped():
    df = good_table()
    df["model_params"] = [1_000_000, 1e30, 3_000_000]
    expect_error(df, "row 3 (run_id 'b')", "column 'model_params'", "too large")


def test_ensure_writable_refuses_a_directory_a_file_parent_and_an_existing_companion(tmp_path):
    from bayes_optlaws.runs import ensure_writable

    (tmp_path / "adir").mkdir()
    with pytest.raises(RunsError, match="is a directory"):
        ensure_writable(tmp_path / "adir", force=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunsError, match="afile is a file, not a directory"):
        ensure_writable(tmp_path / "afile" / "out.json", force=True)
    (tmp_path / "runs.csv.meta.json").write_text("{}")
    with pytest.raises(RunsError, match=r"runs\.csv\.meta\.json already exists"):
        write_runs(good_table(), tmp_path / "runs.csv", {"v": 1})
    assert not (tmp_path / "runs.csv").exists()  # nothing written before the refusal
    assert ensure_writable(tmp_path / "new" / "out.json", force=False) == tmp_path / "new" / "out.json"


def test_candidate_errors_count_rows_as_the_file_does_and_name_the_candidate(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame({"name": ["a", "b", "c"], "schedule": [sched()] * 3,
                  "model_params": [None, None, "x"]}).to_csv(path, index=False)
    with pytest.raises(RunsError, match=r"row 4 \(name 'c'\), column 'model_params': 'x' is not a number"):
        read_candidates(path)


def test_candidate_files_that_are_not_tables_or_not_csv_toml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("candidate = [1, 2]\n")
    with pytest.raises(RunsError, match="candidate 1 is 1, not a table"):
        read_candidates(toml)
    toml.write_text("[[candidate]]\nname = 'a'\nschedule = 5\n")
    with pytest.raises(RunsError, match="5 is not a schedule"):
        read_candidates(toml)
    js = tmp_path / "c.json"
    js.write_text("[]")
    with pytest.raises(RunsError, match="not JSON"):
        read_candidates(js)


@pytest.mark.parametrize("value, allow_zero, message", [
    (0, False, "above 0"), (-5, False, "above 0"), (float("nan"), False, "above 0"), (150000.7, False, "whole"),
    ("abc", False, "whole number"), (1e30, False, "more than this package accepts"), (-1, True, "0 or more")])
def test_checked_count_names_the_argument(value, allow_zero, message):
    from bayes_optlaws.runs import checked_count

    with pytest.raises(RunsError, match=message) as info:
        checked_count(value, "model_params (--params)", allow_zero=allow_zero)
    assert "model_params (--params)" in str(info.value)


def test_checked_count_accepts_whole_numbers_in_any_type():
    from bayes_optlaws.runs import checked_count

    assert checked_count(793_344.0, "x") == 793_344
    assert checked_count("4096", "x") == 4096
    assert checked_count(np.int64(0), "seed", allow_zero=True) == 0


def test_a_final_loss_no_language_model_reports_is_refused_unless_diverged():
    df = good_table()
    df["final_loss"] = [3.1, 1e300, np.nan]
    expect_error(df, "row 3 (run_id 'b')", "column 'final_loss'", "not a plausible cross-entropy")
    df["diverged"] = [False, True, True]
    assert validate_runs(df)["final_loss"].iloc[1] == 1e300


def test_metadata_that_is_not_an_object_is_an_error(tmp_path):
    path = tmp_path / "runs.csv"
    (tmp_path / "runs.csv.meta.json").write_text("[1, 2]")
    with pytest.raises(RunsError, match="metadata must be a JSON object"):
        read_metadata(path)


def test_history_of_names_a_missing_earlier_stage():
    df = pd.DataFrame({"run_id": ["b"], "parent_run_id": ["a"]})
    with pytest.raises(RunsError, match="'a', an earlier stage of 'b', is not in the runs table"):
        history_of(df, "b")
