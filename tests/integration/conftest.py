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


def start_study(config, np=2):
    """eomlab on `config` under `mpirun -np N` in a session of its own, running on (for kill_study)."""
    return subprocess.Popen(["mpirun", "-np", str(np), "--oversubscribe", eomlab_binary(), "--config", str(config)],
                            env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_study(proc):
    """SIGKILL to every process of a study started by start_study, as a node failure or the batch system
    would (Open MPI puts each rank in a process group of its own, so killing mpirun's group alone would
    leave ranks running); returns once none is left."""
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)])
    proc.wait(timeout=60)
    while subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).returncode == 0:
        time.sleep(0.1)


def bench_compare():
    """bench_compare beside the eomlab binary under test (build/src/eomlab -> build/bench/bench_compare)."""
    binary = pathlib.Path(eomlab_binary())
    path = pathlib.Path(os.environ.get("EOMLAB_BENCH_COMPARE") or binary.parents[1] / "bench" / "bench_compare")
    if not path.exists():
        pytest.skip(f"{path} not built (the benchmarks need Google Benchmark)")
    return path


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
