"""Minibatch SGD end to end (issue 14, DESIGN.md §1.5, §3.7), the real binary under real mpirun: the
shards of a run split each batch, so 1, 2 and 3 ranks per run give the same trajectories; reruns are
bitwise identical; a batch size that does not divide the data, or records and steps off whole epochs,
are bad input before anything is written; a study killed at a random moment resumes bit for bit."""
import random
import time

import h5py
import numpy as np
import pytest

from conftest import datasets, kill_study, run_eomlab, start_study, wait_for_first_checkpoint, write_config

STUDY = """
[study]
name = sgd
output = {output}
seed = 3
ranks_per_run = {ranks}
[data]
source = gaussian_mixture
n_samples = 48
[model]
layers = 5,8,3
activation = tanh
weight_decay = 0.01
[optimizer]
method = sgd
batch_size = 12
order = {order}
lr = 0.1
steps = 40
record_every = 8
[flows]
kinds = gf, eom0, eom1
"""


def run_file(out):
    (path,) = sorted((out / "runs").glob("*.h5"))
    return path


def series(out):
    with h5py.File(run_file(out), "r") as f:
        return {name: f[f"trajectories/{name}/theta"][()] for name in ("sgd", "gf", "eom0", "eom1")} | {
            "step": f["step"][()], "loss": f["observables/sgd/loss"][()],
            "eom1_distance": f["observables/eom1/distance_to_discrete"][()],
            "gf_distance": f["observables/gf/distance_to_discrete"][()]}


def study(tmp_path, name, ranks, order, **replace):
    text = STUDY.format(output=tmp_path / name, ranks=ranks, order=order)
    for old, new in replace.items():
        text = text.replace(old, new)
    config = write_config(tmp_path, text, f"{name}.ini")
    proc = run_eomlab(["--config", config], np=ranks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / name


# Input width 30 for 48 samples in batches of 12: on one rank eom1's first layer goes through the data's
# Gram matrix (ModelObjective's partition), on 2 and 3 ranks through the batches' own products.
WIDE = {"layers = 5,8,3": "layers = 30,8,3"}


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("order", ["fixed", "reshuffle"])
def test_one_two_and_three_ranks_per_run_agree_and_reruns_are_bitwise(tmp_path, order, wide):
    width = WIDE if wide else {}
    one = series(study(tmp_path, "one", 1, order, **width))
    assert list(one["step"]) == [0, 8, 16, 24, 32, 40]
    with h5py.File(run_file(tmp_path / "one"), "r") as f:  # the method's settings, a size as an integer
        assert f.attrs["order"] == order and f.attrs["batch_size"] == 12
        assert np.issubdtype(type(f.attrs["batch_size"]), np.integer)
    assert one["eom1_distance"][-1] < one["gf_distance"][-1] / 3
    for ranks in (2, 3):
        other = series(study(tmp_path, f"r{ranks}", ranks, order, **width))
        assert np.max(np.abs(other["sgd"] - one["sgd"])) < 1e-11, ranks
        assert np.max(np.abs(other["loss"] - one["loss"])) < 1e-12, ranks
        for flow in ("gf", "eom0", "eom1"):
            assert np.max(np.abs(other[flow] - one[flow])) < 1e-9, (ranks, flow)
    again = study(tmp_path, "again", 2, order, **width)
    assert datasets(again) == datasets(tmp_path / "r2")
    assert datasets(study(tmp_path, "again1", 1, order, **width)) == datasets(tmp_path / "one")  # one rank too


def test_fixed_and_reshuffled_orders_differ_after_the_first_epoch(tmp_path):
    fixed = series(study(tmp_path, "fixed", 1, "fixed", **{"record_every = 8": "record_every = 4"}))
    reshuffled = series(study(tmp_path, "reshuffled", 1, "reshuffle", **{"record_every = 8": "record_every = 4"}))
    assert np.array_equal(fixed["sgd"][:2], reshuffled["sgd"][:2])  # epoch 0 has the same order
    assert np.max(np.abs(fixed["sgd"][2] - reshuffled["sgd"][2])) > 1e-6


@pytest.mark.parametrize("override, key", [
    ("--optimizer.batch_size=7", "optimizer.batch_size"),
    ("--optimizer.record_every=6", "optimizer.record_every"),
    ("--optimizer.steps=42", "optimizer.steps"),
    ("--flows.kinds=gf,eom2", "flows.kinds"),
])
def test_bad_batch_size_records_and_steps_are_bad_input_before_anything_is_written(tmp_path, override, key):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", ranks=1, order="fixed"))
    proc = run_eomlab(["--config", config, override])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"eomlab: {key}:"), proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_default_record_every_names_the_value_that_fits(tmp_path):
    """record_every's default 1 fits sgd only with b = N: the refusal says what to set (48 samples, b = 12)."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", ranks=1, order="fixed").replace("record_every = 8\n", ""))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ("eomlab: optimizer.record_every: expected a multiple of 4 (records fall on whole epochs "
                                   "of 4 steps (sgd)), got 1; e.g. record_every = 4 (a record per epoch)"), proc.stderr


RESUME_STUDY = STUDY.replace("n_samples = 48", "n_samples = 240").replace("layers = 5,8,3", "layers = 5,32,3") \
    .replace("steps = 40", "steps = 800").replace("record_every = 8", "record_every = 40") \
    + "[output]\ncheckpoint_every = 13\n"


@pytest.fixture(scope="module")
def resume_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sgd_reference")
    config = write_config(tmp, RESUME_STUDY.format(output=tmp / "out", ranks=2, order="reshuffle"))
    start = time.time()
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return datasets(tmp / "out"), time.time() - start


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(tmp_path, resume_reference, seed):
    reference, seconds = resume_reference
    config = write_config(tmp_path, RESUME_STUDY.format(output=tmp_path / "out", ranks=2, order="reshuffle"))
    # Checkpoints every 13 steps fall mid-epoch (an epoch is 20 steps); the kill comes some time after the first.
    moment = random.Random(seed).uniform(0.0, 0.15) * seconds
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    time.sleep(moment)
    kill_study(proc)
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step" in resumed.stdout, f"killed after {moment:.2f} s of {seconds:.2f}: " + resumed.stdout
    assert datasets(tmp_path / "out") == reference, f"killed after {moment:.2f} s: " + resumed.stdout


def test_with_batchnorm_eom0_follows_the_batches_mean_gradient(tmp_path):
    """Each batch is normalized with its own statistics, so the batch losses do not average to L: an
    adversarial review found eom0 (then gf, the gradient flow of L with the whole data's statistics) no
    closer to sgd as η → 0 (its distance stalls), while eom1, built from the batches, converged at O(η²).
    eom0 is now −(1/m) Σ_j g_j from the batch gradients: slope 1; gf stays the gradient flow of L."""
    text = STUDY.format(output=tmp_path / "bn", ranks=1, order="fixed")
    for old, new in {"layers = 5,8,3\nactivation = tanh": "architecture = dense(8), batchnorm, tanh, dense(3)",
                     "n_samples = 48": "n_samples = 48\nn_features = 5\nn_classes = 3", "lr = 0.1": "lr = 0.2, 0.1, 0.05",
                     "steps = 40": "horizon = 2.4", "record_every = 8": "record_every = 4"}.items():
        assert old in text
        text = text.replace(old, new)
    proc = run_eomlab(["--config", write_config(tmp_path, text, "bn.ini")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = {}
    for lr in ["0.2", "0.1", "0.05"]:
        with h5py.File(tmp_path / "bn" / "runs" / f"sgd_lr{lr}_seed3_wd0.01.h5", "r") as f:
            for flow in ["gf", "eom0", "eom1"]:
                final[flow, lr] = f[f"observables/{flow}/distance_to_discrete"][-1]
    slopes = {flow: [np.log2(final[flow, a] / final[flow, b]) for a, b in [("0.2", "0.1"), ("0.1", "0.05")]]
              for flow in ["gf", "eom0", "eom1"]}
    assert all(abs(s - 1) < 0.25 for s in slopes["eom0"]), slopes
    assert all(abs(s - 2) < 0.25 for s in slopes["eom1"]), slopes
    assert slopes["gf"][-1] < 0.5, slopes  # the gradient flow of L does not approach sgd here
