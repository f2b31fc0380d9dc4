"""The run file of DESIGN.md §3.4 as written by scripts/quickstart and by the real binary under mpirun."""
import os
import select
import signal
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO, eomlab_binary, mpi_env, run_eomlab, write_config, SMALL_STUDY

TRAJECTORIES = ["gd", "gf", "eom1"]


def check_run_file(path):
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        for key in ["eomlab_version", "git_sha", "config", "run_id", "lr", "seed", "weight_decay",
                    "ranks_per_run", "n_params", "status", "created", "finished", "host", "mpi_library", "blas"]:
            assert key in attrs, f"missing root attribute {key}"
        assert attrs["status"] == "complete"
        lr, n_params = float(attrs["lr"]), int(attrs["n_params"])
        step, time = f["/step"][:], f["/time"][:]
        assert step[0] == 0 and np.all(np.diff(step) > 0)
        np.testing.assert_array_equal(time, step * lr)

        assert f["/model"].attrs["couples_samples"] == 0  # the MLP's batches do not interact
        layout = f["/model/layout"][:]
        assert set(layout.dtype.names) == {"name", "offset", "size", "rows", "cols"}
        offsets, sizes = layout["offset"], layout["size"]
        assert offsets[0] == 0 and np.all(offsets[1:] == offsets[:-1] + sizes[:-1])
        assert offsets[-1] + sizes[-1] == n_params
        np.testing.assert_array_equal(sizes, layout["rows"] * layout["cols"])

        gd_theta = f["/trajectories/gd/theta"][:]
        assert gd_theta.shape == (len(step), n_params)
        for traj in TRAJECTORIES:
            theta = f[f"/trajectories/{traj}/theta"][:]
            obs = f[f"/observables/{traj}"]
            assert theta.shape == (len(step), n_params)
            for name in ["loss", "grad_norm"]:
                assert obs[name].shape == (len(step),)
                assert np.all(np.isfinite(obs[name][:]))
            blocks = obs["block_norms"][:]
            assert blocks.shape == (len(step), len(layout))
            expected = np.stack([np.sum(theta[:, o:o + s] ** 2, axis=1) for o, s in zip(offsets, sizes)], axis=1)
            np.testing.assert_allclose(blocks, expected, rtol=1e-12)
            assert int(obs.attrs["evaluations"]) > 0
            assert float(obs.attrs["wall_seconds"]) >= 0
            if traj != "gd":
                distance = obs["distance_to_gd"][:]
                np.testing.assert_allclose(distance, np.linalg.norm(theta - gd_theta, axis=1), rtol=1e-12, atol=1e-300)
                assert distance[0] == 0 and np.all(distance[1:] > 0)
        # Sharpness along GD, and the edge-of-stability verdict.
        sharpness = f["/observables/gd/sharpness"][:]
        assert sharpness.shape == (len(step),) and np.all(sharpness > 0)
        assert np.isclose(f.attrs["max_lr_sharpness"], lr * sharpness.max())
        assert f.attrs["edge_of_stability"] == "no"
        # Translation components of the output layer (cross-entropy): class-sums of W columns and b.
        table = f["/model/translation_components"][:]
        comps = f["/observables/gd/translation_components"][:]
        for i, row in enumerate(table):
            idx = row["offset"] + row["stride"] * np.arange(row["count"])
            np.testing.assert_allclose(comps[:, i], gd_theta[:, idx].sum(axis=1), rtol=1e-12, atol=1e-14)
        # Every trajectory starts from the same parameters.
        for traj in TRAJECTORIES:
            np.testing.assert_array_equal(f[f"/trajectories/{traj}/theta"][0], gd_theta[0])
        # GD obeys its update: θ_{k+1} = θ_k − lr ∇L(θ_k) is checked through the recorded gradient norm
        # of the first step when record_every == 1; here at least the loss decreases overall.
        loss = f["/observables/gd/loss"][:]
        assert loss[-1] < loss[0]


def test_quickstart_script_writes_complete_readable_files(tmp_path):
    out = tmp_path / "quickstart"
    env = mpi_env()
    if os.environ.get("EOMLAB_BINARY"):
        env["EOMLAB_BUILD_DIR"] = os.path.dirname(os.path.dirname(os.environ["EOMLAB_BINARY"]))
    proc = subprocess.run([str(REPO / "scripts" / "quickstart"), f"--study.output={out}"], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Summary of study 'quickstart'" in proc.stdout
    for traj in TRAJECTORIES:
        assert f" {traj} " in proc.stdout
    files = sorted((out / "runs").glob("*.h5"))
    assert [p.name for p in files] == ["lr0.05_seed1_wd0.h5", "lr0.1_seed1_wd0.h5"]
    for path in files:
        check_run_file(path)
        # h5dump (the HDF5 command-line tools) reads the file too.
        dump = subprocess.run(["h5dump", "-H", str(path)], capture_output=True, text=True)
        assert dump.returncode == 0, dump.stderr
        for name in ["step", "time", "layout", "theta", "loss", "grad_norm", "distance_to_gd", "block_norms"]:
            assert f'DATASET "{name}"' in dump.stdout
        values = subprocess.run(["h5dump", "-d", "/observables/eom1/distance_to_gd", str(path)],
                                capture_output=True, text=True)
        assert values.returncode == 0 and "DATA" in values.stdout


def test_small_study_file_on_two_ranks_per_run(tmp_path):
    config = write_config(tmp_path, SMALL_STUDY.format(output=tmp_path / "out").replace("ranks_per_run = 1", "ranks_per_run = 2"))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stderr
    check_run_file(tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5")


def test_record_zero_is_the_initial_state_and_loss_matches_numpy(tmp_path):
    """Data and initial parameters from HDF5 files; the loss at record 0 is recomputed with numpy."""
    rng = np.random.default_rng(0)
    n, d, h, k = 50, 4, 6, 3
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n).astype(np.int64)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"] = X
        f["y"] = y
    n_params = d * h + h + h * k + k
    theta = rng.normal(size=n_params) * 0.5
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = theta
    wd = 0.01
    config = write_config(tmp_path, f"""
[study]
output = {tmp_path / 'out'}
[data]
source = hdf5:{tmp_path / 'data.h5'}
[model]
layers = {d},{h},{k}
activation = softplus
weight_decay = {wd}
init = hdf5:{tmp_path / 'init.h5'}
[optimizer]
lr = 0.05
steps = 4
[flows]
kinds = gf
""")
    proc = run_eomlab(["--config", config], np=1)
    assert proc.returncode == 0, proc.stderr
    # numpy reference of the loss (DESIGN.md §1.1) with the flat layout of §3.3.
    W1 = theta[:d * h].reshape(h, d)
    b1 = theta[d * h:d * h + h]
    W2 = theta[d * h + h:d * h + h + h * k].reshape(k, h)
    b2 = theta[d * h + h + h * k:]
    z = np.logaddexp(0, X @ W1.T + b1) @ W2.T + b2
    ce = np.mean(np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1) - z[np.arange(n), y])
    expected = ce + 0.5 * wd * theta @ theta
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.01.h5".replace("seed1", "seed0"), "r") as f:
        np.testing.assert_array_equal(f["/trajectories/gd/theta"][0], theta)
        np.testing.assert_allclose(f["/observables/gd/loss"][0], expected, rtol=1e-13)
        # GD's first step, from the recorded parameters: θ1 = θ0 − lr ∇L(θ0), ‖∇L(θ0)‖ recorded.
        step = f["/trajectories/gd/theta"][1] - f["/trajectories/gd/theta"][0]
        np.testing.assert_allclose(np.linalg.norm(step) / 0.05, f["/observables/gd/grad_norm"][0], rtol=1e-12)


def test_error_orders_from_the_files(tmp_path):
    """At fixed final time, distance to GD ∝ lr for gf and ∝ lr² for eom1 (DESIGN.md §1.3)."""
    config = write_config(tmp_path, f"""
[study]
output = {tmp_path / 'out'}
seed = 3
[data]
n_samples = 64
[model]
layers = 6,10,3
activation = tanh
[optimizer]
lr = 0.08, 0.04, 0.02, 0.01
horizon = 0.8
record_every = 1000
[flows]
kinds = gf, eom1, eom2, eom3
rtol = 1e-12
atol = 1e-14
""")
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stderr
    lrs, dist = [], {"gf": [], "eom1": [], "eom2": [], "eom3": []}
    for path in sorted((tmp_path / "out" / "runs").glob("*.h5")):
        with h5py.File(path, "r") as f:
            assert np.isclose(f["/time"][-1], 0.8)
            lrs.append(float(f.attrs["lr"]))
            for t in dist:
                dist[t].append(f[f"/observables/{t}/distance_to_gd"][-1])
    for t, order in [("gf", 1), ("eom1", 2), ("eom2", 3), ("eom3", 4)]:
        slope = np.polyfit(np.log(lrs), np.log(dist[t]), 1)[0]
        assert abs(slope - order) < (0.2 if order <= 2 else 0.25), f"{t}: slope {slope:.3f}, expected {order}"


def run_statuses(out):
    statuses = {}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            statuses[float(f.attrs["lr"])] = f.attrs["status"]
    return statuses


def test_diverging_run_is_recorded_and_others_complete(tmp_path):
    """mse on a relu network at lr 5 blows up: that run is `diverged`, the other completes."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("lr = 0.1", "lr = 0.1, 5")
    text = text.replace("activation = tanh", "activation = relu\nloss = mse").replace("kinds = gf, eom1", "kinds = gf, eom1\nmax_steps = 2000")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=2)
    assert proc.returncode == 0, proc.stderr
    assert run_statuses(tmp_path / "out") == {0.1: "complete", 5.0: "diverged"}
    assert "GD diverged" in proc.stdout
    with h5py.File(tmp_path / "out" / "runs" / "lr5_seed1_wd0.h5", "r") as f:
        loss = f["/observables/gd/loss"][:]
        assert not loss[-1] <= 1e6 * loss[0] and np.all(loss[:-1] <= 1e6 * loss[0])
        assert f["/step"][-1] < 20


def test_flow_over_its_step_limit_is_marked_failed_and_the_run_goes_on(tmp_path):
    """A stiff eom1 flow (large lr) hits flows.max_steps: NaN from then on, status says why, GD completes."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("lr = 0.1", "lr = 400")
    text = text.replace("kinds = gf, eom1", "kinds = gf, eom1\nmax_steps = 2000")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=1, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "eom1 failed: step limit" in proc.stdout
    with h5py.File(tmp_path / "out" / "runs" / "lr400_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete"
        assert f["/step"][-1] == 20
        assert f["/observables/eom1"].attrs["status"].startswith("failed: step limit")
        assert np.isnan(f["/observables/eom1/loss"][-1])
        assert np.all(np.isfinite(f["/observables/gd/loss"][:]))


def test_normalized_layers_write_their_invariant_blocks(tmp_path):
    for norm, blocks in [("layer", 1), ("weight", 8)]:
        text = SMALL_STUDY.format(output=tmp_path / norm).replace("activation = tanh", f"activation = tanh\nnormalize = {norm}")
        proc = run_eomlab(["--config", write_config(tmp_path, text, f"{norm}.ini")], np=2)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(tmp_path / norm / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
            table = f["/model/scale_invariant_blocks"][:]
            assert len(table) == blocks
            theta = f["/trajectories/gf/theta"][:]
            norms = f["/observables/gf/scale_invariant_norms"][:]
            for i, row in enumerate(table):
                np.testing.assert_allclose(norms[:, i], (theta[:, row["offset"]:row["offset"] + row["size"]] ** 2).sum(1), rtol=1e-12)
                np.testing.assert_allclose(norms[:, i], norms[0, i], rtol=1e-9)  # conserved by gf


EOS_STUDY = SMALL_STUDY.replace("lr = 0.1", "lr = 3").replace("kinds = gf, eom1", "kinds = gf\nmax_steps = 2000").replace(
    "[model]", "[model]\nloss = mse")


def test_edge_of_stability_is_reported(tmp_path):
    """lr·λ_max > 2 on the GD trajectory: a warning on stderr and an attribute in the run file."""
    proc = run_eomlab(["--config", write_config(tmp_path, EOS_STUDY.format(output=tmp_path / "out"))], np=1)
    assert proc.returncode == 0, proc.stderr
    assert "edge of stability" in proc.stderr and "edge of stability" not in proc.stdout
    path = next((tmp_path / "out" / "runs").glob("*.h5"))
    with h5py.File(path, "r") as f:
        assert f.attrs["edge_of_stability"].startswith("lr*sharpness > 2")
        assert f.attrs["max_lr_sharpness"] > 2


def test_edge_of_stability_warning_comes_when_it_happens(tmp_path):
    """The warning is printed the moment GD crosses the limit, not when the run ends: a run stopped by a
    signal right after the warning (long before its end) has printed it."""
    text = EOS_STUDY.format(output=tmp_path / "out").replace("steps = 20", "steps = 2000000").replace(
        "record_every = 5", "record_every = 1000")
    proc = subprocess.Popen([eomlab_binary(), "--config", str(write_config(tmp_path, text))], env=mpi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        warning = proc.stderr.readline() if ready else "(nothing on stderr for 60 s)"
        assert "edge of stability" in warning and "at step 0" in warning, warning
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    with h5py.File(tmp_path / "out" / "runs" / "lr3_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "interrupted" and f["/step"][-1] < 2000000


def test_sharpness_is_right_with_layer_norm_and_weight_decay(tmp_path):
    """Layer norm + weight decay: the all-ones Lanczos start was an exact eigenvector (eigenvalue λ) and
    the recorded sharpness was λ. The full-Hessian oracle is in tests/unit/test_sharpness.cpp; here the
    run files: far above λ, and the same with 1 and 2 ranks per run (the random start does not depend on
    the slicing)."""
    values = {}
    for rpr in (1, 2):
        text = SMALL_STUDY.format(output=tmp_path / f"out{rpr}").replace(
            "activation = tanh", "activation = tanh\nnormalize = layer\nweight_decay = 0.001").replace(
            "ranks_per_run = 1", f"ranks_per_run = {rpr}")
        proc = run_eomlab(["--config", write_config(tmp_path, text, f"s{rpr}.ini")], np=2)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(tmp_path / f"out{rpr}" / "runs" / "lr0.1_seed1_wd0.001.h5", "r") as f:
            values[rpr] = f["/observables/gd/sharpness"][:]
    assert np.all(values[1] > 100 * 0.001), values[1]
    np.testing.assert_allclose(values[2], values[1], rtol=1e-7)


DIVERGING = SMALL_STUDY.replace("lr = 0.1", "lr = 20").replace("steps = 20", "steps = 300").replace(
    "record_every = 5", "record_every = 50").replace("activation = tanh", "activation = relu").replace(
    "kinds = gf, eom1", "kinds = gf\nmax_steps = 2000")


def test_a_blown_up_run_stops_promptly_as_diverged(tmp_path):
    """relu + cross-entropy at lr 20: the loss grows to 1e238 while finite and only turns NaN at step 131.
    The run stops at the first step whose loss exceeds optimizer.divergence_factor (default 1e6) times
    the initial loss, records it, and is `diverged`."""
    proc = run_eomlab(["--config", write_config(tmp_path, DIVERGING.format(output=tmp_path / "out"))], np=1)
    assert proc.returncode == 0, proc.stderr
    assert "GD diverged at step" in proc.stdout
    with h5py.File(tmp_path / "out" / "runs" / "lr20_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "diverged"
        step, loss = f["/step"][:], f["/observables/gd/loss"][:]
        assert step[-1] < 10 and np.isfinite(loss[-1]) and loss[-1] > 1e6 * loss[0]
        assert np.all(loss[:-1] <= 1e6 * loss[0])


def test_divergence_factor_is_a_config_key(tmp_path):
    """A larger factor lets the same run go on until its loss is no longer finite; a factor <= 1 is bad input."""
    text = DIVERGING.format(output=tmp_path / "out").replace("[optimizer]", "[optimizer]\ndivergence_factor = 1e300")
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=1)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out" / "runs" / "lr20_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "diverged" and f["/step"][-1] > 100
    bad = run_eomlab(["--config", write_config(tmp_path, text, "bad.ini"), "--optimizer.divergence_factor=1",
                      "--study.output", str(tmp_path / "bad")])
    assert bad.returncode == 2 and bad.stderr.count("eomlab:") == 1 and "optimizer.divergence_factor" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_sharpness_can_be_switched_off(tmp_path):
    text = SMALL_STUDY.format(output=tmp_path / "out") + "\n[output]\nsharpness = off\n"
    proc = run_eomlab(["--config", write_config(tmp_path, text)], np=1)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert "sharpness" not in f["/observables/gd"] and "edge_of_stability" not in f.attrs


MEMORY_STUDY = """
[study]
name = memory
output = {output}
seed = 1
ranks_per_run = {ranks}

[data]
source = gaussian_mixture
n_samples = 32

[model]
layers = {layers}

[optimizer]
lr = 0.01
steps = 1

[flows]
kinds = gf
rtol = 1e-6

[output]
theta = none
"""


def peak_memory(tmp_path, layers, ranks):
    out = tmp_path / f"{layers}_{ranks}"
    config = write_config(tmp_path, MEMORY_STUDY.format(output=out, layers=layers, ranks=ranks), f"{ranks}.ini")
    proc = run_eomlab(["--config", config], np=ranks)
    assert proc.returncode == 0, proc.stderr
    assert "Peak memory per rank:" in proc.stdout
    (path,) = (out / "runs").glob("*.h5")
    with h5py.File(path) as f:
        return int(f.attrs["peak_rank_memory_bytes"]), int(f.attrs["n_params"])


def test_peak_memory_per_rank_is_recorded_and_counts_the_sliced_integrator(tmp_path):
    tiny, _ = peak_memory(tmp_path, "8,8,2", 1)
    big, p = peak_memory(tmp_path, "400,500,10", 1)
    halves, _ = peak_memory(tmp_path, "400,500,10", 2)
    stages = 29 * 8 * p  # DOP853's stage, dense-output and state vectors of one flow
    assert tiny < stages < big
    # With 2 ranks per run each rank holds half of every integrator vector.
    assert big - halves > 0.4 * stages


def git(*args, cwd=REPO):
    return subprocess.run(["git", "-c", "user.name=eomlab-test", "-c", "user.email=test@eomlab", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not (REPO / ".git").exists() or "EOMLAB_BINARY" in os.environ,
                    reason="needs the binary built from this git checkout")
def test_binary_records_the_commit_of_its_source_tree():
    """A rebuild after a commit must record that commit, not the one CMake was configured at."""
    expected = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        expected += "-dirty"
    version = subprocess.run([str(REPO / "build" / "src" / "eomlab"), "--version"], capture_output=True,
                             text=True, env=mpi_env()).stdout
    assert f"({expected}, " in version, version


def test_version_script_follows_commits_and_rewrites_only_on_change(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("1")
    git("init", "-q", cwd=src)
    git("add", "a.txt", cwd=src)
    git("commit", "-qm", "one", cwd=src)
    out = tmp_path / "version.hpp"

    def generate():
        subprocess.run(["cmake", f"-DSOURCE_DIR={src}", f"-DIN={REPO / 'cmake' / 'version.hpp.in'}", f"-DOUT={out}",
                        "-DVERSION=9.9.9", "-DCOMPILER=test", "-P", str(REPO / "cmake" / "git_version.cmake")],
                       check=True, capture_output=True)
        return out.read_text()

    assert f'git_sha = "{git("rev-parse", "HEAD", cwd=src)}"' in generate()
    stamp = out.stat().st_mtime_ns
    generate()
    assert out.stat().st_mtime_ns == stamp  # unchanged text: not rewritten, nothing recompiles
    (src / "a.txt").write_text("2")
    assert f'git_sha = "{git("rev-parse", "HEAD", cwd=src)}-dirty"' in generate()
    git("commit", "-qam", "two", cwd=src)
    text = generate()
    assert f'git_sha = "{git("rev-parse", "HEAD", cwd=src)}"' in text and 'version = "9.9.9"' in text


def test_a_long_run_on_two_ranks_finishes(tmp_path):
    """4001 records of 2 ranks per run: every rank writes every record's small series (the same values), so
    the ranks' HDF5 metadata caches stay alike. With group rank 0 writing them alone, a run this long ended
    with 'H5Awrite failed on evaluations: MPI_Bcast ... MPI_ERR_TRUNCATE' in finish (rank 1)."""
    config = write_config(tmp_path, """
[study]
output = {output}
seed = 1
ranks_per_run = 2
[data]
n_samples = 128
[model]
layers = 8,16,4
[optimizer]
lr = 0.05
steps = 20000
record_every = 5
[flows]
kinds = gf, eom1
""".format(output=tmp_path / "out"))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete" and f["step"].shape == (4001,)
        assert f["observables/gd"].attrs["evaluations"] == 20001
