"""The HTML report: self-contained, every picture embedded, refuses to overwrite, renders in a headless browser."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws import paths, report
from bayes_optlaws.runs import RunsError

IMG = re.compile(r"<img\b[^>]*>", re.S)
SRC = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]*)"')
CHROMIUM = Path("/usr/bin/chromium")
# after load: all images decoded with a real size -> <body data-images-ok="true" data-images="N">
CHECK_SCRIPT = """<script>window.addEventListener('load', function () {
  var im = Array.prototype.slice.call(document.images);
  var ok = im.length > 0 && im.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-ok', ok ? 'true' : 'false');
  document.body.setAttribute('data-images', String(im.length));
});</script>"""


@pytest.fixture(scope="module")
def evaluation(synthetic_table):
    from test_plots import stub_evaluation

    return stub_evaluation(synthetic_table)


@pytest.fixture(scope="module")
def written_report(fitted_law, evaluation, tmp_path_factory):
    """One full report (default candidates = the grid around the best run; a stub evaluation)."""
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "DEFAULT_CANDIDATES", out / "no-such-candidates.csv")
        path = report.write_report(fitted_law, out, evaluation=evaluation)
    return path


def test_report_is_one_self_contained_file_with_every_image_embedded(written_report):
    assert written_report.name == "report.html"
    assert [p.name for p in written_report.parent.iterdir()] == ["report.html"]
    text = written_report.read_text()
    imgs = IMG.findall(text)
    # loss surface, divergence map, PPC, candidates, calibration, ablation, parameters
    assert len(imgs) == 7
    for tag in imgs:
        m = SRC.search(tag)
        assert m and len(m.group(1)) > 1000, tag[:120]
        png = base64.b64decode(m.group(1), validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert 'alt="' in tag
    # nothing is fetched from elsewhere
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", text)
    assert "<link" not in text and "@import" not in text


def test_report_sections_and_tables(written_report, fitted_law, evaluation):
    text = written_report.read_text()
    for anchor in ("summary", "surface", "divergence", "ppc", "candidates", "evaluation", "diagnostics"):
        assert f'id="{anchor}"' in text
    for alt in ("loss surface", "divergence map", "posterior predictive check by block", "candidate ranking",
                "calibration (evaluation)", "ablation (evaluation)"):
        assert f'alt="{alt}"' in text
    spec = fitted_law.spec_
    assert f"{spec.p_s:g} / {spec.p_cc:g} / {spec.p_e:g} / {spec.p_m:g}" in text
    assert "max R-hat" in text and "divergent transitions" in text
    warnings = list(fitted_law.loss_diagnostics_["warnings"]) + list((fitted_law.div_diagnostics_ or {}).get(
        "warnings", []))
    if warnings:
        assert 'class="warn"' in text
        for w in warnings:
            assert report._e(w) in text
    else:
        assert "No warnings" in text
    # the ranking table has one row per candidate and names the picks
    assert "a small grid around the best observed run" in text
    assert "Pick by expected loss" in text and "Risk-aware pick" in text
    for name in evaluation.methods:
        assert report._e(name) in text


def test_report_refuses_to_overwrite(tmp_path, fitted_law, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("keep me")
    with pytest.raises(RunsError, match="already exists"):
        report.write_report(fitted_law, tmp_path)
    assert target.read_text() == "keep me"
    monkeypatch.setattr(report, "render_report", lambda *a, **k: "<html>new</html>")
    assert report.write_report(fitted_law, tmp_path, force=True) == target
    assert target.read_text() == "<html>new</html>"


def test_default_candidates(fitted_law, tmp_path, monkeypatch):
    block = report.focus_block(fitted_law)
    ok = fitted_law.train_runs_[~fitted_law.train_runs_["diverged"]]
    assert block["final_loss"] == ok["final_loss"].min()
    monkeypatch.setattr(paths, "DEFAULT_CANDIDATES", tmp_path / "missing.csv")
    cands, desc = report.default_candidates(fitted_law, block)
    assert len(cands) >= 9 and "grid around the best observed run" in desc
    shipped = tmp_path / "candidates.csv"
    shipped.write_text('name,schedule\nshort,"{""family"": ""linear"", ""peak_lr"": 0.01, ""warmup"": 10, '
                       '""total"": 1000}"\n')
    monkeypatch.setattr(paths, "DEFAULT_CANDIDATES", shipped)
    cands, desc = report.default_candidates(fitted_law, block)
    assert list(cands["name"]) == ["short"] and "shipped example candidates" in desc


def test_bad_evaluation_file_is_a_clear_error(tmp_path):
    with pytest.raises(RunsError, match="does not exist"):
        report._load_evaluations(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(RunsError, match="bad.json: not an evaluation result"):
        report._load_evaluations([bad])
    bad.write_text('{"methods": [1, 2]}')
    with pytest.raises(RunsError, match="not an evaluation result"):
        report._load_evaluations([bad])
    bad.write_text("{not json")
    with pytest.raises(RunsError, match="not valid JSON"):
        report._load_evaluations([bad])
    with pytest.raises(RunsError, match="cannot read an evaluation from an object of type 'int'"):
        report._load_evaluations([3])


def test_evaluation_json_gives_the_same_calibration_and_ablation(evaluation, tmp_path):
    """The report converts an evaluation's JSON back into an EvaluationResult: the plots see the same numbers."""
    from bayes_optlaws import plots

    path = tmp_path / "eval.json"
    path.write_text(json.dumps(evaluation.to_dict(include_assignment=False)))
    [(label, from_json)] = report._load_evaluations(path)
    assert label == "eval.json"
    assert set(from_json.methods) == set(evaluation.methods)
    assert "pbest_reliability" not in from_json.methods["bayes_optlaw"]
    pd.testing.assert_frame_equal(from_json.reliability["bayes_optlaw"], evaluation.reliability["bayes_optlaw"],
                                  check_dtype=False)
    direct, again = plots.calibration(evaluation), plots.calibration(from_json)
    levels, observed, n = direct.bol_data["coverage"]["bayes_optlaw"]
    assert levels == [0.5, 0.8, 0.9] and n == evaluation.methods["bayes_optlaw"]["n"] > 0
    assert again.bol_data["coverage"]["bayes_optlaw"] == (levels, observed, n)
    # the coverage drawn is the share of held-out runs inside their intervals, from the per-run predictions
    p = evaluation.predictions.dropna(subset=["lo90:bayes_optlaw"])
    inside = (p["lo90:bayes_optlaw"] <= p["final_loss"]) & (p["final_loss"] <= p["hi90:bayes_optlaw"])
    assert observed[-1] == pytest.approx(inside.mean()) and len(p) == n
    assert (plots.ablation(from_json).bol_data["steps"] == plots.ablation(evaluation).bol_data["steps"])
    [(_, same)] = report._load_evaluations([evaluation])
    assert same is evaluation


def test_cli_report(saved_model, tmp_path, monkeypatch, capsys):
    from bayes_optlaws.cli import build_parser, main

    args = build_parser().parse_args(["report", "--model", str(saved_model), "--evaluation", "a.json",
                                      "--evaluation", "b.json", "--out", str(tmp_path), "--force"])
    assert args.func is report.cmd_report and args.evaluation == ["a.json", "b.json"] and args.force
    (tmp_path / "report.html").write_text("old")
    assert main(["report", "--model", str(saved_model), "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    seen = {}

    def fake_render(law, candidates, evaluation, **kw):
        seen.update(law=law, evaluation=evaluation, **kw)
        return "<html>ok</html>"

    monkeypatch.setattr(report, "render_report", fake_render)
    assert main(["report", "--model", str(saved_model), "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "report.html").read_text() == "<html>ok</html>"
    assert "wrote" in capsys.readouterr().out
    assert seen["model_label"] == str(saved_model) and hasattr(seen["law"], "loss_post_")
    assert seen["block"] is None
    assert main(["report", "--model", str(saved_model), "--out", str(tmp_path / "blk"), "--params", "80000",
                 "--tokens", str(1000 * 4096)]) == 0
    assert seen["block"] == {"model_params": 80000, "tokens": 4096000, "tokens_per_step": 4096}
    assert main(["report", "--model", str(saved_model), "--out", str(tmp_path / "x"), "--params", "80000"]) == 2
    assert "--params and --tokens" in capsys.readouterr().err


def test_maps_section_computes_one_grid_and_hands_it_to_both_maps(fitted_law, monkeypatch):
    """The report composes: it computes the grid once (surface.surface_grid), the plots only draw it."""
    from bayes_optlaws import plots, surface

    calls, seen = [], {}
    real_grid = surface.surface_grid
    monkeypatch.setattr(surface, "surface_grid", lambda *a, **k: calls.append(a) or real_grid(*a, **k))
    for name in ("loss_surface", "divergence_map"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda grid, runs, _real=real, _name=name: seen.setdefault(
            _name, (grid, runs)) and _real(grid, runs))
    block = report.focus_block(fitted_law)
    html_text = report._maps_section(fitted_law, block, random_seed=0)
    assert len(calls) == 1 and html_text.count("<img") == 2
    grid, runs = seen["loss_surface"]
    assert isinstance(grid, surface.SurfaceGrid) and seen["divergence_map"][0] is grid
    assert (grid.model_params, grid.total_steps, grid.tokens_per_step) == (
        block["model_params"], block["total_steps"], block["tokens_per_step"])
    assert block["run_id"] in set(runs["run_id"]) and {"peak_lr", "warmup_frac", "family"} <= set(runs.columns)


def test_chosen_block_is_named_in_the_maps_section(fitted_law):
    html_text = report.render_report(fitted_law, block={"model_params": 80000, "tokens": 1000 * 4096,
                                                         "tokens_per_step": 4096})
    assert "N = 80,000 parameters, D = 4,096,000 tokens" in html_text
    assert "the block chosen for this report" in html_text


def test_candidates_far_beyond_the_fitted_runs_are_warned_about_in_the_report(fitted_law):
    """A block 10x larger than the largest fitted size: the candidate table gives each row's extrapolation factor,
    and a warning box repeats the law's own warnings (which the terminal shows), each once; a block 2x larger
    (below the law's 4x threshold) gets the summary line instead."""
    import warnings

    from bayes_optlaws.extrapolation import ExtrapolationWarning
    from bayes_optlaws.optimize import candidate_grid

    largest = max(fitted_law.sizes_)
    block = {**report.focus_block(fitted_law), "model_params": 10 * largest}
    cands = candidate_grid(block["total_steps"], [block["peak_lr"]], [0.0, 0.05], (0.2,), ("linear", "cosine"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        html_text = report._candidates_section(fitted_law, cands, block, random_seed=0)
    assert "extrapolation (× beyond the fitted runs; 1 = inside)" in html_text
    box = html_text.split('<div class="warn">', 1)[1].split("</div>", 1)[0]
    assert "extrapolation beyond the fitted runs" not in box  # the law's own warning below says more
    law_warnings = {str(w.message) for w in seen if issubclass(w.category, ExtrapolationWarning)}
    assert not law_warnings  # recorded by the report, not passed on
    items = re.findall(r"<li>(.*?)</li>", box)
    assert len(items) == len(set(items))
    # 10x is beyond the warning threshold of 4x in N: the law's own warning is in the box
    assert any("lie up to 10x outside the fitted model size range" in i and "(warned beyond 4x)" in i
               for i in items)
    cells = re.findall(r'<td class="">(10)</td>', html_text)
    assert len(cells) == len(cands)
    mild = report._candidates_section(fitted_law, cands, {**block, "model_params": 2 * largest}, random_seed=0)
    box = mild.split('<div class="warn">', 1)[1].split("</div>", 1)[0]
    assert "extrapolation beyond the fitted runs: model size up to 2x" in box
    assert "--json" not in box  # the terminal's pointer to the JSON columns is not repeated
    assert "outside the fitted model size range" not in box


def test_maps_of_a_block_far_beyond_the_fitted_runs_carry_the_laws_warnings(fitted_law):
    """The maps of a block 10x larger than the largest fitted size say so in a warning box (the law's own
    extrapolation warning); the maps of the best run's block have none."""
    block = report.focus_block(fitted_law)
    assert 'class="warn"' not in report._maps_section(fitted_law, block, random_seed=0)
    far = {**block, "model_params": 10 * max(fitted_law.sizes_), "chosen": True}
    html_text = report._maps_section(fitted_law, far, random_seed=0)
    box = html_text.split('<div class="warn">', 1)[1].split("</div>", 1)[0]
    assert "Read these before trusting the maps (each &quot;candidate&quot; below is a point of their grid):" in box
    assert "outside the fitted model size range" in box and "(warned beyond 4x)" in box


def test_candidates_inside_the_fitted_runs_get_no_warning_box(fitted_law):
    from bayes_optlaws.optimize import candidate_grid

    block = report.focus_block(fitted_law)
    cands = candidate_grid(block["total_steps"], [block["peak_lr"]], [0.0, 0.05], (0.2,), ("linear", "cosine"))
    html_text = report._candidates_section(fitted_law, cands, block, random_seed=0)
    assert 'class="warn"' not in html_text
    assert re.findall(r'<td class="">1</td>', html_text)


# ---------------------------------------------------------------------------------------------- browser
def _chromium(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def chromium():
    """Session-scoped (set up before the fit and the report) so that a missing browser skips at once.

    Chromium is optional for users (skip); CI (``.ci/run``) installs it and sets ``BAYES_OPTLAWS_REQUIRE_CHROMIUM``,
    so there a missing browser fails instead of skipping silently."""
    if not CHROMIUM.exists():
        why = ("headless-browser check needs /usr/bin/chromium: install the Debian package 'chromium' "
               "(apt-get install -y chromium)")
        if os.environ.get("BAYES_OPTLAWS_REQUIRE_CHROMIUM"):
            pytest.fail(f"{why}; BAYES_OPTLAWS_REQUIRE_CHROMIUM is set (CI), so this check may not be skipped")
        pytest.skip(why)
    return CHROMIUM


def test_report_renders_in_headless_chromium(chromium, written_report, tmp_path):
    page = tmp_path / "report-check.html"
    html = written_report.read_text()
    assert html.count("</body>") == 1
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    n_img = len(IMG.findall(html))
    shot = tmp_path / "shot.png"
    url = page.resolve().as_uri()
    res = _chromium(f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
                    "--window-size=1200,3000", url)
    assert shot.exists(), res.stderr[-2000:]
    dom = _chromium(f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=5000", "--dump-dom", url)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    assert 'data-images-ok="true"' in body.group(0), body.group(0)
    assert f'data-images="{n_img}"' in body.group(0)
    # the screenshot shows a page, not a blank window: many non-white pixels and several colours
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
    assert im.shape[:2] == (3000, 1200)
    non_white = np.mean(np.any(im < 245, axis=2))
    assert non_white > 0.05, f"screenshot is almost blank ({non_white:.1%} non-white pixels)"
    assert len(np.unique(im.reshape(-1, 3)[::97], axis=0)) > 50
    shutil.rmtree(tmp_path / "profile-shot", ignore_errors=True)
    shutil.rmtree(tmp_path / "profile-dom", ignore_errors=True)


def test_the_summary_states_how_an_unseen_size_is_predicted(fitted_law):
    """The report's size-step row: the learned factor of every fitted step, a new step's factor, and each
    configuration's own step error as the law uses it."""
    from bayes_optlaws.report import size_step_text

    text = size_step_text(fitted_law)
    pairs = fitted_law.size_step_.pairs
    assert len(pairs) == len(fitted_law.sizes_) - 1
    for p in pairs:
        assert f"{p['k']:.2f}" in text
    assert f"{fitted_law.size_step_.error_rate:.4f} nats of log loss" in text
    assert "(sd; Student-t, 5 dof)" in text  # a law fitted now draws its step error t5 (size_scaling.STEP_ERROR_NU)
    assert ("γ = " in text) == (fitted_law.size_step_.token_slope_se != 0)
    features = copy.copy(fitted_law)
    features.model_config_ = {**fitted_law.model_config_, "new_size": "features"}
    assert "new_size='features'" in size_step_text(features)


def test_the_summary_says_where_an_unstable_run_ends(fitted_law):
    """The synthetic law has too few unstable runs for the regression: the summary gives its fixed excess; with a
    (SYNTHETIC) regression it gives the fitted equation instead."""
    from test_unstable_loss import fitted, synthetic_unstable_runs

    from bayes_optlaws.report import _summary_section

    html = _summary_section(fitted_law, None)
    assert f"{fitted_law.unstable_excess_:.3f} nats above the law" in html
    law = copy.copy(fitted_law)
    law.div_fit_ = copy.copy(fitted_law.div_fit_)
    law.div_fit_.unstable_level = fitted(synthetic_unstable_runs())
    assert law.div_fit_.unstable_level.describe() in _summary_section(law, None)
