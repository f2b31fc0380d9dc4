"""Bad input: exit code 2, one line from eomlab naming the key or file, and nothing written."""
import hashlib
import os

import h5py
import numpy as np
import pytest

from conftest import SMALL_STUDY, run_eomlab, write_config


def eomlab_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("eomlab:")]


def with_change(text, old, new):
    assert old in text
    return text.replace(old, new)


CASES = {
    # name: (edit of the small study, text the message must contain)
    "unknown_key": (lambda t: with_change(t, "[model]", "[model]\ncolour = red"), "model.colour"),
    "unknown_section_key": (lambda t: t + "\n[sweep]\nlr = 1\n", "sweep.lr"),
    "malformed_number": (lambda t: with_change(t, "lr = 0.1", "lr = 0.1.2"), "optimizer.lr"),
    "malformed_integer": (lambda t: with_change(t, "steps = 20", "steps = twenty"), "optimizer.steps"),
    "lr_zero": (lambda t: with_change(t, "lr = 0.1", "lr = 0"), "optimizer.lr"),
    "lr_negative": (lambda t: with_change(t, "lr = 0.1", "lr = 0.1, -0.05"), "optimizer.lr"),
    "unknown_activation": (lambda t: with_change(t, "activation = tanh", "activation = swish"), "model.activation"),
    "unknown_loss": (lambda t: with_change(t, "[model]", "[model]\nloss = hinge"), "model.loss"),
    "unknown_flow": (lambda t: with_change(t, "kinds = gf, eom1", "kinds = gf, eom7"), "flows.kinds"),
    "missing_data_file": (lambda t: with_change(t, "source = gaussian_mixture", "source = hdf5:/nonexistent/data.h5"),
                          "/nonexistent/data.h5"),
    "missing_init_file": (lambda t: with_change(t, "[model]", "[model]\ninit = hdf5:/nonexistent/init.h5"),
                          "/nonexistent/init.h5"),
    "layers_mismatch_features": (lambda t: with_change(t, "[data]", "[data]\nn_features = 7"), "model.layers"),
    "negative_weight_decay": (lambda t: with_change(t, "[model]", "[model]\nweight_decay = -1"), "model.weight_decay"),
    "steps_and_horizon": (lambda t: with_change(t, "steps = 20", "steps = 20\nhorizon = 2"), "optimizer.steps"),
    "bad_rtol": (lambda t: with_change(t, "kinds = gf, eom1", "kinds = gf, eom1\nrtol = 2"), "flows.rtol"),
    "negative_progress_interval": (lambda t: t + "\n[output]\nprogress_every = -1\n", "output.progress_every"),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("np_", [None, 2])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, name, np_):
    edit, expected = CASES[name]
    out = tmp_path / "out"
    config = write_config(tmp_path, edit(SMALL_STUDY.format(output=out)))
    proc = run_eomlab(["--config", config], np=np_)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = eomlab_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    if np_ is None:  # without mpirun, eomlab's line is all there is
        assert proc.stderr.strip() == lines[0]
    assert not out.exists()


def test_command_line_override_with_bad_value(tmp_path, small_study):
    proc = run_eomlab(["--config", small_study, "--optimizer.lr=abc"])
    assert proc.returncode == 2 and "optimizer.lr" in proc.stderr
    proc = run_eomlab(["--config", small_study, "--optimizer.nonsense=1"])
    assert proc.returncode == 2 and "optimizer.nonsense" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_named(tmp_path):
    proc = run_eomlab(["--config", tmp_path / "nope.ini"])
    assert proc.returncode == 2 and "nope.ini" in proc.stderr


@pytest.mark.parametrize("content,expected", [
    (b"not an hdf5 file at all\n", "is not an HDF5 file"),
    (b"", "is not an HDF5 file"),
])
def test_data_file_that_is_not_hdf5(tmp_path, content, expected):
    (tmp_path / "data.h5").write_bytes(content)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2
    assert expected in proc.stderr and "data.source" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make,expected", [
    (lambda f: f.create_dataset("X", data=np.zeros((10, 5))), "no dataset /y"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 4))), f.create_dataset("y", data=np.zeros(10, np.int64))), "features"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.full(10, 3, np.int64))), "label 3"),
    (lambda f: (f.create_dataset("X", data=np.full((10, 5), np.nan)), f.create_dataset("y", data=np.zeros(10, np.int64))), "NaN"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.zeros(9, np.int64))), "/y"),
])
def test_data_file_with_wrong_content(tmp_path, make, expected):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        make(f)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and str(tmp_path / "data.h5") in proc.stderr
    assert len(eomlab_lines(proc.stderr)) == 1
    assert not (tmp_path / "out").exists()


def test_init_file_of_wrong_length(tmp_path):
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = np.zeros(7)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("[model]", f"[model]\ninit = hdf5:{tmp_path / 'init.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2 and "model.init" in proc.stderr and "[7]" in proc.stderr


def test_world_size_not_a_multiple_of_ranks_per_run(tmp_path):
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("ranks_per_run = 1", "ranks_per_run = 2")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=3)
    assert proc.returncode == 2
    line = eomlab_lines(proc.stderr)[0]
    assert "study.ranks_per_run" in line and " 3" in line and " 2" in line
    assert not (tmp_path / "out").exists()


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_existing_results_are_never_touched_without_overwrite(tmp_path, small_study):
    assert run_eomlab(["--config", small_study]).returncode == 0
    before = digest(tmp_path / "out")
    proc = run_eomlab(["--config", small_study], np=2)
    assert proc.returncode == 2
    assert "study.output" in eomlab_lines(proc.stderr)[0] and "--overwrite" in proc.stderr
    assert digest(tmp_path / "out") == before
    # --overwrite replaces them.
    assert run_eomlab(["--config", small_study, "--overwrite"]).returncode == 0


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should go")
    text = SMALL_STUDY.format(output=blocker / "sub")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2 and "study.output" in proc.stderr
