"""The LossCast-Bench importer on real run directories of ../shared/datasets/losscast/train (skipped when that
folder is absent), on broken copies of them in tmp_path, and through the CLI.

Expected values are read off the runs' config.json / losses.json by hand (numbers in the comments)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bayes_optlaws.cli import main
from bayes_optlaws.importers import import_runs
from bayes_optlaws.importers.losscast import _Config, params_from_architecture
from bayes_optlaws.runs import RunsError, read_runs
from bayes_optlaws.schedules import Schedule

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "losscast" / "train"

STEPLAW = "ncpl_steplaw_step2v2_0618_h1024_ffnh9552_numh16_numl8_lr1.105e-02_bs1024_ti2384_mlr1.00e-05"
MARIN_COSINE = "ncpl_marin_baseline-adam-130m-wd0.3-step5120-d63d4a"
MARIN_LINEAR = "ncpl_marin_sweep-130m-10B-muon0c7c03lr0.016-wd0.1-minlr0-warmup0-b10.8-b20.-a07ec6"
MARIN_SHORT = "ncpl_marin_sweep-130m-10B-adamw0cd0aalr0.008-wd0.1-minlr0-warmup4000-b10.9--a855ee"
MARIN_CUT = "ncpl_marin_sweep-130m-21B-mini5c5f85lr0.004-wd0.1-minlr0-warmup2000-b10.9-b-eaf3db"
NANO_D12 = "nanochat_d12_1B_mlr0.01_wd0.05_wr0.2"
NANO_D8 = "nanochat_d8_ar32_mlr0.02_wd0.1_wr0.35"


@pytest.fixture(scope="module")
def train() -> Path:
    if not TRAIN.exists():
        pytest.skip(f"../shared/datasets/losscast/train not found: {TRAIN}")
    return TRAIN


@pytest.fixture(scope="module")
def rows(train):
    """The seven hand-checked runs imported together, by run_id."""
    names = [STEPLAW, MARIN_COSINE, MARIN_LINEAR, MARIN_SHORT, MARIN_CUT, NANO_D12, NANO_D8]
    df, meta = import_runs("losscast", [str(train / n) for n in names])
    assert list(df["run_id"]) == names
    return df.set_index("run_id"), meta


def _sched(row) -> Schedule:
    return Schedule.from_spec(row["schedule"])


# ---------------------------------------------------------------------------- one run of each family
def test_steplaw_run(rows):
    r = rows[0].loc[STEPLAW]
    assert r["model_params"] == 241_517_568 and r["x_params_rule"] == "n_params"
    assert r["tokens_per_step"] == 1_048_576 and r["tokens"] == 2383 * 1_048_576 == 2_498_756_608
    s = _sched(r)
    assert json.loads(r["schedule"])["family"] == "cosine"
    assert (s.total, s.peak_lr, float(s.lr_at(0)), float(s.lr_at(2000))) == (2383, 0.01105, 0.0, 0.01105)
    assert s.final_lr == pytest.approx(1.0e-5, rel=1e-6)  # mlr1.00e-05 in the name: 0.01105 × 0.000905
    assert s.phases().t1 == 2000  # end of warmup as the feature code sees it
    assert r["final_loss"] == 2.831701 and not r["diverged"]
    assert (r["group"], r["source"], r["x_optimizer"]) == ("steplaw", "losscast", "adamw")
    assert (r["x_weight_decay"], r["x_beta1"], r["x_beta2"], r["x_eps"], r["x_grad_clip"]) == (0.1, 0.9, 0.95,
                                                                                                1e-8, 1.0)


def test_marin_cosine_run(rows):
    r = rows[0].loc[MARIN_COSINE]
    assert r["model_params"] == 130_000_000  # nominal n_params of the config
    assert r["tokens"] == 5119 * 262_144 == 1_341_915_136
    s = _sched(r)
    assert (s.total, s.peak_lr, float(s.lr_at(2000)), s.final_lr) == (5119, 0.008, 0.008, 0.0)
    assert float(s.lr_at(1000)) == pytest.approx(0.004)  # linear warmup from 0
    assert r["final_loss"] == 3.539469 and r["x_last_eval_step"] == 5119 and not r["x_curve_truncated"]
    assert (r["group"], r["x_eval_dataset"], r["x_weight_decay"], r["x_beta2"], r["x_eps"]) == (
        "marin", "c4_en", 0.3, 0.98, 1e-20)


def test_marin_linear_muon_run(rows):
    r = rows[0].loc[MARIN_LINEAR]
    s = _sched(r)
    assert json.loads(r["schedule"])["family"] == "linear"
    assert (s.total, float(s.lr_at(0)), float(s.lr_at(20479 / 2)), s.final_lr) == (20479, 0.016, 0.008, 0.0)
    assert r["tokens"] == 20479 * 262_144 and r["final_loss"] == 3.313405
    assert (r["x_optimizer"], r["x_adam_lr"], r["x_beta1"]) == ("muon", 0.0048, 0.8)


def test_marin_curve_ending_two_steps_early_keeps_the_planned_schedule(rows):
    r = rows[0].loc[MARIN_SHORT]  # total_steps 10241, last evaluation at 10239 (0.02 % early)
    assert _sched(r).total == 10241 and r["tokens"] == 10241 * 524_288
    assert (r["x_planned_total_steps"], r["x_last_eval_step"], r["x_curve_truncated"]) == (10241, 10239, False)
    assert r["final_loss"] == 3.337911


def test_marin_curve_ending_at_10_percent_is_cut_at_its_last_evaluation(rows):
    r = rows[0].loc[MARIN_CUT]  # cosine over 40961 steps, warmup 2000, peak 0.004; evaluated up to step 4000
    s = _sched(r)
    assert s.total == 4000 and r["tokens"] == 4000 * 262_144 and r["x_curve_truncated"]
    assert r["x_planned_total_steps"] == 40961 and r["final_loss"] == 3.788411
    expected_end = 0.004 * 0.5 * (1 + math.cos(math.pi * 2000 / 38961))  # 0.0039740
    assert s.final_lr == pytest.approx(expected_end, abs=1e-5 * 0.004)
    planned = Schedule.from_spec({"family": "cosine", "peak_lr": 0.004, "warmup": 2000, "total": 40961})
    grid = np.arange(4001, dtype=float)
    assert np.max(np.abs(s.lr_at(grid) - planned.lr_at(grid))) <= 1e-5 * 0.004
    assert s.integral() == pytest.approx(planned.integral(0, 4000), rel=1e-5)  # chords: within the LR bound


def test_nanochat_runs_sizes_from_architecture_and_wsd(rows):
    df = rows[0]
    r = df.loc[NANO_D12]
    # untied: 2 × 8192 × 768 = 12,582,912; per layer 4·768² + 2·768·3072 (relu2) + 2·768 (RMSNorm) = 7,079,424;
    # 12 layers + final norm 768 -> 97,536,768
    assert r["model_params"] == 97_536_768 and r["x_params_rule"] == "architecture"
    s = _sched(r)
    spec = json.loads(r["schedule"])
    assert (spec["family"], spec["cooldown"], spec["warmup"]) == ("wsd", 398, 0)  # 0.2 × 1990
    assert (s.total, float(s.lr_at(0)), float(s.lr_at(1592)), s.final_lr) == (1990, 0.01, 0.01, 0.0)
    assert r["tokens"] == 1990 * 524_288 and r["final_loss"] == 2.481795
    assert (r["x_matrix_lr"], r["x_embedding_lr"], r["x_adam_betas_0"], r["x_adam_betas_1"]) == (0.01, 0.6, 0.8,
                                                                                                 0.95)
    assert math.isnan(r["x_grad_clip"]) and r["x_val_bpb"] == 0.905641 and r["group"] == "nanochat"
    small = df.loc[NANO_D8]
    # 2 × 8192 × 256 + 8 × (4·256² + 2·256·1024 + 2·256) + 256
    assert small["model_params"] == 10_490_112
    assert json.loads(small["schedule"])["cooldown"] == 430  # round(0.35 × 1230)
    assert small["final_loss"] == 2.995763


def test_metadata_names_rules_and_groups(rows):
    _, meta = rows
    assert meta["format"] == "losscast" and meta["licence"].startswith("MIT")
    assert set(meta["groups"]) == {"steplaw", "marin", "nanochat"} and meta["n_curves_truncated"] == 1
    assert "filtered diverged" in meta["divergence_rule"] and meta["skipped"] == []


# ---------------------------------------------------------------------------- the size formula
def _configs(train: Path, prefix: str):
    for d in sorted(train.glob(prefix + "*")):
        yield _Config(json.loads((d / "config.json").read_text()), d / "config.json", d)


def test_formula_reproduces_steplaw_n_params_up_to_the_norms(train):
    """All 1,843 StepLaw runs: formula − n_params = the LayerNorm vectors (4·L + 2)·d that StepLaw's count leaves
    out (< 0.03 %)."""
    checked = 0
    for cfg in _configs(train, "ncpl_steplaw_"):
        m = cfg.data["model"]
        diff = params_from_architecture(cfg) - cfg.data["n_params"]
        assert diff == (4 * m["n_layers"] + 2) * m["d_model"], cfg.run
        assert diff / cfg.data["n_params"] < 2.5e-4
        checked += 1
    assert checked == 1843


def test_formula_against_marin_nominal_sizes(train):
    """Marin's n_params are nominal: the formula (SwiGLU, 3 MLP matrices; embeddings counted once) gives
    117,064,192 for "130M" (−10 %) and 251,118,336 for "300M" (−16 %)."""
    counts = {}
    for cfg in _configs(train, "ncpl_marin_baseline-adam-"):
        counts.setdefault(cfg.data["n_params"], set()).add(params_from_architecture(cfg))
    # 32000·512 + 32·(4·512² + 3·512·1365 + 2·512) + 512;
    # 32000·768 + 32·(4·768² + 3·768·2048 + 2·768) + 768
    assert counts == {130e6: {117_064_192}, 300e6: {251_118_336}}


# ---------------------------------------------------------------------------- broken copies
@pytest.fixture()
def good(train, tmp_path) -> Path:
    """A writable copy of the StepLaw run directory (3 evaluations)."""
    return Path(shutil.copytree(train / STEPLAW, tmp_path / STEPLAW))


def _edit_config(run: Path, change) -> None:
    cfg = json.loads((run / "config.json").read_text())
    change(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


def _error(run: Path) -> str:
    with pytest.raises(RunsError) as info:
        import_runs("losscast", [str(run)])
    message = str(info.value)
    assert STEPLAW in message  # every message names the run
    return message


def test_missing_losses_json(good):
    (good / "losses.json").unlink()
    assert "losses.json is missing" in _error(good)


def test_empty_losses(good):
    (good / "losses.json").write_text("{}")
    assert "loss curve is empty" in _error(good)


def test_non_numeric_loss(good):
    (good / "losses.json").write_text('{"1000": 3.39, "2383": "2.83x"}')
    assert "step 2383: loss '2.83x' is not a number" in _error(good)


def test_non_numeric_step_and_nan_loss(good):
    (good / "losses.json").write_text('{"final": 2.8}')
    assert "key 'final' is not a whole step number" in _error(good)
    (good / "losses.json").write_text('{"2383": NaN}')
    assert "step 2383: loss nan must be a finite number > 0" in _error(good)


def test_missing_schedule_field(good):
    _edit_config(good, lambda c: c["schedule"].pop("total_steps"))
    assert "field 'schedule.total_steps' is missing" in _error(good)


def test_unknown_lr_schedule(good):
    _edit_config(good, lambda c: c["schedule"].update(lr_schedule="step"))
    msg = _error(good)
    assert "field 'schedule.lr_schedule' is 'step'" in msg and "warmup_stable_warmdown" in msg


def test_bad_json(good):
    (good / "config.json").write_text('{"run_id": "x",')
    assert "config.json is not valid JSON" in _error(good)


def test_tokens_total_disagreeing_with_steps_times_batch(good):
    _edit_config(good, lambda c: c["data"].update(tokens_total=c["data"]["tokens_total"] * 2))
    assert "field 'data.tokens_total' (4997513216) disagrees with" in _error(good)


def test_config_run_id_must_match_the_directory(good):
    _edit_config(good, lambda c: c.update(run_id="other"))
    assert "field 'run_id' is 'other'" in _error(good)


def test_curve_beyond_total_steps(good):
    (good / "losses.json").write_text('{"1000": 3.39, "2400": 2.83}')
    assert "last step 2400 is after schedule.total_steps (2383)" in _error(good)


def test_warmup_longer_than_the_run(good):
    _edit_config(good, lambda c: c["schedule"].update(warmup_steps=3000))
    assert "field 'schedule.warmup_steps' (3000) is not shorter than total_steps" in _error(good)


def test_skip_bad_lists_each_skipped_run_and_default_stops(train, tmp_path):
    folder = tmp_path / "runs"
    for name in (STEPLAW, NANO_D8, MARIN_COSINE):
        shutil.copytree(train / name, folder / name)
    (folder / NANO_D8 / "losses.json").write_text("{}")
    (folder / MARIN_COSINE / "config.json").write_text("not json")
    with pytest.raises(RunsError, match="loss curve is empty"):
        import_runs("losscast", [str(folder)])
    df, meta = import_runs("losscast", [str(folder)], skip_bad=True)
    assert list(df["run_id"]) == [STEPLAW]
    reasons = {s["run"]: s["reason"] for s in meta["skipped"]}
    assert set(reasons) == {NANO_D8, MARIN_COSINE}
    assert "empty" in reasons[NANO_D8] and "not valid JSON" in reasons[MARIN_COSINE]


def test_incomplete_skip_leaves_cut_curves_out(train):
    df, meta = import_runs("losscast", [str(train / MARIN_CUT), str(train / MARIN_SHORT)], incomplete="skip")
    assert list(df["run_id"]) == [MARIN_SHORT] and meta["incomplete_skipped"] == [MARIN_CUT]


def test_parent_of_a_folder_of_runs_gets_a_hint(train, tmp_path):
    shutil.copytree(train / STEPLAW, tmp_path / "split" / STEPLAW)
    with pytest.raises(RunsError, match="holds run directories itself: pass it"):
        import_runs("losscast", [str(tmp_path)])


# ---------------------------------------------------------------------------- CLI
def test_cli_import_writes_a_valid_runs_table(train, tmp_path, capsys):
    folder = tmp_path / "split"
    for name in (NANO_D8, NANO_D12):
        shutil.copytree(train / name, folder / name)
    out = tmp_path / "runs.csv"
    # a folder of run directories and a single run directory in one call
    assert main(["import", "losscast", str(folder), str(train / STEPLAW), "--out", str(out)]) == 0
    assert "imported 3 runs" in capsys.readouterr().out
    table, meta = read_runs(out)
    assert sorted(table["run_id"]) == sorted([NANO_D8, NANO_D12, STEPLAW])
    assert table.set_index("run_id").loc[NANO_D12, "model_params"] == 97_536_768
    assert meta["format"] == "losscast" and meta["n_runs"] == 3


def test_cli_bad_directory_is_one_error_line_and_skip_bad_lists_it(train, tmp_path, capsys):
    folder = tmp_path / "split"
    for name in (STEPLAW, NANO_D8):
        shutil.copytree(train / name, folder / name)
    (folder / NANO_D8 / "losses.json").unlink()
    assert main(["import", "losscast", str(folder), "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and NANO_D8 in err[0] and "losses.json" in err[0]
    assert main(["import", "losscast", str(folder), "--out", str(tmp_path / "b.csv"), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {NANO_D8}:" in captured.err and "imported 1 runs" in captured.out


def test_a_step_logged_twice_is_an_error_not_the_last_value(good):
    (good / "losses.json").write_text('{"1000": 3.39, "1000": 3.10, "2383": 2.83}')
    assert "has the key '1000' twice (values 3.39 and 3.1)" in _error(good)


def test_a_final_loss_above_uniform_predictions_is_imported_as_diverged(good, tmp_path, capsys):
    """StepLaw's vocabulary (config model.vocab_size) puts uniform predictions at ln(V) nats: a curve ending at 55
    nats did not train.  It is imported as diverged, with a warning the CLI prints; the real run is not."""
    vocab = json.loads((good / "config.json").read_text())["model"]["vocab_size"]
    df, meta = import_runs("losscast", [str(good)])
    assert not df["diverged"].iloc[0] and df["final_loss"].iloc[0] < np.log(vocab)
    (good / "losses.json").write_text('{"1000": 3.39, "2383": 55.0}')
    df, meta = import_runs("losscast", [str(good)])
    assert df["diverged"].iloc[0] and df["final_loss"].iloc[0] == 55.0
    assert meta["warnings"] == [f"{STEPLAW}: final loss 55 nats is above ln(vocab_size {vocab}) = "
                                f"{np.log(vocab):.4g}, the loss of uniform predictions: imported as diverged"]
    assert "ln(model.vocab_size)" in meta["divergence_rule"]
    assert main(["import", "losscast", str(good), "--out", str(tmp_path / "runs.csv")]) == 0
    assert "imported as diverged" in capsys.readouterr().err


def test_a_vocabulary_of_one_token_is_refused(good):
    _edit_config(good, lambda cfg: cfg["model"].update(vocab_size=1))
    assert "model.vocab_size is 1; a vocabulary has at least 2 tokens" in _error(good)
