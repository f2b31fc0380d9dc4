"""Helpers for the end-to-end tests: they run the real eomlab binary, under a real mpirun."""
import os
import pathlib
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def eomlab_binary():
    path = os.environ.get("EOMLAB_BINARY") or str(REPO / "build" / "src" / "eomlab")
    if not os.path.exists(path):
        pytest.exit(f"eomlab binary not found at {path}; build first or set EOMLAB_BINARY", returncode=1)
    return path


def mpi_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def run_eomlab(args, np=None, cwd=None, timeout=600):
    """Runs eomlab (under `mpirun -np N` when np is given) and returns the CompletedProcess."""
    cmd = [eomlab_binary(), *map(str, args)]
    if np is not None:
        cmd = ["mpirun", "-np", str(np), "--oversubscribe", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def wait_for_first_checkpoint(out, proc):
    """Returns once a run of the study writing to `out` is under way (its first checkpoint exists), so a
    signal or a second invocation now meets it running."""
    deadline = time.time() + 60
    while not any((out / "checkpoints").glob("*.h5")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def datasets(out):
    """Every dataset of every run file of the study writing to `out`, as bytes, by (file, path)."""
    import h5py

    data = {}
    for path in sorted((out / "runs").glob("*.h5")):
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: data.__setitem__((path.name, name), obj[()].tobytes())
                         if isinstance(obj, h5py.Dataset) else None)
    return data


def write_config(directory, text, name="study.ini"):
    path = pathlib.Path(directory) / name
    path.write_text(text)
    return path


SMALL_STUDY = """
[study]
name = small
output = {output}
seed = 1
ranks_per_run = 1
[data]
source = gaussian_mixture
n_samples = 64
[model]
layers = 5,8,3
activation = tanh
[optimizer]
lr = 0.1
steps = 20
record_every = 5
[flows]
kinds = gf, eom1
"""


@pytest.fixture
def small_study(tmp_path):
    """A small valid study config whose output goes to tmp_path/out."""
    return write_config(tmp_path, SMALL_STUDY.format(output=tmp_path / "out"))
