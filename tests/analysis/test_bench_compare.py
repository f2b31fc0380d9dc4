"""bench/bench_compare on bad input (no torch needed): an unknown layer in EOMLAB_ARCHITECTURE or a bad
EOMLAB_LOSS exits 2 with one line naming the variable and the layer, on 1 and 2 ranks, instead of
an uncaught exception (abort)."""
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import bench_compare  # noqa: E402


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = rng.normal(size=(6, 1, 6, 6)), np.arange(6, dtype=np.int64) % 3
    for name in ["theta.h5", "v.h5"]:
        with h5py.File(tmp_path / name, "w") as f:
            f["theta"] = rng.normal(size=10)
    return tmp_path


def run(d, ranks, **environment):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", **environment)
    return subprocess.run(["mpirun", "-np", str(ranks), str(bench_compare()), str(d / "data.h5"), str(d / "theta.h5"),
                           str(d / "v.h5"), str(d / "out"), "1"], env=env, capture_output=True, text=True, timeout=120)


def own_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("bench_compare")]


@pytest.mark.parametrize("ranks", [1, 2])
def test_unknown_layer_exits_2_with_one_line(inputs, ranks):
    proc = run(inputs, ranks, EOMLAB_ARCHITECTURE="conv(4,3,pad=1), frobnicate, flatten, dense(3)")
    assert proc.returncode == 2, proc.stderr
    lines = own_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bench_compare: model.architecture: layer 2 'frobnicate'"), lines[0]
    assert "terminate called" not in proc.stderr and "signal" not in proc.stderr, proc.stderr  # no uncaught exception
    assert not list(inputs.glob("out*"))


def test_bad_loss_exits_2_with_one_line(inputs):
    proc = run(inputs, 1, EOMLAB_ARCHITECTURE="flatten, dense(3)", EOMLAB_LOSS="hinge")
    assert proc.returncode == 2, proc.stderr
    assert own_lines(proc.stderr) == ["bench_compare: EOMLAB_LOSS: expected cross_entropy or mse, got 'hinge'"]
