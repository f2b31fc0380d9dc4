"""Each method's discrete trajectory, written by the real eomlab into its run file, against torch.optim
run in float64 on the same data, network and θ0 (issue 14): SGD with momentum, with Nesterov momentum,
RMSprop and Adam, to 1e-12 relative at every step. Skipped where torch is not installed (CI)."""
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import compare_torch  # noqa: E402

ARCHITECTURE = "dense(8), tanh, dense(8), softplus, dense(3)"
SHAPE = (5,)
STEPS = 40
LR = 0.05

METHODS = {
    "heavy_ball": ("momentum = 0.8", lambda p: torch.optim.SGD([p], lr=LR, momentum=0.8)),
    "nesterov": ("momentum = 0.7", lambda p: torch.optim.SGD([p], lr=LR, momentum=0.7, nesterov=True)),
    "rmsprop": ("beta2 = 0.9\neps = 1e-3", lambda p: torch.optim.RMSprop([p], lr=LR, alpha=0.9, eps=1e-3)),
    "adam": ("beta1 = 0.8\nbeta2 = 0.95\neps = 1e-4", lambda p: torch.optim.Adam([p], lr=LR, betas=(0.8, 0.95), eps=1e-4)),
}


def eomlab_binary():
    return os.environ.get("EOMLAB_BINARY") or str(REPO / "build" / "src" / "eomlab")


def eomlab_trajectory(tmp, method, settings, ranks):
    out = tmp / f"out{ranks}"
    config = tmp / f"study{ranks}.ini"
    config.write_text(f"""
[study]
name = torch_{method}
output = {out}
ranks_per_run = {ranks}
[data]
source = hdf5:{tmp / 'data.h5'}
[model]
architecture = {ARCHITECTURE}
init = hdf5:{tmp / 'theta.h5'}
[optimizer]
method = {method}
{settings}
lr = {LR}
steps = {STEPS}
[flows]
kinds = gf
[output]
sharpness = off
""")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    proc = subprocess.run(["mpirun", "-np", str(ranks), eomlab_binary(), "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = (out / "runs").glob("*.h5")
    with h5py.File(run, "r") as f:
        assert f.attrs["method"] == method
        return f[f"trajectories/{method}/theta"][()]


def torch_trajectory(net, x, y, theta0, make_optimizer):
    loss = net.loss(x, y, "cross_entropy")
    p = torch.tensor(theta0, requires_grad=True)
    optimizer = make_optimizer(p)
    rows = [p.detach().numpy().copy()]
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss(p).backward()
        optimizer.step()
        rows.append(p.detach().numpy().copy())
    return np.array(rows)


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_discrete_trajectory_equals_torch_optim(tmp_path, method, ranks):
    torch.set_default_dtype(torch.float64)
    net = compare_torch.Network(ARCHITECTURE, SHAPE)
    x, y, theta0, _ = compare_torch.write_inputs(tmp_path, net, 40, seed=3)
    settings, make_optimizer = METHODS[method]
    ours = eomlab_trajectory(tmp_path, method, settings, ranks)
    theirs = torch_trajectory(net, x, y, theta0, make_optimizer)
    assert ours.shape == theirs.shape
    assert np.abs(theirs[-1] - theta0).max() > 1e-2  # the methods moved
    rel = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert rel.max() <= 1e-12, f"{method}, {ranks} ranks: worst step {rel.argmax()} at {rel.max():.2e}"
