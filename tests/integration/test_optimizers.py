"""The optimizers of issue 14 through the real binary under mpirun: run files that name the method and
its hyperparameters, the same numbers on 1 and 2 ranks per run, bitwise reruns, bitwise resume after
SIGKILL for every method, and bad optimizer input refused before anything is written."""
import random
import time

import h5py
import numpy as np
import pytest

from conftest import datasets, kill_study, run_eomlab, start_study, wait_for_first_checkpoint, write_config

SETTINGS = {
    "heavy_ball": "momentum = 0.8",
    "nesterov": "momentum = 0.6",
    "rmsprop": "beta2 = 0.9\neps = 0.01",
    "adam": "beta1 = 0.8\nbeta2 = 0.9\neps = 0.01",
}
FLOWS = {"heavy_ball": "gf, eom1, eom2", "nesterov": "eom0, eom2", "rmsprop": "eom0, eom1", "adam": "eom1"}

STUDY = """
[study]
name = {method}
output = {output}
ranks_per_run = {ranks}
[data]
n_samples = {samples}
[model]
layers = 5,16,3
[optimizer]
method = {method}
{settings}
lr = 0.02
steps = {steps}
record_every = 5
[flows]
kinds = {flows}
[output]
checkpoint_every = {checkpoint_every}
"""


def study(tmp_path, method, ranks=1, steps=40, samples=48, checkpoint_every=0, name="study.ini", output="out"):
    text = STUDY.format(method=method, settings=SETTINGS[method], flows=FLOWS[method], ranks=ranks, steps=steps,
                        samples=samples, checkpoint_every=checkpoint_every, output=tmp_path / output)
    return write_config(tmp_path, text, name)


def run_file(out):
    (path,) = (out / "runs").glob("*.h5")
    return path


@pytest.mark.parametrize("method", SETTINGS)
def test_run_file_names_the_method_and_ranks_agree(tmp_path, method):
    one = study(tmp_path, method, ranks=1, name="one.ini", output="one")
    two = study(tmp_path, method, ranks=2, name="two.ini", output="two")
    for config, np_ in [(one, 1), (two, 2)]:
        proc = run_eomlab(["--config", config], np=np_)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"dist. to {method}" in proc.stdout
    flows = [f.strip() for f in FLOWS[method].split(",")]
    with h5py.File(run_file(tmp_path / "one"), "r") as a, h5py.File(run_file(tmp_path / "two"), "r") as b:
        assert a.attrs["method"] == method and a.attrs["run_id"].startswith(method + "_")
        for line in SETTINGS[method].splitlines():
            key, value = (s.strip() for s in line.split("="))
            assert a.attrs[key] == float(value), key
        assert a.attrs["discrete_trajectory"] == method
        for traj in [method, *flows]:
            x, y = a[f"trajectories/{traj}/theta"][()], b[f"trajectories/{traj}/theta"][()]
            # The adaptive methods' fields vary like 1/eps: rounding that differs with the rank count can
            # change the integrator's accepted steps, which moves their flows within its tolerance.
            tolerance = 1e-11 if traj == method or "momentum" in SETTINGS[method] else 1e-6
            assert np.abs(x - y).max() <= tolerance * np.abs(x).max(), (traj, np.abs(x - y).max())
        for flow in flows:
            d = a[f"observables/{flow}/distance_to_discrete"][()]
            assert np.all(np.isfinite(d)) and d[-1] > 0
            assert np.array_equal(d, a[f"observables/{flow}/distance_to_{method}"][()])
    again = study(tmp_path, method, ranks=2, name="again.ini", output="again")
    assert run_eomlab(["--config", again], np=2).returncode == 0
    assert datasets(tmp_path / "again") .keys() == datasets(tmp_path / "two").keys()
    with h5py.File(run_file(tmp_path / "two"), "r") as a, h5py.File(run_file(tmp_path / "again"), "r") as b:
        for traj in [method, *flows]:
            assert a[f"trajectories/{traj}/theta"][()].tobytes() == b[f"trajectories/{traj}/theta"][()].tobytes()


@pytest.mark.parametrize("method", SETTINGS)
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, method):
    ref = study(tmp_path, method, ranks=2, steps=300, samples=128, checkpoint_every=5, name="ref.ini", output="ref")
    assert run_eomlab(["--config", ref], np=2).returncode == 0
    config = study(tmp_path, method, ranks=2, steps=300, samples=128, checkpoint_every=5)
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    time.sleep(random.Random(method).uniform(0.0, 0.2))
    kill_study(proc)
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        assert f.attrs["status"] == "running"  # killed inside the run
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step" in resumed.stdout
    assert datasets(tmp_path / "out") == datasets(tmp_path / "ref")


@pytest.mark.parametrize("change, key", [
    (("method = heavy_ball", "method = gd"), "optimizer.momentum"),
    (("momentum = 0.8", "momentum = 1"), "optimizer.momentum"),
    (("momentum = 0.8", "momentum = 0.8\nbeta1 = 0.9"), "optimizer.beta1"),
    (("kinds = gf, eom1, eom2", "kinds = eom3"), "flows.kinds"),
])
def test_bad_optimizer_input_exits_2_naming_the_key(tmp_path, change, key):
    config = study(tmp_path, "heavy_ball")
    config.write_text(config.read_text().replace(*change))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_order_adam_does_not_provide_names_method_and_order(tmp_path):
    config = study(tmp_path, "adam")
    config.write_text(config.read_text().replace("kinds = eom1", "kinds = eom1, eom2"))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 2
    assert "adam" in proc.stderr and "eom2" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
