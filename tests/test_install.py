"""The package works when installed from a wheel, not only from the source checkout.

Builds the wheel from a copy of the source tree, installs it (no dependencies) into a fresh virtual environment,
and runs ``bayes-optlaws rank`` from an unrelated folder: the shipped default model and the example candidates
must come from inside the installed package (``bayes_optlaws/_shipped/``), not from the repository.

What keeps it fast (about 15 s) and still real: the wheel is built without build isolation (the test
environment's setuptools; no download) and installed with ``--no-deps --no-index``; the new environment sees the
test environment's third-party packages (PyMC, nutpie, …) through a ``.pth`` line naming that site-packages
folder. A plain ``.pth`` path is not a site directory, so the editable install of ``bayes_optlaws`` living there
is not activated: ``import bayes_optlaws`` in the new environment can only find the installed wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a wheel is built from: the build configuration, the package and the folders setup.py ships
SOURCE_ITEMS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "bayes_optlaws", "data", "models")
SHIPPED_FILES = ("models/default/settings.json", "models/default/loss_posterior.nc", "data/grid/runs.csv",
                 "data/examples/candidates.csv", "data/examples/continual_candidates.csv")


def _run(cmd: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n" \
                                f"{res.stderr[-3000:]}"
    return res


def _copy_source(dest: Path) -> Path:
    """A clean copy of the source tree (no build/, egg-info or caches from the checkout)."""
    missing = [item for item in SOURCE_ITEMS if not (REPO / item).exists()]
    if missing:
        pytest.fail(f"source tree incomplete, missing {missing}")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_shipped")
    dest.mkdir(parents=True)
    for item in SOURCE_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=ignore)
        else:
            shutil.copy2(src, dest / item)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(venv, wheel)``: a fresh virtual environment with the freshly built wheel installed."""
    tmp = tmp_path_factory.mktemp("install")
    src = _copy_source(tmp / "src")
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, src], cwd=tmp)
    wheel = next(dist.glob("bayes_optlaws-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    py = venv / "bin" / "python"
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "test_environment_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp)
    return venv, wheel


def test_wheel_carries_the_default_model_and_the_embedded_data(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in SHIPPED_FILES:
        assert f"bayes_optlaws/_shipped/{rel}" in names, f"{rel} is not in {wheel.name}"


def test_installed_package_finds_its_data_inside_itself(installed, tmp_path):
    venv, _ = installed
    code = ("import bayes_optlaws, bayes_optlaws.paths as p; "
            "print(bayes_optlaws.__file__); print(p.DEFAULT_MODEL); print(p.DEFAULT_RUNS.is_file())")
    out = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path).stdout.split("\n")
    assert Path(out[0]).is_relative_to(venv), f"imported {out[0]}, not the installed wheel"
    assert Path(out[1]) == Path(out[0]).parent / "_shipped" / "models" / "default"
    assert out[2] == "True"


def test_rank_runs_from_another_folder(installed, tmp_path):
    venv, _ = installed
    res = _run([venv / "bin" / "bayes-optlaws", "rank"], cwd=tmp_path)
    header, *rows = res.stdout.splitlines()
    assert f"model: {venv}" in header and "_shipped/models/default" in header
    assert "_shipped/data/examples/candidates.csv" in header
    n_candidates = len((REPO / "data" / "examples" / "candidates.csv").read_text().strip().splitlines()) - 1
    ranked = [r for r in rows if r.split() and r.split()[0].isdigit()]
    assert len(ranked) == n_candidates
    assert "pick by expected loss:" in res.stdout
    assert "error" not in res.stderr.lower() and "traceback" not in res.stderr.lower()
