"""Minibatch sgd (issue 14, DESIGN.md §1.5) against torch.optim.SGD(lr, momentum=0, weight_decay=λ) in
float64 over the same batches in the same order, to 1e-12: the real binary runs a study on data and an
initial θ from HDF5 files; the batch orders are reproduced here from the documented recipe (Fisher–Yates
with eomlab's portable xoshiro256** seeded by splitmix64, src/flow/sgd.hpp), written out independently
of the C++ code. Skipped where torch is not installed (CI)."""
import os
import pathlib
import subprocess

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = pathlib.Path(__file__).resolve().parents[2]
MASK = (1 << 64) - 1


class Rng:
    """eomlab's Rng (src/core/rng.cpp): xoshiro256** seeded through splitmix64."""

    def __init__(self, seed, stream=0):
        x = (seed ^ (stream * 0xD1B54A32D192ED03)) & MASK
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next_u64(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def below(self, n):
        limit = MASK - MASK % n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n


def permutation(seed, epoch, n):
    p = list(range(n))
    rng = Rng(seed, 0x5347440000000000 + epoch)
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def test_the_python_orders_are_eomlabs():
    # Pinned by tests/unit/test_sgd.cpp (PermutationsAreTheSpecifiedFisherYates prints it).
    assert permutation(1, 0, 8) == [7, 5, 3, 2, 1, 6, 4, 0]


def eomlab_binary():
    return os.environ.get("EOMLAB_BINARY") or str(REPO / "build" / "src" / "eomlab")


@pytest.mark.parametrize("order", ["fixed", "reshuffle"])
def test_sgd_equals_torch_optim_sgd_over_the_same_batches(tmp_path, order):
    n, d, hidden, classes, b, lr, wd, seed, epochs = 36, 5, 8, 3, 9, 0.2, 0.01, 7, 4
    m = n // b
    rs = np.random.RandomState(0)
    x = rs.normal(size=(n, d))
    y = rs.randint(0, classes, size=n).astype(np.int64)
    theta0 = rs.normal(scale=0.5, size=hidden * d + hidden + classes * hidden + classes)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"] = x
        f["y"] = y
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = theta0
    (tmp_path / "study.ini").write_text(f"""
[study]
name = torch_sgd
output = {tmp_path / 'out'}
seed = {seed}
[data]
source = hdf5:{tmp_path / 'data.h5'}
[model]
layers = {d},{hidden},{classes}
activation = tanh
loss = cross_entropy
weight_decay = {wd}
init = hdf5:{tmp_path / 'init.h5'}
[optimizer]
method = sgd
batch_size = {b}
order = {order}
lr = {lr}
steps = {epochs * m}
record_every = {m}
[flows]
kinds = gf
""")
    proc = subprocess.run([eomlab_binary(), "--config", str(tmp_path / "study.ini")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = (tmp_path / "out" / "runs").glob("*.h5")
    with h5py.File(run, "r") as f:
        eomlab_theta = f["trajectories/sgd/theta"][()]
        assert list(f["step"][()]) == [e * m for e in range(epochs + 1)]

    net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes)).double()
    torch.nn.utils.vector_to_parameters(torch.tensor(theta0), net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0, weight_decay=wd)
    xt, yt = torch.tensor(x), torch.tensor(y)
    thetas = [torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().copy()]
    for e in range(epochs):
        p = permutation(seed, e if order == "reshuffle" else 0, n)
        for j in range(m):
            idx = torch.tensor(p[j * b:(j + 1) * b])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        thetas.append(torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().copy())
    diff = np.max(np.abs(np.array(thetas) - eomlab_theta))
    print(f"{order}: max |theta_eomlab - theta_torch| over {epochs} epochs = {diff:.2e}")
    assert diff < 1e-12
    assert np.max(np.abs(thetas[-1] - thetas[0])) > 1e-2  # it moved
