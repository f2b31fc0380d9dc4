"""Bad input: exit code 2, one line from eomlab naming the key or file, and nothing written."""
import hashlib
import os
import signal
import subprocess

import h5py
import numpy as np
import pytest

from conftest import SMALL_STUDY, eomlab_binary, mpi_env, run_eomlab, write_config


def eomlab_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("eomlab:")]


def check_refused(proc, expected, out, np_):
    """Exit code 2, one line naming `expected`, nothing written in `out`."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = eomlab_lines(proc.stderr)
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    if np_ is None:  # without mpirun, eomlab's line is all there is
        assert proc.stderr.strip() == lines[0]
    assert not out.exists()


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
    "missing_data_file": (lambda t: with_change(t, "source = gaussian_mixture\nn_samples = 64", "source = hdf5:/nonexistent/data.h5"),
                          "/nonexistent/data.h5"),
    "missing_init_file": (lambda t: with_change(t, "[model]", "[model]\ninit = hdf5:/nonexistent/init.h5"),
                          "/nonexistent/init.h5"),
    "layers_mismatch_features": (lambda t: with_change(t, "[data]", "[data]\nn_features = 7"), "model.layers"),
    "negative_weight_decay": (lambda t: with_change(t, "[model]", "[model]\nweight_decay = -1"), "model.weight_decay"),
    "steps_and_horizon": (lambda t: with_change(t, "steps = 20", "steps = 20\nhorizon = 2"), "optimizer.steps"),
    "bad_rtol": (lambda t: with_change(t, "kinds = gf, eom1", "kinds = gf, eom1\nrtol = 2"), "flows.rtol"),
    "negative_progress_interval": (lambda t: t + "\n[output]\nprogress_every = -1\n", "output.progress_every"),
    # Issue 11, item 2: one grid point twice would be two runs into one file.
    "repeated_lr": (lambda t: with_change(t, "lr = 0.1", "lr = 0.1, 0.10"), "optimizer.lr: expected distinct values, got 0.1 twice"),
    "repeated_seed": (lambda t: with_change(t, "seed = 1", "seed = 1, 01"), "study.seed: expected distinct values, got 1 twice"),
    # Item 14: integers beyond the type they are stored in.
    "ranks_per_run_beyond_int": (lambda t: with_change(t, "ranks_per_run = 1", "ranks_per_run = 4294967297"),
                                 "study.ranks_per_run: expected an integer in [1, 2147483647], got '4294967297'"),
    "ranks_per_run_2_to_the_31": (lambda t: with_change(t, "ranks_per_run = 1", "ranks_per_run = 2147483648"),
                                  "got '2147483648'"),
    # Item 15: values are taken whole or refused, never cut.
    "comment_after_value": (lambda t: with_change(t, "name = small", "name = run #1"), "study.name"),
    "nul_byte": (lambda t: with_change(t, "name = small", "name = sm\0all"), "control characters"),
    "trailing_comma": (lambda t: with_change(t, "lr = 0.1", "lr = 0.1,"), "optimizer.lr"),
    "double_comma": (lambda t: with_change(t, "lr = 0.1", "lr = 0.1,,0.05"), "optimizer.lr"),
    # Found by a review: an hdf5 file's data.n_samples was ignored (all of /X ran, the run file said otherwise).
    "hdf5_n_samples": (lambda t: with_change(with_change(t, "n_samples = 64", "n_samples = 32"), "source = gaussian_mixture",
                                             "source = hdf5:/some/data.h5"),
                       "data.n_samples: expected a key of a synthetic or image source"),
    # Found by an adversarial review: an empty architecture ran model.layers' default MLP, silently; a one-output
    # MLP was refused naming data.n_classes, which the config did not give.
    "empty_architecture": (lambda t: with_change(t, "layers = 5,8,3", "architecture ="),
                           "model.architecture: expected at least one layer (leave the key out for model.layers' MLP), got nothing"),
    "one_output_mlp": (lambda t: with_change(t, "layers = 5,8,3", "layers = 5,8,1"),
                       "model.layers: expected an output width of at least 2 for cross_entropy (one per class), got 1"),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("np_", [None, 2])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, name, np_):
    edit, expected = CASES[name]
    out = tmp_path / "out"
    config = write_config(tmp_path, edit(SMALL_STUDY.format(output=out)))
    check_refused(run_eomlab(["--config", config], np=np_), expected, out, np_)


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
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2
    assert expected in proc.stderr and "data.source" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_blank_architecture_beside_model_layers_is_that_mlp(tmp_path):
    """The refusal of a blank model.architecture (empty_architecture above) is of one standing alone: beside
    model.layers the config says which network it means (a review)."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("layers = 5,8,3", "layers = 5,8,3\narchitecture =")
    proc = run_eomlab(["--config", write_config(tmp_path, text), "--print-config"])
    assert proc.returncode == 0, proc.stderr
    assert "\nlayers = 5,8,3\n" in proc.stdout and "\narchitecture" not in proc.stdout


@pytest.mark.parametrize("model", ["layers = 5,8,1", "architecture = dense(8), tanh, dense(1)"])
def test_integer_labels_for_a_one_output_mse_are_refused(tmp_path, model):
    """Found by a review (of the Python module, which does the same): mse makes integer labels one-hot, so
    over one output every label 0 became the target 1, silently."""
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = np.zeros((10, 5)), np.zeros(10, np.int64)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace(
        "source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}").replace(
        "layers = 5,8,3", model + "\nloss = mse")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 2, proc.stderr
    assert "expected float64 targets [N, 1] for mse with one output" in proc.stderr and len(eomlab_lines(proc.stderr)) == 1
    assert not (tmp_path / "out").exists()


# An adversarial review: data.n_features and data.n_classes beside a data file were ignored (the file's widths
# ran) but recorded in study.ini and the run files as if they had been used.
@pytest.mark.parametrize("model,keys,expected", [
    ("layers = 5,8,3", "n_features = 99", "model.layers: expected input width 99 (data.n_features), got 5"),
    ("layers = 5,8,3", "n_classes = 77", "model.layers: expected output width 77 (data.n_classes), got 3"),
    ("architecture = dense(3)", "n_features = 99", "data.n_features: expected the 5 features of data file '"),
    ("architecture = dense(3)", "n_classes = 77", "data.n_classes: expected the network's output width 3 "
                                                  "(model.architecture: layer 1 'dense(3)'), got 77"),
    ("architecture = dense(5)\nloss = mse", "n_classes = 3", "data.n_classes: expected the network's output width 5"),
])
def test_widths_a_data_file_fixes_are_refused_where_they_disagree(tmp_path, model, keys, expected):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = np.zeros((10, 5)), np.arange(10) % 3
    text = SMALL_STUDY.format(output=tmp_path / "out").replace(
        "source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}\n{keys}").replace("layers = 5,8,3", model)
    check_refused(run_eomlab(["--config", write_config(tmp_path, text)]), expected, tmp_path / "out", None)
    agreeing = text.replace("n_features = 99", "n_features = 5").replace("n_classes = 77", "n_classes = 3")
    if agreeing != text:  # the widths the file and the network have
        proc = run_eomlab(["--config", write_config(tmp_path, agreeing)])
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("classes", ["2", "5"])
def test_classes_a_network_on_synthetic_data_does_not_give_are_refused(tmp_path, classes):
    """An adversarial review: beside model.architecture on synthetic data, data.n_classes = 2 on a network of 3
    outputs trained 2 classes on 3 logits, silently (5 was refused through a message about the labels); a
    data file's is refused naming the last layer, and so is it now. The network's own width runs."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("n_samples = 64", f"n_samples = 64\nshape = 1,4,4\nn_classes = {classes}") \
        .replace("layers = 5,8,3\nactivation = tanh", "architecture = conv(2, 3, pad=1), tanh, flatten, dense(3)")
    check_refused(run_eomlab(["--config", write_config(tmp_path, text)]),
                  f"data.n_classes: expected the network's output width 3 (model.architecture: layer 4 'dense(3)'), got {classes}",
                  tmp_path / "out", None)
    proc = run_eomlab(["--config", write_config(tmp_path, text.replace(f"n_classes = {classes}", "n_classes = 3"))])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("make,expected", [
    (lambda f: f.create_dataset("X", data=np.zeros((10, 5))), "no dataset /y"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 4))), f.create_dataset("y", data=np.zeros(10, np.int64))), "features"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.full(10, 3, np.int64))), "label 3"),
    (lambda f: (f.create_dataset("X", data=np.full((10, 5), np.nan)), f.create_dataset("y", data=np.zeros(10, np.int64))), "NaN"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.zeros(9, np.int64))), "/y"),
    # Found by an adversarial review: a group where a dataset belongs failed in H5Dopen (exit 1, an MPI abort).
    (lambda f: (f.create_group("X"), f.create_dataset("y", data=np.zeros(10, np.int64))), "expected a dataset /X, got a group"),
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_group("y")), "expected a dataset /y, got a group"),
    # h5py's own lzf filter, which Debian's HDF5 does not have: said so, not "corrupt or truncated file?".
    (lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.zeros(10, np.int64), compression="lzf")),
     "expected data this HDF5 library can decompress, got data stored with filter 32000 'lzf'"),
])
def test_data_file_with_wrong_content(tmp_path, make, expected, monkeypatch):
    monkeypatch.setenv("HDF5_PLUGIN_PATH", str(tmp_path / "no-plugins"))  # no lzf plugin, even where one is installed
    with h5py.File(tmp_path / "data.h5", "w") as f:
        make(f)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}")
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


@pytest.mark.parametrize("np_", [None, 2])
def test_a_value_with_a_hash_is_kept_whole(tmp_path, np_):
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("name = small", "name = run#1")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=np_)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert "name = run#1\n" in f.attrs["config"]
    assert "name = run#1\n" in (tmp_path / "out" / "study.ini").read_text()


@pytest.mark.parametrize("np_", [None, 2])
def test_control_characters_on_the_command_line_are_refused(tmp_path, small_study, np_):
    proc = run_eomlab(["--config", small_study, "--study.name=a\nb"], np=np_)
    check_refused(proc, "study.name: expected a value without control characters, got 'a\\x0ab'", tmp_path / "out", np_)


@pytest.mark.parametrize("np_", [None, 2])
def test_a_shard_count_beyond_int_is_refused(tmp_path, small_study, np_):
    proc = run_eomlab(["--config", small_study, "--shard", "1/99999999999"], np=np_)
    check_refused(proc, "--shard: expected an integer in [1, 2147483647], got '99999999999'", tmp_path / "out", np_)


@pytest.mark.parametrize("np_", [None, 2])
def test_close_learning_rates_get_a_file_each(tmp_path, np_):
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("lr = 0.1", "lr = 0.1, 0.1000001")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=np_)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "runs").glob("*.h5")) == ["lr0.1000001_seed1_wd0.h5", "lr0.1_seed1_wd0.h5"]
    with h5py.File(tmp_path / "out" / "sweep.h5", "r") as f:
        assert {s.decode() for s in f["summary"]["status"]} == {"complete"} and len(f["summary"]) == 2
        assert f["runs/lr0.1000001_seed1_wd0"].attrs["lr"] == 0.1000001


def run_with_timeout(args, np_, timeout=60):
    """Runs eomlab in a session of its own; if it hangs, kills that session (mpirun's ranks included)."""
    cmd = [eomlab_binary(), *map(str, args)]
    if np_ is not None:
        cmd = ["mpirun", "-np", str(np_), "--oversubscribe", *cmd]
    proc = subprocess.Popen(cmd, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)])
        proc.communicate()
        pytest.fail(f"eomlab hung for {timeout} s: {cmd}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
@pytest.mark.parametrize("np_", [None, 2])
def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path, kind, np_):
    path = tmp_path / "study.ini"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    proc = run_with_timeout(["--config", path], np_, timeout=30)
    check_refused(proc, f"--config: expected a regular file, got a {'directory' if kind == 'directory' else 'FIFO'} '{path}'",
                  tmp_path / "results", np_)


@pytest.mark.parametrize("key", ["data.source", "model.init"])
@pytest.mark.parametrize("np_", [None, 2])
def test_an_input_file_that_is_a_fifo_is_refused(tmp_path, key, np_):
    fifo = tmp_path / "input.h5"
    os.mkfifo(fifo)
    text = SMALL_STUDY.format(output=tmp_path / "out")
    if key == "data.source":
        text = text.replace("source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{fifo}")
    else:
        text = text.replace("[model]", f"[model]\ninit = hdf5:{fifo}")
    proc = run_with_timeout(["--config", write_config(tmp_path, text)], np_, timeout=30)
    check_refused(proc, f"{key}: expected a regular file, got a FIFO '{fifo}'", tmp_path / "out", np_)


@pytest.mark.parametrize("name,make,expected", [
    ("X", lambda f: (f.create_dataset("X", data=np.zeros((10, 5), np.int32)), f.create_dataset("y", data=np.zeros(10, np.int64))),
     ":/X: expected float64 [N, d] or [N, C, H, W], got int32 [10, 5]"),
    ("y", lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.zeros((10, 2), np.uint8))),
     ":/y: expected int64 [N] labels or float64 [N, k] targets, got uint8 [10, 2]"),
    # HDF5 converts uint64 beyond int64 to 2^63 - 1, which the message named as the label (an adversarial review).
    ("y", lambda f: (f.create_dataset("X", data=np.zeros((10, 5))), f.create_dataset("y", data=np.arange(10, dtype=np.uint64) + np.uint64(2**63 + 3))),
     ":/y: expected labels below 2^63, got 9223372036854775811"),
])
def test_wrong_dtype_in_a_data_file_is_named(tmp_path, name, make, expected):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        make(f)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    check_refused(proc, expected, tmp_path / "out", None)


OVERFLOW = "finite values of magnitude at most 1e150, got values up to {}, whose squares overflow"


@pytest.mark.parametrize("where", ["X", "y"])
def test_data_whose_squares_overflow_are_refused_naming_the_file(tmp_path, where):
    """A target or feature of 1e300 under mse gave an infinite loss at the start, which named model.layers and
    suggested a batchnorm's eps (an adversarial review); then the start's error named the file. Values beyond
    1e150 are now refused as the file is read, whatever the start loss."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 5)), rng.normal(size=(10, 3))
    (x if where == "X" else y)[2, 1] = 1e300
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = x, y
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture\nn_samples = 64",
                                                               f"source = hdf5:{tmp_path / 'data.h5'}")
    for extra in [[], ["--dry-run"]]:
        proc = run_eomlab(["--config", write_config(tmp_path, text), "--model.loss=mse", "--model.activation=relu", *extra])
        check_refused(proc, f"data.source: {tmp_path / 'data.h5'}:/{where}: expected " + OVERFLOW.format("1e+300"),
                      tmp_path / "out", None)


def test_data_beyond_1e150_under_batchnorm_are_refused_though_the_start_loss_is_finite(tmp_path):
    """One pixel of 1e160 before a batchnorm: the loss was finite, so the study ran to `complete` with every
    sharpness NaN (the channel's variance was inf, and the HVP inf·0), with no warning (an adversarial review)."""
    x = np.random.default_rng(1).normal(size=(12, 1, 4, 4))
    x[0, 0, 0, 0] = 1e160
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = x, np.arange(12) % 3
    text = with_change(with_change(SMALL_STUDY.format(output=tmp_path / "out"), "source = gaussian_mixture\nn_samples = 64",
                                   f"source = hdf5:{tmp_path / 'data.h5'}"), "layers = 5,8,3\nactivation = tanh",
                       "architecture = conv(2,3,pad=1), batchnorm, tanh, avgpool(2), flatten, dense(3)")
    proc = run_eomlab(["--config", write_config(tmp_path, text), "--flows.kinds=gf"])
    check_refused(proc, f"data.source: {tmp_path / 'data.h5'}:/X: expected " + OVERFLOW.format("1e+160"), tmp_path / "out", None)


def test_synthetic_data_whose_squares_overflow_name_the_noise(tmp_path):
    text = SMALL_STUDY.format(output=tmp_path / "out")
    proc = run_eomlab(["--config", write_config(tmp_path, text), "--data.noise=1e200"])
    check_refused(proc, "data.noise: expected synthetic data of finite values of magnitude at most 1e150, got values up to ",
                  tmp_path / "out", None)


def test_initial_parameters_whose_squares_overflow_are_refused_naming_the_file(tmp_path):
    """As for data: model.init's parameters of 1e160 under mse named the batchnorm's eps (a review)."""
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = np.full(5 * 8 + 8 + 8 * 3 + 3, 1e160)
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("[model]", f"[model]\ninit = hdf5:{tmp_path / 'init.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text), "--model.loss=mse"])
    check_refused(proc, f"model.init: {tmp_path / 'init.h5'}:/theta: expected " + OVERFLOW.format("1e+160"), tmp_path / "out", None)


def test_a_data_file_with_more_samples_than_int_counts_is_refused(tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("X", shape=(3_000_000_000, 5), dtype="f8")  # declared, never written: a small file
        f["y"] = np.zeros(10, np.int64)
    assert (tmp_path / "data.h5").stat().st_size < 100_000
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    # The memory estimate (120 GB for /X alone) refuses it first here; on a node with that much memory
    # the extent check does (BLAS and MPI count in int). Either way: one line naming the file.
    check_refused(proc, f"data.source: '{tmp_path / 'data.h5'}'", tmp_path / "out", None)
    assert "memory" in proc.stderr or "expected at most 2147483647 samples and features" in proc.stderr


def test_wrong_dtype_in_an_init_file_is_named(tmp_path):
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = np.zeros(75, np.int64)  # 5·8+8 + 8·3+3 parameters, but integers
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("[model]", f"[model]\ninit = hdf5:{tmp_path / 'init.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    check_refused(proc, ":/theta: expected float64 [75] (the model's parameter count), got int64 [75]", tmp_path / "out", None)


@pytest.mark.parametrize("np_", [None, 2])
def test_an_output_path_too_long_for_mpi_io_is_refused_and_the_longest_allowed_one_checkpoints(tmp_path, small_study, np_):
    """Open MPI's MPI-IO aborted the process (buffer overflow, exit 134) at the first checkpoint of a file path
    of 245 characters, losing it; such paths are refused at start. The run's longest file is its checkpoint's
    temporary copy <output>/checkpoints/lr0.1_seed1_wd0.h5.tmp (35 characters after <output>)."""
    def output_of(length):
        return tmp_path / ("o" * (length - 35 - len(str(tmp_path)) - 1))
    too_long = output_of(231)
    proc = run_eomlab(["--config", small_study, f"--study.output={too_long}", "--output.checkpoint_every=1"], np=np_)
    check_refused(proc, "study.output: expected a directory whose files' paths have at most 230 characters", too_long, np_)
    longest = output_of(230)
    proc = run_eomlab(["--config", small_study, f"--study.output={longest}", "--output.checkpoint_every=1"], np=np_)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(longest / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete"


@pytest.mark.parametrize("in_the_way", ["runs", "checkpoints"])
def test_a_file_in_the_way_of_the_output_folders_is_named_with_the_reason(tmp_path, small_study, in_the_way):
    """A file named like one of the output's folders: the message named <output>/runs whichever it was, and
    gave no reason."""
    out = tmp_path / "out"
    out.mkdir()
    (out / in_the_way).write_text("")
    for dry_run in ([], ["--dry-run"]):  # a dry run refuses it with the run's line
        proc = run_eomlab(["--config", small_study, *dry_run])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert eomlab_lines(proc.stderr) == [f"eomlab: study.output: cannot create directory '{out / in_the_way}': Not a directory"]
