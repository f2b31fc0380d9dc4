"""The analysis package as a package (issue 15): installable offline with pip (no index, no build
isolation: Debian's setuptools), importable without side effects (no matplotlib backend chosen, pyplot
not imported, not even by writing a report), its eomlab-report script working from the install, and
a run file opened once however many series are read."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import SMALL_STUDY, run_eomlab, write_config  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = write_config(tmp, SMALL_STUDY.format(output=tmp / "out").replace("lr = 0.1", "lr = 0.1, 0.05"))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 0, proc.stderr
    return tmp / "out"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "analysis"
    shutil.copytree(REPO / "analysis", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--target", str(target), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def fresh(code, site, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(site), MPLBACKEND="", **env))


def test_import_and_report_have_no_global_side_effects(installed, study, tmp_path):
    code = f"""
import sys, matplotlib
before = matplotlib.rcParams["backend"]
import eomlab_analysis.report as r
assert r.__file__.startswith({str(installed)!r}), r.__file__
r.build({str(study)!r}, {str(tmp_path / 'report')!r})
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert matplotlib.rcParams["backend"] == before, (before, matplotlib.rcParams["backend"])
print("ok")
"""
    proc = fresh(code, installed)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    assert (tmp_path / "report" / "orders.csv").exists()


def test_installed_script_writes_the_report(installed, study, tmp_path):
    proc = subprocess.run([sys.executable, str(installed / "bin" / "eomlab-report"), str(study), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(installed)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "r" / "report.md").exists()


def test_a_run_file_is_opened_once(study, monkeypatch):
    sys.path.insert(0, str(REPO / "analysis"))
    import h5py
    from eomlab_analysis import load
    opened = []
    real = h5py.File
    monkeypatch.setattr(load.h5py, "File", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    with load.Study(study) as s:
        run = s.runs[0]
        for _ in range(3):
            for t in run.trajectories:
                run.series(t, "loss")
                run.has(t, "grad_norm")
            run.step, run.time
        assert opened.count(run.path) == 1, opened
    assert run._file is None  # the study closed it


# A study of more runs than the process may open files: every run was held open, so under the usual limit
# of 1024 descriptors a study of 1100 runs read 1019 and filed the other 81 as unreadable stale runs, without
# an error (an adversarial review). Here 200 runs under a limit of 150: at most OpenRunFiles.limit (128)
# are open at once, least recently used closed first.
def test_a_study_of_more_runs_than_open_files_allowed_reads_every_run(tmp_path):
    seeds = ", ".join(str(s) for s in range(100))
    study = SMALL_STUDY.format(output=tmp_path / "out").replace("seed = 1", f"seed = {seeds}")
    study = study.replace("lr = 0.1", "lr = 0.1, 0.05").replace("steps = 20", "steps = 2").replace("record_every = 5", "record_every = 1")
    proc = run_eomlab(["--config", write_config(tmp_path, study.replace("kinds = gf, eom1", "kinds = gf"))])
    assert proc.returncode == 0, proc.stderr
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))
sys.path.insert(0, {str(REPO / 'analysis')!r})
from eomlab_analysis.load import Study
study = Study({str(tmp_path / 'out')!r})
print(len(study.runs), len(study.stale))
losses = [float(run.series(run.discrete, "loss")[-1]) for run in study.runs * 2]
print(len(losses), all(loss == loss for loss in losses))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["200", "0", "400", "True"], run.stdout


def test_a_missing_trajectory_or_observable_is_named(study):
    """Found by an adversarial review: run.series("eom7", "loss") raised h5py's KeyError "Unable to open object
    (component not found)", and run.distance("gd") a KeyError 'distance_to_gd', naming neither what was asked
    nor what the run has."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Study
    with Study(study) as s:
        run = s.runs[0]
        with pytest.raises(KeyError, match=r"no trajectory 'eom7' \(it has gd, gf, eom1\)"):
            run.series("eom7", "loss")
        with pytest.raises(KeyError, match=r"gf has no observable 'lossy' \(it has .*loss"):
            run.series("gf", "lossy")
        with pytest.raises(KeyError, match=r"'gd' is the discrete trajectory .* one of gf, eom1"):
            run.distance("gd")
        assert len(run.series("gf", "loss")) == run.records
