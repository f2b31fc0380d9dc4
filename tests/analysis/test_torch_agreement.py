"""The whole network's g, Hv and T[v, v] from eomlab (bench/bench_compare, 1 and 2 MPI ranks) against
PyTorch float64 autograd on the same data and θ, to 1e-12 relative (issue 13). The PyTorch side is
bench/compare_torch.py's loss of the flat θ; skipped where torch is not installed (CI)."""
import pathlib
import sys

import pytest

torch = pytest.importorskip("torch")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import compare_torch  # noqa: E402
from conftest import bench_compare  # noqa: E402

NETWORKS = {
    "cnn": ("conv(4,3,pad=1), tanh, avgpool(2), conv(4,3,stride=2,pad=1), silu, maxpool(2), flatten, dense(3)",
            (2, 8, 8)),
    "resnet_batchnorm": ("conv(4,3,pad=1), batchnorm, relu, residual(conv(4,3,pad=1), batchnorm, gelu), "
                         "globalavgpool, dense(3)", (2, 6, 6)),
    # C x 1 x 1 feature maps are images; weight-normalized rows.
    "one_by_one_weightnorm": ("conv(4,4,stride=2), tanh, conv(3,1), maxpool(1), globalavgpool, "
                              "dense(4, weightnorm=on), tanh, dense(3)", (2, 4, 4)),
    "mlp_norms": ("dense(6), batchnorm(affine=off), softplus, residual(dense(6), layernorm, tanh), dense(3)", (5,)),
}
SAMPLES = 30
TOLERANCE = 1e-12


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("name", NETWORKS)
def test_gradient_hvp_and_third_order_agree_with_pytorch(name, loss, ranks):
    architecture, shape = NETWORKS[name]
    net = compare_torch.Network(architecture, shape)
    rel = compare_torch.agreement(bench_compare(), net, loss, SAMPLES, ranks)
    assert max(rel.values()) <= TOLERANCE, f"{name}, {loss}, {ranks} ranks: {rel}"
