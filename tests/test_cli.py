import json

import pandas as pd
import pytest

from bayes_optlaws.cli import main


@pytest.fixture
def cands_csv(tmp_path):
    path = tmp_path / "cands.csv"
    pd.DataFrame({"name": ["lin", "wsd"], "schedule": [
        json.dumps({"family": "linear", "peak_lr": 1e-2, "warmup": 100, "total": 1000}),
        json.dumps({"family": "wsd", "peak_lr": 3e-2, "warmup": 100, "total": 1000, "cooldown": 200})],
        "model_params": 80_000, "tokens_per_step": 4096}).to_csv(path, index=False)
    return path


def test_rank_prints_table_and_writes_json(saved_model, cands_csv, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["rank", str(cands_csv), "--model", str(saved_model), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "P(best)" in text and "lin" in text and "wsd" in text
    data = json.loads(out.read_text())
    assert {c["name"] for c in data["candidates"]} == {"lin", "wsd"}
    for c in data["candidates"]:
        assert c["loss_q05"] <= c["loss_q50"] <= c["loss_q95"]
        assert 0 <= c["p_best"] <= 1 and 0 <= c["p_diverge"] <= 1
    assert "picks" in data and "near_ties" in data
    # never overwrite without --force
    assert main(["rank", str(cands_csv), "--model", str(saved_model), "--json", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_rank_rescales_to_a_token_budget(saved_model, cands_csv, capsys):
    assert main(["rank", str(cands_csv), "--model", str(saved_model), "--tokens", str(2000 * 4096)]) == 0


@pytest.mark.parametrize("content, message", [
    ("name,schedule\nx,{not json}\n", "not valid JSON"),
    ("name,sched\nx,1\n", "missing column"),
    ('name,schedule,model_params,tokens_per_step\nx,"{""family"": ""linear"", ""peak_lr"": -1, ""warmup"": 1, '
     '""total"": 10}",1000,4096\n', "peak_lr"),
    ('name,schedule,model_params,tokens_per_step\nx,"{""family"": ""linear"", ""peak_lr"": 0.01, ""warmup"": 50, '
     '""total"": 10}",1000,4096\n', "warmup"),
    ("name,schedule\n", "empty"),
])
def test_bad_candidates_give_one_clear_error(saved_model, tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["rank", str(path), "--model", str(saved_model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_bad_model_dir(cands_csv, tmp_path, capsys):
    assert main(["rank", str(cands_csv), "--model", str(tmp_path)]) == 2
    assert "not a bayes_optlaws model directory" in capsys.readouterr().err


def test_fit_refuses_existing_output(saved_model, capsys):
    assert main(["fit", "--out", str(saved_model)]) == 2
    assert "--force" in capsys.readouterr().err


def test_optimize_short_list(saved_model, tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["optimize", "--model", str(saved_model), "--params", "80000", "--tokens", str(1000 * 4096),
                 "--families", "linear,wsd-linear", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["searched"] > 20 and data["picks"]["by_expected_loss"]
    assert main(["optimize", "--model", str(saved_model), "--params", "80000", "--tokens", "4096000",
                 "--families", "nope"]) == 2


def test_fit_checks_its_output_before_sampling(tmp_path, capsys, monkeypatch):
    import bayes_optlaws.api as api

    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("fit ran before --out was checked"))
    (tmp_path / "afile").write_text("x")
    assert main(["fit", "--out", str(tmp_path / "afile"), "--force"]) == 2
    assert "it is a file" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "settings.json").write_text("{}")
    (mine / "notes.txt").write_text("keep")
    assert main(["fit", "--out", str(mine), "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("args, message", [
    (["--params", "0"], "model_params (--params) must be a whole number above 0"),
    (["--tokens-per-step", "0"], "tokens_per_step (--tokens-per-step)"),
    (["--tokens", "100"], "less than one step"),
    (["--seed", "-1"], "random_seed (--seed)"),
    (["--delta", "nan"], "near-tie threshold delta (--delta)"),
    (["--max-p-diverge", "2"], "max_p_diverge (--max-p-diverge)"),
])
def test_rank_targets_and_settings_that_cannot_mean_anything(saved_model, cands_csv, capsys, args, message):
    assert main(["rank", str(cands_csv), "--model", str(saved_model), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_rank_json_to_a_directory_is_refused_before_ranking(saved_model, cands_csv, tmp_path, capsys):
    assert main(["rank", str(cands_csv), "--model", str(saved_model), "--json", str(tmp_path), "--force"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_fit_prints_the_factor_of_each_fitted_size_step(fitted_law, tmp_path, capsys, monkeypatch):
    import bayes_optlaws.api as api

    monkeypatch.setattr(api, "fit", lambda *a, **k: fitted_law)  # the session's fit stands in for sampling
    assert main(["fit", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("an unseen model size:"))
    for pair in fitted_law.size_step_.pairs:
        assert f"{pair['k']:.2f} (" in line
