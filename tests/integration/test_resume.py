"""Checkpoint and resume under real mpirun (issue 5): a study killed at a random moment, or stopped by
SIGUSR1, and continued with --resume gives run files whose datasets equal an uninterrupted study's,
bit for bit."""
import random
import re
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import (datasets, eomlab_binary, kill_study, mpi_env, run_eomlab, start_study, wait_for_first_checkpoint,
                      write_config)
from test_image_data import small_idx, write_idx

STUDY = """
[study]
name = resume
output = {output}
seed = 1
ranks_per_run = 2
[data]
n_samples = 256
[model]
layers = 8,32,32,4
[optimizer]
lr = 0.05, 0.1
steps = 300
record_every = 5
[flows]
kinds = gf, eom1, eom2
[output]
checkpoint_every = 10
"""


def statuses(out):
    result = {}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            result[path.name] = f.attrs["status"]
    return result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp, STUDY.format(output=tmp / "out"))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = datasets(tmp / "out")
    assert len(data) > 40
    return data


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(tmp_path, reference, seed):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    moment = random.Random(seed).uniform(0.4, 2.2)
    proc = start_study(config)
    time.sleep(moment)
    kill_study(proc)
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert set(statuses(tmp_path / "out").values()) == {"complete"}
    assert datasets(tmp_path / "out") == reference, f"killed after {moment:.2f} s"


def test_sigusr1_checkpoints_exits_75_and_resumes_identically(tmp_path):
    # One run of ~8 s, so the signal, sent at its first checkpoint (step 10), always lands inside it.
    text = STUDY.replace("lr = 0.05, 0.1", "lr = 0.05").replace("steps = 300", "steps = 600")
    ref_config = write_config(tmp_path, text.format(output=tmp_path / "ref"), "ref.ini")
    assert run_eomlab(["--config", ref_config], np=2).returncode == 0
    reference = datasets(tmp_path / "ref")
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    proc.send_signal(signal.SIGUSR1)  # mpirun forwards it to every rank
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "checkpointed at step" in out and "--resume" in out
    assert "interrupted" in statuses(tmp_path / "out").values()
    row = next(line for line in out.splitlines() if line.startswith("lr0.05_seed"))
    assert row.split()[1:3] == ["interrupted", "gd"], row  # the summary's columns stay apart
    assert any((tmp_path / "out" / "checkpoints").glob("*.h5"))
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step" in resumed.stdout
    # Its first progress line comes after the checkpoint's step, without an ETA (no pace measured yet).
    at = int(re.search(r"resuming at step (\d+)", resumed.stdout)[1])
    first = next(line for line in resumed.stdout.splitlines() if " step " in line and "resuming" not in line)
    assert int(re.search(r" step (\d+)/600 ", first)[1]) >= at and "ETA" not in first, first
    assert datasets(tmp_path / "out") == reference
    # The resume's own provenance beside the first invocation's (which the root attributes keep).
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        lines = f.attrs["resume_provenance"].splitlines()
        assert len(lines) == 1 and lines[0].startswith(f.attrs["resumed"] + ":"), lines
        assert f" git_sha={f.attrs['git_sha']};" in lines[0] and " host=" in lines[0] and " mpi_world_size=2;" in lines[0]
    assert not any((tmp_path / "out" / "checkpoints").glob("*.h5"))  # finished runs leave no checkpoint
    with h5py.File(tmp_path / "out" / "sweep.h5", "r") as f:
        assert {s.decode() for s in f["summary"]["status"]} == {"complete"}


def test_sigterm_also_checkpoints_and_exits_75(tmp_path):
    """SLURM sends SIGTERM to every task of a job step; here to the ranks directly."""
    text = STUDY.replace("ranks_per_run = 2", "ranks_per_run = 1").replace("steps = 300", "steps = 900")
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    proc = subprocess.Popen([eomlab_binary(), "--config", str(config)], env=mpi_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert run_eomlab(["--config", config, "--resume"], np=1).returncode == 0


def test_resume_of_a_finished_study_changes_no_data(tmp_path, reference):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    again = run_eomlab(["--config", config, "--resume"], np=2)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already complete, skipped") == 2
    assert datasets(tmp_path / "out") == reference


def test_resume_with_a_changed_config_is_refused_and_touches_nothing(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out").replace("steps = 300", "steps = 20"))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    proc = run_eomlab(["--config", config, "--resume", "--flows.rtol=1e-8"], np=2)
    assert proc.returncode == 2
    line = [l for l in proc.stderr.splitlines() if l.startswith("eomlab:")][0]
    assert "--resume" in line and "flows.rtol was '1e-10', now '1e-08'" in line, line  # values as parsed
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    # Run-independent settings may change.
    ok = run_eomlab(["--config", config, "--resume", "--output.checkpoint_every=7", "--output.progress_every=60"], np=2)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("study_ini", ["edited", "removed"])
def test_resume_refuses_run_files_of_another_config_when_study_ini_no_longer_shows_it(tmp_path, study_ini):
    """study.ini edited to the new config, or removed, no longer stands for the run files: each one's own
    config is compared (before, the runs were continued or skipped as results of the new config)."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out").replace("steps = 300", "steps = 20"))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    saved = tmp_path / "out" / "study.ini"
    if study_ini == "edited":
        saved.write_text(saved.read_text().replace("rtol = 1e-10", "rtol = 1e-08"))
    else:
        saved.unlink()
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    proc = run_eomlab(["--config", config, "--resume", "--flows.rtol=1e-8"], np=2)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = [l for l in proc.stderr.splitlines() if l.startswith("eomlab:")][0]
    assert "--resume: run file '" in line and "was written with another config (flows.rtol was '1e-10', now '1e-08')" in line, line
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


def test_resume_and_overwrite_together_are_refused(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    proc = run_eomlab(["--config", config, "--resume", "--overwrite"])
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_resume_compares_values_not_spelling_and_follows_a_moved_directory(tmp_path):
    """Issue 11, item 11: the same config spelled otherwise (spacing, 60.0 for 60, 0.10 for 0.1), in an
    output directory copied elsewhere, or a study.ini in the spelling an older eomlab stored, resumes."""
    text = STUDY.replace("steps = 300", "horizon = 1")
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    shutil.copytree(tmp_path / "out", tmp_path / "moved")
    respelled = (text.replace("lr = 0.05, 0.1", "lr=0.050,0.10").replace("horizon = 1", "horizon = 1.0")
                 .replace("layers = 8,32,32,4", "layers = 8, 32, 32, 4").format(output=tmp_path / "moved"))
    moved = write_config(tmp_path, respelled, "moved.ini")
    ok = run_eomlab(["--config", moved, "--resume"], np=2)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("already complete, skipped") == 2
    # The study.ini of an older eomlab held the values as they were given.
    saved = tmp_path / "moved" / "study.ini"
    saved.write_text(saved.read_text().replace("lr = 0.05,0.1", "lr = 0.05, 0.1").replace("horizon = 1\n", "horizon = 1.00\n"))
    assert "lr = 0.05, 0.1\n" in saved.read_text() and "horizon = 1.00\n" in saved.read_text()
    ok = run_eomlab(["--config", moved, "--resume"], np=2)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # A different value is still refused, naming its key (and not the directory).
    proc = run_eomlab(["--config", moved, "--resume", "--optimizer.horizon=2"], np=2)
    assert proc.returncode == 2
    line = [l for l in proc.stderr.splitlines() if l.startswith("eomlab:")][0]
    assert "--resume: the config differs" in line and "optimizer.horizon was '1', now '2'" in line, line
    assert "study.output" not in line


def test_a_file_source_study_that_spelled_the_keys_it_does_not_read_resumes(tmp_path):
    """Up to e9d4e3e the resolved config gave an hdf5 source data.n_samples = 256, noise and seed (their
    synthetic defaults); it now leaves them out. Up to aaa2e9b data.n_features and data.n_classes were
    recorded when given beside a data file, and ignored (a review: refusing them since made such studies
    impossible to resume); they are left out too. Such a study (study.ini and run files) still resumes."""
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = np.random.default_rng(1).normal(size=(30, 8)), np.arange(30) % 4
    text = STUDY.replace("steps = 300", "steps = 20").replace("n_samples = 256", f"source = hdf5:{tmp_path / 'data.h5'}")
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    first = run_eomlab(["--config", config], np=2)
    assert first.returncode == 0, first.stdout + first.stderr
    source = f"source = hdf5:{tmp_path / 'data.h5'}\n"
    older = source + "n_samples = 256\nn_features = 99\nn_classes = 4\nnoise = 0.5\nseed = 0\n"
    saved = tmp_path / "out" / "study.ini"
    assert source + "\n" in saved.read_text()
    saved.write_text(saved.read_text().replace(source, older))
    for path in (tmp_path / "out" / "runs").glob("*.h5"):
        with h5py.File(path, "r+") as f:
            f.attrs["config"] = f.attrs["config"].replace(source, older)
    ok = run_eomlab(["--config", config, "--resume"], np=2)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("already complete, skipped") == 2, ok.stdout


def stop_a_one_run_study(tmp_path, data="n_samples = 256", layers="8,32,32,4"):
    """A one-run study (of `data`: its [data] keys) stopped (SIGUSR1) after its first checkpoint: its config and
    its run file."""
    config = write_config(tmp_path, STUDY.replace("lr = 0.05, 0.1", "lr = 0.05").replace("steps = 300", "steps = 600")
                          .replace("n_samples = 256", data).replace("8,32,32,4", layers).format(output=tmp_path / "out"))
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    proc.send_signal(signal.SIGUSR1)
    proc.communicate(timeout=120)
    assert proc.returncode == 75
    return config, tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5"


def test_a_run_begun_without_the_n_samples_attribute_gains_it_on_resume(tmp_path):
    """Run files begun before de9ac9c have no n_samples attribute; a resume wrote only status and provenance,
    so the resumed file still lacked it."""
    config, path = stop_a_one_run_study(tmp_path)
    with h5py.File(path, "r+") as f:
        assert f.attrs["n_samples"] == 256
        del f.attrs["n_samples"]
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["n_samples"] == 256


def test_resume_where_no_study_is_says_so_with_the_absolute_path(tmp_path):
    """A relative study.output read from another working directory: --resume started a new study there and
    said 'resuming' (a requeued job's checkpoints elsewhere were never used, and nothing told)."""
    config = write_config(tmp_path, STUDY.replace("steps = 300", "steps = 20").format(output="relative_out"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", eomlab_binary(), "--config", str(config), "--resume"],
                          env=mpi_env(), cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.endswith(f", nothing to resume in '{elsewhere / 'relative_out'}': starting it"), header


def test_the_catalog_of_a_killed_study_says_its_running_runs_are_not(tmp_path):
    """A run killed (SIGKILL: the OOM killer, a node failure) stays 'running' in its file; the catalog listed it
    as such without a word, though no eomlab held the study."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    kill_study(proc)
    catalog = run_eomlab(["--config", config, "--catalog"])
    assert catalog.returncode == 0, catalog.stderr
    running = sum(status == "running" for status in statuses(tmp_path / "out").values())
    assert running >= 1 and (f"Catalog: {running} run(s) marked 'running' but no eomlab works on this study" in catalog.stdout
                             and "--resume continues them" in catalog.stdout), catalog.stdout


def test_a_run_continued_by_another_build_says_so(tmp_path):
    """Bitwise resume holds for the build that began the run; another one (a rebuilt binary after a requeue)
    continued silently, and the run file's git_sha still named the first."""
    config, path = stop_a_one_run_study(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["git_sha"] = "0123abc"
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("eomlab: warning:")]
    assert len(warnings) == 1 and ", begun by 0123abc: its records after step " in warnings[0], resumed.stderr


CONV_STUDY = """
[study]
name = conv_resume
output = {output}
seed = 1
ranks_per_run = 2
[data]
source = gaussian_mixture
n_samples = 64
shape = 2,6,6
[model]
architecture = {architecture}
[optimizer]
lr = 0.05
steps = 3000
record_every = 10
[flows]
kinds = gf, eom1
[output]
checkpoint_every = 10
"""
ARCHITECTURE = ("conv(3, 3, pad=1), batchnorm, tanh, avgpool(2), residual(conv(3,3,pad=1), batchnorm, tanh), "
                "flatten, dense(4)")


def test_resume_compares_architectures_by_the_layers_they_make(tmp_path):
    """Found by an adversarial review: an architecture respelled with its defaults (stride=1, affine=on, eps=0)
    was refused on --resume as another config. It now resumes, to the same bits as an uninterrupted study; an
    architecture that makes other layers is still refused, naming the key."""
    ref = write_config(tmp_path, CONV_STUDY.format(output=tmp_path / "ref", architecture=ARCHITECTURE), "ref.ini")
    assert run_eomlab(["--config", ref], np=2).returncode == 0
    config = write_config(tmp_path, CONV_STUDY.format(output=tmp_path / "out", architecture=ARCHITECTURE))
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    proc.send_signal(signal.SIGUSR1)
    proc.communicate(timeout=120)
    assert proc.returncode == 75
    other = "conv(4, 3, pad=1), batchnorm, tanh, avgpool(2), residual(conv(4, 3, pad=1), batchnorm, tanh), flatten, dense(4)"
    refused = run_eomlab(["--config", config, "--resume", f"--model.architecture={other}"], np=2)
    assert refused.returncode == 2
    line = [l for l in refused.stderr.splitlines() if l.startswith("eomlab:")][0]
    assert "--resume: the config differs" in line and "model.architecture was" in line, line
    respelled = ("conv(3, 3, stride=1, pad=1), batchnorm(affine=on, eps=0), tanh, avgpool(2), "
                 "residual(conv(3, 3, pad=1, stride=1), batchnorm, tanh), flatten, dense(4)")
    resumed = run_eomlab(["--config", config, "--resume", f"--model.architecture={respelled}"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # From its checkpoint (a review: the checkpoint's own config was compared as text, set aside, and the
    # run started again: the same bits, so only this line tells).
    assert "cannot resume" not in resumed.stderr and "resuming at step" in resumed.stdout, resumed.stdout + resumed.stderr
    assert set(statuses(tmp_path / "out").values()) == {"complete"}
    assert datasets(tmp_path / "out") == datasets(tmp_path / "ref")
    # --catalog too (its synthetic data's shape is in the config).
    assert run_eomlab(["--config", config, "--catalog", f"--model.architecture={respelled}"], np=2).returncode == 0
    assert run_eomlab(["--config", config, "--catalog", f"--model.architecture={other}"], np=2).returncode == 2


def test_an_architecture_study_recorded_with_the_mlp_keys_resumes(tmp_path):
    """Up to 0628664 an architecture's resolved config also held model.layers, activation and normalize at
    their defaults, which it does not read (found by a review: --print-config showed `layers = 16,32,32,4`
    beside a conv net). They are left out now; a study stopped with them in study.ini, its run file and its
    checkpoint still resumes from the checkpoint."""
    config = write_config(tmp_path, CONV_STUDY.format(output=tmp_path / "out", architecture=ARCHITECTURE))
    printed = run_eomlab(["--config", config, "--print-config"])
    assert printed.returncode == 0 and "architecture = conv" in printed.stdout, printed.stdout + printed.stderr
    for key in ["layers", "activation", "normalize"]:
        assert f"\n{key} =" not in printed.stdout, printed.stdout
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    proc.send_signal(signal.SIGUSR1)
    proc.communicate(timeout=120)
    assert proc.returncode == 75

    def older(text):
        line = re.search(r"^architecture = .*\n", text, re.M).group(0)
        return text.replace(line, line + "layers = 16,32,32,4\nactivation = tanh\nnormalize = none\n")
    saved = tmp_path / "out" / "study.ini"
    saved.write_text(older(saved.read_text()))
    for path in [*(tmp_path / "out" / "runs").glob("*.h5"), *(tmp_path / "out" / "checkpoints").glob("*.h5")]:
        with h5py.File(path, "r+") as f:
            if "config" in f.attrs:
                f.attrs["config"] = older(f.attrs["config"])
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "cannot resume" not in resumed.stderr and "resuming at step" in resumed.stdout, resumed.stdout + resumed.stderr
    assert set(statuses(tmp_path / "out").values()) == {"complete"}


def snapshot(out):
    """Every file under a study's output directory and its bytes."""
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_resume_refuses_run_files_computed_from_inputs_edited_since(tmp_path):
    """An adversarial review: a data or model.init file changed between a stop and --resume went unnoticed;
    the study went on from the new inputs and its files mixed the two (records, n_samples, θ0 per run).
    Run files keep the inputs' fingerprints; a resume from other inputs is refused and changes nothing."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 8)), np.arange(40) % 4
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = x, y
    text = (STUDY.replace("steps = 300", "steps = 20").replace("n_samples = 256", f"source = hdf5:{tmp_path / 'data.h5'}")
            .replace("[model]", f"[model]\ninit = hdf5:{tmp_path / 'init.h5'}"))
    theta = np.random.default_rng(4).normal(size=8 * 32 + 32 + 32 * 32 + 32 + 32 * 4 + 4) * 0.1
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = theta
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    first = run_eomlab(["--config", config], np=2)
    assert first.returncode == 0, first.stdout + first.stderr
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert len(f.attrs["data_fingerprint"]) == 16 and len(f.attrs["init_fingerprint"]) == 16
    before = snapshot(tmp_path / "out")
    for key, path, name, changed in [("data.source", "data.h5", "X", x * (1 + 1e-7)), ("model.init", "init.h5", "theta", -theta)]:
        original = (tmp_path / path).read_bytes()
        with h5py.File(tmp_path / path, "r+") as f:
            f[name][...] = changed
        for flags in [["--resume"], ["--resume", "--dry-run"]]:
            refused = run_eomlab(["--config", config] + flags, np=2)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            (line,) = [line for line in refused.stderr.splitlines() if line.startswith("eomlab:")]
            assert line.startswith(f"eomlab: {key}: run file '") and " has changed since; restore it, or --overwrite" in line, line
            assert snapshot(tmp_path / "out") == before
        (tmp_path / path).write_bytes(original)
    again = run_eomlab(["--config", config, "--resume"], np=2)
    assert again.returncode == 0 and again.stdout.count("already complete, skipped") == 2, again.stdout + again.stderr
    # Synthetic data is pinned by the config (its last bits may follow the BLAS kernels, a review found):
    # not fingerprinted.
    with h5py.File(next((tmp_path / "out").glob("runs/*.h5")), "r") as f:
        assert f.attrs["data_fingerprint"] != ""
    synthetic = write_config(tmp_path, STUDY.replace("steps = 300", "steps = 5").format(output=tmp_path / "syn"), "syn.ini")
    assert run_eomlab(["--config", synthetic], np=2).returncode == 0
    with h5py.File(next((tmp_path / "syn").glob("runs/*.h5")), "r") as f:
        assert "data_fingerprint" not in f.attrs and "init_fingerprint" not in f.attrs


def test_a_shard_refuses_a_study_whose_other_shards_were_computed_from_other_data(tmp_path):
    """An adversarial review: shard 0 of a job array ran, the data file changed, shard 1 ran on the new data
    (neither plain --shard nor --resume --shard looked at the other shard's files) and --catalog listed both
    as one study. A shard now checks every run file of the study; one replaced by --overwrite is still
    computed, and --catalog then warns that the files are of different data."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 8)), np.arange(40) % 4
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = x, y
    text = STUDY.replace("steps = 300", "steps = 10").replace("n_samples = 256", f"source = hdf5:{tmp_path / 'data.h5'}")
    config = write_config(tmp_path, text.format(output=tmp_path / "out"))
    assert run_eomlab(["--config", config, "--shard", "0/2"], np=2).returncode == 0
    with h5py.File(tmp_path / "data.h5", "r+") as f:
        f["X"][3, 1] += 1e-9
    before = snapshot(tmp_path / "out")
    for flags in [[], ["--resume"], ["--dry-run"]]:
        refused = run_eomlab(["--config", config, "--shard", "1/2"] + flags, np=2)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = [line for line in refused.stderr.splitlines() if line.startswith("eomlab:")]
        assert line.startswith("eomlab: data.source: run file '") and "lr0.05_seed1_wd0.h5' was computed from other data" in line, line
        assert line.endswith("has changed since; restore it, or --overwrite every shard"), line
        assert snapshot(tmp_path / "out") == before
    replaced = run_eomlab(["--config", config, "--shard", "1/2", "--overwrite"], np=2)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    catalog = run_eomlab(["--config", config, "--catalog"])
    assert catalog.returncode == 0, catalog.stdout + catalog.stderr
    assert "eomlab: warning: --catalog: run files fingerprinted from different data: '" in catalog.stderr, catalog.stderr
    assert "their results are not of one study" in catalog.stderr
    assert run_eomlab(["--config", config, "--shard", "0/2", "--overwrite"], np=2).returncode == 0
    catalog = run_eomlab(["--config", config, "--catalog"])
    assert catalog.returncode == 0 and "warning" not in catalog.stderr, catalog.stdout + catalog.stderr


def test_a_run_begun_without_input_fingerprints_gains_them_on_resume(tmp_path):
    """A run file begun before the fingerprints is written them on resume, so later resumes are checked."""
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = np.random.default_rng(5).normal(size=(256, 8)), np.arange(256) % 4
    config, path = stop_a_one_run_study(tmp_path, f"source = hdf5:{tmp_path / 'data.h5'}")
    with h5py.File(path, "r+") as f:
        fingerprint = f.attrs["data_fingerprint"]
        del f.attrs["data_fingerprint"]
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["data_fingerprint"] == fingerprint


def fingerprint(parts):
    """core/fingerprint.hpp's sum, for the (name, position, bits) of `parts`, as 16 hexadecimal digits."""
    mask = 2**64 - 1

    def splitmix64(x):
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def fnv1a(name):
        h = 0xCBF29CE484222325
        for byte in name.encode():
            h = ((h ^ byte) * 0x100000001B3) & mask
        return h

    total = 0
    for name, position, bits in parts:
        total += splitmix64(splitmix64((fnv1a(name) + position * 0xD1B54A32D192ED03) & mask) ^ int(bits))
    return f"{total & mask:016x}"


def text_parts(name, text):
    return [(name, i, byte) for i, byte in enumerate(text.encode())] + [(name, len(text), 256)]


def test_an_image_study_resumes_only_from_the_pixels_it_began_with(tmp_path):
    """An adversarial review: an image source's fingerprint was of its labels and shape alone (its normalized
    pixels' last bits may differ between builds), so --resume went on from pixels rewritten as 255 - p, and
    the GD loss jumped from 1e-3 to 3.8 inside one run file. The pixel bytes as stored are in it now; a run
    file and checkpoint written by 168ee9b..aaa2e9b (labels and shape) still resume, and the file keeps its
    fingerprint (a review: today's would vouch for pixels never checked)."""
    images, labels = small_idx(tmp_path / "idx", ext="", n=256)
    config, path = stop_a_one_run_study(tmp_path, f"source = idx:{tmp_path}/idx", "25,32,32,4")
    shape_and_labels = text_parts("shape", "1x5x5") + [("labels", i, label) for i, label in enumerate(labels)]
    pixels = fingerprint([("pixels", i, byte) for i, byte in enumerate(images.reshape(-1))])
    older, today = fingerprint(shape_and_labels), fingerprint(shape_and_labels + text_parts("stored x", pixels))
    checkpoint = next((tmp_path / "out" / "checkpoints").glob("*.h5"))
    with h5py.File(path, "r") as f, h5py.File(checkpoint, "r") as c:
        assert f.attrs["data_fingerprint"] == today and c.attrs["inputs"] == f"data_fingerprint {today}"
    before = snapshot(tmp_path / "out")
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte", 255 - images)
    refused = run_eomlab(["--config", config, "--resume"], np=2)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"eomlab: data.source: run file '{path}' was computed from other data" in refused.stderr, refused.stderr
    assert snapshot(tmp_path / "out") == before
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte", images)
    with h5py.File(path, "r+") as f, h5py.File(checkpoint, "r+") as c:
        f.attrs["data_fingerprint"], c.attrs["inputs"] = older, f"data_fingerprint {older}"
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0 and "resuming at step " in resumed.stdout, resumed.stdout + resumed.stderr
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["data_fingerprint"] == older


def test_resume_and_catalog_refuse_a_run_file_under_another_runs_name(tmp_path):
    """An adversarial review: a run file copied onto another run's name was continued (records of two seeds
    in one file) or, complete, skipped and catalogued as the other run."""
    config = write_config(tmp_path, STUDY.replace("steps = 300", "steps = 20").replace("seed = 1", "seed = 1, 2")
                          .replace("lr = 0.05, 0.1", "lr = 0.05").format(output=tmp_path / "out"))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    runs = tmp_path / "out" / "runs"
    shutil.copy(runs / "lr0.05_seed2_wd0.h5", runs / "lr0.05_seed1_wd0.h5")
    before = snapshot(tmp_path / "out")
    for flag in ["--resume", "--catalog"]:
        refused = run_eomlab(["--config", config, flag], np=2)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert [line for line in refused.stderr.splitlines() if line.startswith("eomlab:")] == [(f"eomlab: {flag}: run file '{runs / 'lr0.05_seed1_wd0.h5'}' holds run "
                                          f"'lr0.05_seed2_wd0', not 'lr0.05_seed1_wd0' (copied or renamed by hand); move it "
                                          f"away{', or --overwrite' if flag == '--resume' else ''}")], refused.stderr
        assert snapshot(tmp_path / "out") == before


def test_a_checkpoint_of_another_study_is_not_continued(tmp_path):
    """An adversarial review: a checkpoint copied from a sister study (another flows.rtol) was continued, its
    flows' states mixed into this study's run. Checkpoints keep the config they were written with; one of
    another config is set aside as bad and the run starts again."""
    sister = tmp_path / "sister"
    sister.mkdir()
    stop_a_one_run_study(sister)
    ours = tmp_path / "ours"
    ours.mkdir()
    config_path, path = stop_a_one_run_study(ours)
    text = config_path.read_text().replace("[flows]", "[flows]\nrtol = 1e-9")
    config_path.write_text(text)
    # Ours becomes the rtol = 1e-9 study: its study.ini and run file say so, its checkpoint is the sister's.
    saved = ours / "out" / "study.ini"
    saved.write_text(saved.read_text().replace("rtol = 1e-10", "rtol = 1e-09"))
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = f.attrs["config"].replace("rtol = 1e-10", "rtol = 1e-09")
    shutil.copy(sister / "out" / "checkpoints" / "lr0.05_seed1_wd0.h5", ours / "out" / "checkpoints" / "lr0.05_seed1_wd0.h5")
    resumed = run_eomlab(["--config", config_path, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "cannot resume from checkpoint" in line]
    assert len(warnings) == 1 and "it was written with another config (flows.rtol" in warnings[0], resumed.stderr
    assert "the run starts again from step 0" in warnings[0]
    assert statuses(ours / "out") == {"lr0.05_seed1_wd0.h5": "complete"}
