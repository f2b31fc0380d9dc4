"""Networks of model.architecture (DESIGN.md §3.6) end to end, under mpirun: batchnorm's full-batch
statistics give the same trajectories with 1, 2 and 3 ranks per run (1e-11) and the same bits when rerun;
before batchnorm (eps 0) each channel's weights are scale-invariant, so a GD step adds exactly
η²‖g_c‖² = ‖Δθ_c‖² to ‖θ_c‖² and gf conserves ‖θ_c‖²; bad architectures exit 2 naming the layer by
position and text, writing nothing."""
import pathlib

import h5py
import numpy as np
import pytest

from conftest import run_eomlab, write_config
from test_bad_input import check_refused, with_change

STUDY = """
[study]
name = deep
output = {output}
seed = 4
ranks_per_run = {ranks}
[data]
source = gaussian_mixture
n_samples = 31
shape = 2,6,6
n_classes = 3
[model]
architecture = {architecture}
[optimizer]
lr = 0.1
steps = {steps}
record_every = {record_every}
[flows]
kinds = gf, eom1
[output]
sharpness = {sharpness}
"""

RESIDUAL_BN = ("conv(3, 3, pad=1), batchnorm, tanh, residual(conv(3, 3, pad=1), batchnorm(affine=off), gelu), "
               "avgpool(2), flatten, batchnorm, dense(3)")


def run(tmp_path, name, architecture, ranks=1, steps=6, record_every=3, sharpness="on"):
    out = tmp_path / name
    config = write_config(tmp_path, STUDY.format(output=out, ranks=ranks, architecture=architecture, steps=steps,
                                                 record_every=record_every, sharpness=sharpness), f"{name}.ini")
    proc = run_eomlab(["--config", config], np=ranks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (out / "runs").glob("*.h5")
    return path


def datasets(path):
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return {name: f[name][()] for name in names}


def test_batchnorm_runs_agree_across_rank_counts_and_reruns_are_bitwise(tmp_path):
    one = datasets(run(tmp_path, "r1", RESIDUAL_BN, ranks=1))
    for ranks in (2, 3):
        other = datasets(run(tmp_path, f"r{ranks}", RESIDUAL_BN, ranks=ranks))
        for traj in ("gd", "gf", "eom1"):
            a, b = one[f"trajectories/{traj}/theta"], other[f"trajectories/{traj}/theta"]
            assert np.abs(a - b).max() <= 1e-11 * np.abs(a).max(), (traj, ranks, np.abs(a - b).max())
        for name in ("observables/gd/loss", "observables/gf/distance_to_gd", "observables/gd/sharpness"):
            assert np.allclose(one[name], other[name], rtol=1e-10, atol=1e-13), name
    again = datasets(run(tmp_path, "r2_again", RESIDUAL_BN, ranks=2))
    first = datasets(tmp_path / "r2" / "runs" / next((tmp_path / "r2" / "runs").glob("*.h5")).name)
    for name, value in first.items():
        if value.dtype.kind == "f":
            assert np.array_equal(value, again[name], equal_nan=True), name


def test_channels_before_batchnorm_are_scale_invariant(tmp_path):
    path = run(tmp_path, "inv", "conv(4, 3, pad=1), batchnorm, tanh, flatten, dense(3)", steps=8, record_every=1,
               sharpness="off")
    with h5py.File(path, "r") as f:
        blocks = f["model/scale_invariant_blocks"][()]
        layout = {row["name"].decode(): row for row in f["model/layout"][()]}
        gd, gf = f["trajectories/gd/theta"][()], f["trajectories/gf/theta"][()]
        gd_norms, gf_norms = f["observables/gd/scale_invariant_norms"][()], f["observables/gf/scale_invariant_norms"][()]
        lr = f.attrs["lr"]
    assert [b["name"].decode() for b in blocks] == [f"layer0.W[{c}]" for c in range(4)]
    for c, b in enumerate(blocks):
        cut = slice(b["offset"], b["offset"] + b["size"])
        norm2 = (gd[:, cut] ** 2).sum(axis=1)
        assert np.allclose(gd_norms[:, c], norm2, rtol=1e-13)
        step2 = ((gd[1:, cut] - gd[:-1, cut]) ** 2).sum(axis=1)  # η²‖g_c‖²
        assert np.all(step2 > 1e-12 * norm2[:-1])  # the weights do move
        assert np.allclose(np.diff(norm2), step2, rtol=1e-9, atol=0), (np.diff(norm2), step2)
        assert abs(gf_norms[-1, c] - gf_norms[0, c]) <= 1e-9 * gf_norms[0, c]
    # The channels' biases get no gradient: (W_c, b_c) gains exactly what W_c gains.
    bias = layout["layer0.b"]
    b_gd = gd[:, bias["offset"]:bias["offset"] + bias["size"]]
    assert np.abs(b_gd - b_gd[0]).max() <= 1e-15 * lr * 100


BAD = {
    "unknown_layer": ("conv(4, 3), softmax, flatten, dense(3)", "model.architecture: layer 2 'softmax': expected one of"),
    "dense_on_image": ("conv(4, 3), dense(3)", "model.architecture: layer 2 'dense(3)': expected a vector input, got 4x4x4"),
    "residual_changes_shape": ("residual(conv(4, 3, pad=1)), flatten, dense(3)",
                               "model.architecture: layer 1 'residual(conv(4, 3, pad=1))': expected inner layers that keep "
                               "the shape 2x6x6, got 4x6x6"),
    "conv_larger_than_input": ("conv(4, 7), flatten, dense(3)", "model.architecture: layer 1 'conv(4, 7)'"),
    "unbalanced": ("conv(4, 3, flatten, dense(3)", "model.architecture: expected balanced parentheses"),
    # data.n_classes 3 (the study's) on 2 outputs: refused naming both (before 28165bd, through the labels)
    "too_few_outputs": ("flatten, dense(2)", "data.n_classes: expected the network's output width 2 "
                        "(model.architecture: layer 2 'dense(2)'), got 3"),
    "stray_parenthesis": ("conv(4, 3), tanh, flatten, dense(3) dense(3)",
                          "model.architecture: layer 4: expected NAME or NAME(ARGS), got 'dense(3) dense(3)'"),
    "hexadecimal_eps": ("batchnorm(eps=0x10), flatten, dense(3)", "model.architecture: layer 1 'batchnorm(eps=0x10)'"),
    # an adversarial review: ran as eps 0 (its scale-invariant blocks too)
    "eps_below_the_smallest_double": ("batchnorm(eps=1e-400), flatten, dense(3)",
                                      "model.architecture: layer 1 'batchnorm(eps=1e-400)': expected batchnorm[(affine=on|off, "
                                      "eps=E)] with a finite E >= 0, got 1e-400: a non-zero number must be at least "
                                      "2.2250738585072014e-308 in magnitude"),
    # a review of that fix: a subnormal eps passed --dry-run, then the run failed (exit 1, its output begun)
    "subnormal_eps": ("batchnorm(eps=1e-320), flatten, dense(3)", "got 1e-320: a non-zero number must be at least"),
    "nested_too_deep": ("residual(" * 65 + "tanh" + ")" * 65 + ", flatten, dense(3)",
                        "model.architecture: expected parentheses nested at most 64 deep"),
    # an adversarial review: the memory estimate's sums wrapped below zero and the run died of bad_alloc (exit 1)
    "padding_beyond_any_memory": ("conv(4, 3, pad=300000000), tanh, conv(4, 3, pad=300000000), globalavgpool, dense(3)",
                                  "model.architecture: layer 1 'conv(4, 3, pad=300000000)': expected an output of at "
                                  "most 2^40 values per sample, got 1.4400000192e+18 (4x600000004x600000004)"),
    "mlp_activation_beside_it": ("flatten, dense(3)\nactivation = relu", "model.activation: expected a key of model.layers only"),
    # found by a README walkthrough: accepted, ignored, and kept in the run files' config as if it had run
    "mlp_layers_beside_it": ("flatten, dense(3)\nlayers = 3, 3", "model.layers: expected no model.layers beside "
                             "model.architecture (it names every layer), or its default 16,32,32,4, got '3, 3'"),
}


@pytest.mark.parametrize("np_", [None, 2])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_architectures_are_refused_naming_the_layer(tmp_path, case, np_):
    architecture, expected = BAD[case]
    out = tmp_path / "out"
    config = write_config(tmp_path, STUDY.format(output=out, ranks=1, architecture=architecture, steps=2,
                                                 record_every=1, sharpness="off"))
    check_refused(run_eomlab(["--config", config], np=np_), expected, out, np_)


@pytest.mark.parametrize("np_,ranks", [(None, 1), (2, 1), (2, 2)])
def test_a_start_whose_loss_is_not_finite_is_refused(tmp_path, np_, ranks):
    """batchnorm with eps 0 over a single sample divides 0 by 0 before any step: bad input (exit 2, nothing
    written), not a run recorded as diverged; with eps > 0 the same study runs."""
    out = tmp_path / "out"
    text = with_change(STUDY.format(output=out, ranks=ranks, architecture="flatten, batchnorm, dense(3)", steps=2,
                                    record_every=1, sharpness="off"), "n_samples = 31", "n_samples = 1")
    config = write_config(tmp_path, text)
    check_refused(run_eomlab(["--config", config], np=np_), "model.architecture: expected a finite loss at the start", out, np_)
    config = write_config(tmp_path, with_change(text, "batchnorm,", "batchnorm(eps=1e-5),"), "eps.ini")
    proc = run_eomlab(["--config", config], np=np_)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("np_,ranks", [(None, 1), (2, 2)])
def test_an_sgd_start_whose_first_batch_loss_is_not_finite_is_refused(tmp_path, np_, ranks):
    """sgd with batches of one sample before a batchnorm (eps 0) over features: every batch divides 0 by 0,
    while the whole data's loss is finite. Refused at start as GD's single sample is (it was recorded as
    a run diverged at step 1)."""
    out = tmp_path / "out"
    text = with_change(STUDY.format(output=out, ranks=ranks, architecture="flatten, batchnorm, dense(3)", steps=32,
                                    record_every=32, sharpness="off"), "n_samples = 31", "n_samples = 32")
    text = with_change(text, "lr = 0.1", "lr = 0.1\nmethod = sgd\nbatch_size = 1")
    config = write_config(tmp_path, text)
    check_refused(run_eomlab(["--config", config], np=np_),
                  "model.architecture: expected a finite loss at the start, got -nan at run sgd_lr0.1_seed4_wd0's initial "
                  "parameters (its first batch)", out, np_)
    config = write_config(tmp_path, with_change(text, "batch_size = 1", "batch_size = 4"), "b4.ini")
    proc = run_eomlab(["--config", config], np=np_)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flows_of_a_batchnorm_net_integrate_under_pure_relative_tolerance(tmp_path):
    """An adversarial review: flows.atol = 0 (accepted: pure relative error control) failed every flow of a
    batchnorm net at t = 0 with 'step size underflow' (β starts at 0, the biases before batchnorm stay 0),
    leaving NaN records. They now integrate, to the trajectories of atol 1e-12 (rtol 1e-10)."""
    series = {}
    for atol in ["0", "1e-12"]:
        out = tmp_path / f"atol{atol}"
        config = write_config(tmp_path, STUDY.format(output=out, ranks=1, architecture=RESIDUAL_BN, steps=6, record_every=3,
                                                     sharpness="off"), f"atol{atol}.ini")
        proc = run_eomlab(["--config", config, f"--flows.atol={atol}", "--flows.rtol=1e-10"])
        assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout + proc.stderr
        (path,) = (out / "runs").glob("*.h5")
        with h5py.File(path, "r") as f:
            for flow in ["gf", "eom1"]:
                assert f[f"observables/{flow}"].attrs["status"] == "ok"
                series[atol, flow] = f[f"observables/{flow}/distance_to_discrete"][:]
    for flow in ["gf", "eom1"]:
        assert np.all(np.isfinite(series["0", flow])) and series["0", flow][-1] > 0
        np.testing.assert_allclose(series["0", flow], series["1e-12", flow], rtol=1e-6, atol=1e-12, err_msg=flow)


def test_every_seeds_first_sgd_batch_is_checked_wherever_it_is_in_the_sweep(tmp_path):
    """An adversarial review: only a group's first run had its first batch checked, so a seed whose first
    batch is 0/0 (batchnorm, eps 0, over a binary feature, batches of 2) refused the sweep when it came
    first and was recorded as diverged when it came later. Each seed's start is checked now."""
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "analysis"))
    from sgd_orders import permutation
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 4))
    x[:, 0] = np.arange(16) % 2
    with h5py.File(tmp_path / "bin.h5", "w") as f:
        f["X"], f["y"] = x, np.arange(16) % 3
    first_pair_equal = {s: x[permutation(s, 0, 16)[0], 0] == x[permutation(s, 0, 16)[1], 0] for s in range(1, 40)}
    good = next(s for s, equal in first_pair_equal.items() if not equal)
    bad = next(s for s, equal in first_pair_equal.items() if equal)
    text = f"""
[study]
output = {tmp_path / 'out'}
seed = {{seeds}}
[data]
source = hdf5:{tmp_path / 'bin.h5'}
[model]
architecture = batchnorm, dense(4), tanh, dense(3)
[optimizer]
method = sgd
batch_size = 2
lr = 0.05
steps = 8
record_every = 8
[flows]
kinds = gf
"""
    for seeds in [f"{good}, {bad}", f"{bad}, {good}"]:
        proc = run_eomlab(["--config", write_config(tmp_path, text.format(seeds=seeds))])
        check_refused(proc, f"model.architecture: expected a finite loss at the start, got -nan at run "
                      f"sgd_lr0.05_seed{bad}_wd0's initial parameters (its first batch)", tmp_path / "out", None)
