"""A method, a flow and an observable added from outside the library (tests/extensions: one file each and
one registration line in that program's main) run end to end under mpirun, into a real run file."""
import os
import pathlib
import subprocess

import h5py
import numpy as np
import pytest

from conftest import REPO, eomlab_binary, mpi_env, write_config

STUDY = """
[study]
name = toys
output = {output}
seed = 3
ranks_per_run = 2
[data]
source = gaussian_mixture
n_samples = 30
[model]
layers = 4,6,3
weight_decay = 0.01
[optimizer]
method = {method}
lr = {lr}
steps = 8
record_every = 2
[flows]
kinds = {flows}
[output]
observables = theta_sum
checkpoint_every = 3
"""


def toys_binary():
    path = os.environ.get("EOMLAB_TOYS_BINARY") or str(REPO / "build" / "tests" / "eomlab_toys")
    if not os.path.exists(path):
        pytest.fail(f"eomlab_toys not found at {path}; build first or set EOMLAB_TOYS_BINARY")
    return path


def run_toys(tmp_path, name, **keys):
    out = tmp_path / name
    config = write_config(tmp_path, STUDY.format(output=out, **keys), name + ".ini")
    proc = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", toys_binary(), "--config", str(config)],
                          env=mpi_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run_file,) = (out / "runs").glob("*.h5")
    return h5py.File(run_file, "r")


def test_toy_method_flow_and_observable_run_end_to_end(tmp_path):
    toy = run_toys(tmp_path, "toy", method="half_step_gd", lr="0.2", flows="half_speed_gf, eom0, eom1")
    gd = run_toys(tmp_path, "gd", method="gd", lr="0.1", flows="gf")
    with toy, gd:
        assert toy.attrs["status"] == "complete"
        assert toy.attrs["method"] == "half_step_gd"
        # The run id names a method other than gd (DESIGN.md §3.7); GD's ids are as they always were.
        assert (toy.attrs["run_id"], gd.attrs["run_id"]) == ("half_step_gd_lr0.2_seed3_wd0.01", "lr0.1_seed3_wd0.01")
        assert toy.attrs["trajectories"] == "half_step_gd,half_speed_gf,eom0,eom1"
        # The toy method at lr η is GD at lr η/2, bit for bit.
        assert np.array_equal(toy["trajectories/half_step_gd/theta"][()], gd["trajectories/gd/theta"][()])
        # The toy flow's field is the toy method's eom0 evaluated by other code: the same bits.
        assert np.array_equal(toy["trajectories/half_speed_gf/theta"][()], toy["trajectories/eom0/theta"][()])
        # ... and its trajectory at time t is gf's at t/2 (to the integrator's tolerance).
        assert np.allclose(toy["trajectories/half_speed_gf/theta"][()], gd["trajectories/gf/theta"][()], atol=1e-8)
        # The toy method's own eom1 is closer to it than its eom0.
        d0 = toy["observables/eom0/distance_to_half_step_gd"][-1]
        d1 = toy["observables/eom1/distance_to_discrete"][-1]
        assert d1 < d0 / 5
        # The toy observable, on every trajectory, against the stored θ.
        for traj in ["half_step_gd", "half_speed_gf", "eom0", "eom1"]:
            assert "theta_sum" in toy[f"observables/{traj}"].attrs["series"].split(",")
            theta = toy[f"trajectories/{traj}/theta"][()]
            assert np.allclose(toy[f"observables/{traj}/theta_sum"][()], theta.sum(axis=1), rtol=0, atol=1e-12)
    # The report reads the names from the files: the toy method and flow have their columns.
    proc = subprocess.run(["/usr/bin/python3", str(REPO / "analysis" / "report"), str(tmp_path / "toy"), "--out",
                           str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = (tmp_path / "report" / "runs.csv").read_text().splitlines()[0].split(",")
    assert {"final_loss_half_step_gd", "final_loss_half_speed_gf", "final_distance_half_speed_gf"} <= set(header)


def test_help_lists_the_registered_names_extensions_included():
    """--help names what is registered (it listed eomlab's own methods and flows as fixed text, no observables)."""
    proc = subprocess.run([toys_binary(), "--help"], env=mpi_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # the help wraps its lines
    for key, names in [("--optimizer.method", ["gd", "heavy_ball", "sgd", "adam", "half_step_gd"]),
                       ("--flows.kinds", ["gf", "eom3", "half_speed_gf"]),
                       ("--output.observables", ["theta_sum"])]:
        entry = text[text.index(key):].split(" --")[0]
        for name in names:
            assert name in entry.replace(",", " ").split(), (key, name, entry)
    # A hyperparameter's help names the registered methods that read it, with their defaults.
    entry = text[text.index("--optimizer.momentum"):].split(" --")[0]
    assert entry.endswith("momentum beta; read by heavy_ball (default 0.9), nesterov (default 0.9), "
                          "ema_momentum_gd (default 0.5)"), entry
    entry = text[text.index("--optimizer.batch_size"):].split(" --")[0]
    assert entry.endswith("; read by sgd (required)"), entry
    # output.observables offers only what it takes: the standard observables are recorded without it.
    entry = text[text.index("--output.observables"):].split(" --")[0]
    assert "loss" not in entry.replace(",", " ").split(), entry


def test_standard_observables_are_refused_by_output_observables_before_anything_is_written(tmp_path):
    """Naming a standard observable (recorded in every run) was refused only after the output directory was
    made, whose study.ini then refused the corrected rerun; --dry-run let it pass."""
    for binary, further, values in [(toys_binary(), "theta_sum", ["loss", "theta_sum, sharpness"]),
                                    (eomlab_binary(), "none registered in this program", ["grad_norm", "sharpness"])]:
        for value in values:
            config = write_config(tmp_path, STUDY.format(output=tmp_path / "x", method="gd", lr="0.1", flows="gf"))
            for extra in [[], ["--dry-run"]]:
                proc = subprocess.run([binary, "--config", str(config), f"--output.observables={value}", *extra],
                                      env=mpi_env(), capture_output=True, text=True, timeout=60)
                assert proc.returncode == 2, proc.stderr
                lines = proc.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("eomlab: output.observables: expected a further "
                                                               f"observable ({further}), got '"), proc.stderr
                assert "a standard observable" in lines[0], proc.stderr
                assert not (tmp_path / "x").exists()


def test_unknown_names_are_bad_input_naming_the_key(tmp_path):
    for key, value in [("optimizer.method", "nope"), ("flows.kinds", "gf, nope"), ("output.observables", "nope")]:
        config = write_config(tmp_path, STUDY.format(output=tmp_path / "x", method="gd", lr="0.1", flows="gf"))
        proc = subprocess.run([toys_binary(), "--config", str(config), f"--{key}={value}"], env=mpi_env(),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert key in proc.stderr and "'nope'" in proc.stderr, proc.stderr
        assert not (tmp_path / "x").exists()


def test_a_flow_the_method_does_not_provide_is_bad_input_before_anything_is_written(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "x", method="half_step_gd", lr="0.2",
                                                 flows="gf, eom2"))
    for extra in [[], ["--dry-run"]]:
        proc = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", toys_binary(), "--config", str(config), *extra],
                              env=mpi_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "flows.kinds: method half_step_gd has no eom2" in proc.stderr, proc.stderr
        assert not (tmp_path / "x").exists()


def test_a_study_of_many_registered_flows_has_them_all_in_its_catalog(tmp_path):
    """sweep.h5's /summary held at most 8 trajectories: a study of 9 (gd, five of eomlab's flows and three
    registered ones) computed every run, then failed writing its catalog with exit 1, and so did --catalog."""
    flows = ["gf", "eom0", "eom1", "eom2", "eom3", "half_speed_gf", "quarter_speed_gf", "double_speed_gf"]
    run = run_toys(tmp_path, "many", method="gd", lr="0.1", flows=", ".join(flows))
    with run:
        assert run.attrs["trajectories"] == ",".join(["gd"] + flows)
        final = {f: run[f"observables/{f}/distance_to_gd"][-1] for f in flows}
        loss = run["observables/gd/loss"][-1]
        # The toy flows at speeds 1/4, 1/2 and 2: farther from gd (itself near gf) the farther from speed 1.
        assert final["gf"] < final["half_speed_gf"] < final["quarter_speed_gf"]
    for catalog_only in [False, True]:
        if catalog_only:
            (tmp_path / "many" / "sweep.h5").unlink()
            proc = subprocess.run([toys_binary(), "--config", str(tmp_path / "many.ini"), "--catalog"], env=mpi_env(),
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
        with h5py.File(tmp_path / "many" / "sweep.h5", "r") as sweep:
            (row,) = sweep["summary"][()]
            names = sweep["summary"].dtype.names
            assert names == ("run_id", "lr", "seed", "weight_decay", "status", "final_step", "final_loss_gd",
                             *(f"final_distance_{f}" for f in flows))
            assert row["status"] == b"complete" and row["final_step"] == 8
            assert row["final_loss_gd"] == loss
            for f in flows:
                assert row[f"final_distance_{f}"] == final[f], f


def test_a_registered_method_reads_the_keys_its_registration_names(tmp_path):
    """Which method reads which [optimizer] key was a fixed table of eomlab's own methods: a method
    registered by a program could read none (`optimizer.momentum: expected a key of heavy_ball, nesterov
    only`). The toy ema_momentum_gd registers momentum with its own default (0.5)."""
    ema = run_toys(tmp_path, "ema", method="ema_momentum_gd\nmomentum = 0.75", lr="0.4", flows="gf")
    hb = run_toys(tmp_path, "hb", method="heavy_ball\nmomentum = 0.75", lr="0.1", flows="gf")
    default = run_toys(tmp_path, "default", method="ema_momentum_gd", lr="0.4", flows="gf")
    with ema, hb, default:
        assert ema.attrs["method"] == "ema_momentum_gd" and ema.attrs["momentum"] == 0.75
        assert default.attrs["momentum"] == 0.5
        # v ← βv + (1 − β)g, θ ← θ − ηv is heavy ball at lr (1 − β)η up to rounding.
        theta, reference = ema["trajectories/ema_momentum_gd/theta"][()], hb["trajectories/heavy_ball/theta"][()]
        assert np.allclose(theta, reference, rtol=1e-12, atol=1e-14)
        assert not np.allclose(theta, default["trajectories/ema_momentum_gd/theta"][()], rtol=1e-6)
    # A key is refused for a method that does not read it, naming the registered methods that do.
    for method, key, readers in [("gd", "momentum", "heavy_ball, nesterov, ema_momentum_gd"),
                                 ("ema_momentum_gd", "beta2", "rmsprop, adam"),
                                 ("half_step_gd", "momentum", "heavy_ball, nesterov, ema_momentum_gd")]:
        config = write_config(tmp_path, STUDY.format(output=tmp_path / "x", method=method, lr="0.1", flows="gf"))
        proc = subprocess.run([toys_binary(), "--config", str(config), f"--optimizer.{key}=0.5", "--dry-run"],
                              env=mpi_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (f"eomlab: optimizer.{key}: expected a key of {readers} only, "
                                       f"got optimizer.method '{method}'"), proc.stderr
        assert not (tmp_path / "x").exists()
