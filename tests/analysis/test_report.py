"""analysis/report on studies produced by the real eomlab: the numbers in its CSV tables are checked
against values computed directly from the HDF5 files (issue 6)."""
import csv
import math
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import run_eomlab, write_config  # noqa: E402

REPORT = REPO / "analysis" / "report"

ORDERS = """
[study]
name = orders
output = {output}
seed = 3
[data]
n_samples = 64
[model]
layers = 6,10,3
[optimizer]
lr = 0.08, 0.04, 0.02, 0.01
horizon = 0.8
record_every = 2
[flows]
kinds = gf, eom1, eom2
rtol = 1e-12
atol = 1e-14
"""

INVARIANT = """
[study]
name = invariant
output = {output}
seed = 1
[data]
source = teacher
n_samples = 96
[model]
layers = 6,12,12,3
activation = gelu
normalize = layer
weight_decay = 0.05
[optimizer]
lr = 0.1
horizon = 2
record_every = 2
[flows]
kinds = gf, eom1, eom2
rtol = 1e-12
atol = 1e-14
"""


def table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def report(out_dir, report_dir):
    proc = subprocess.run([str(REPORT), str(out_dir), "--out", str(report_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return report_dir


@pytest.fixture(scope="module")
def orders_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orders")
    proc = run_eomlab(["--config", write_config(tmp, ORDERS.format(output=tmp / "out"))], np=2)
    assert proc.returncode == 0, proc.stderr
    return tmp / "out", report(tmp / "out", tmp / "report")


@pytest.fixture(scope="module")
def invariant_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("invariant")
    proc = run_eomlab(["--config", write_config(tmp, INVARIANT.format(output=tmp / "out"))], np=1)
    assert proc.returncode == 0, proc.stderr
    return tmp / "out", report(tmp / "out", tmp / "report")


def test_order_slopes_match_the_files_and_the_expected_orders(orders_study):
    out, rep = orders_study
    rows = {r["flow"]: r for r in table(rep / "orders.csv")}
    assert set(rows) == {"gf", "eom1", "eom2"}
    lrs, dist = [], {t: [] for t in rows}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            assert np.isclose(f["time"][-1], 0.8)
            lrs.append(f.attrs["lr"])
            for t in rows:
                dist[t].append(f[f"observables/{t}/distance_to_gd"][-1])
    for t, row in rows.items():
        direct = np.polyfit(np.log(lrs), np.log(dist[t]), 1)[0]
        assert float(row["slope"]) == pytest.approx(direct, rel=1e-5)
        assert int(row["expected"]) == {"gf": 1, "eom1": 2, "eom2": 3}[t]
        assert abs(direct - int(row["expected"])) < 0.25 and row["within_0.25"] == "yes"


def test_runs_table_matches_the_files(orders_study):
    out, rep = orders_study
    rows = table(rep / "runs.csv")
    assert len(rows) == 4
    for row in rows:
        with h5py.File(out / "runs" / f"{row['run_id']}.h5", "r") as f:
            assert row["status"] == f.attrs["status"]
            assert float(row["final_loss_gd"]) == pytest.approx(f["observables/gd/loss"][-1], rel=1e-5)
            assert float(row["final_distance_eom1"]) == pytest.approx(f["observables/eom1/distance_to_gd"][-1], rel=1e-5)
            assert float(row["max_lr_sharpness"]) == pytest.approx(f.attrs["max_lr_sharpness"], rel=1e-5)


def test_translation_rates_match_the_files_and_the_predictions(invariant_study):
    out, rep = invariant_study
    (row,) = table(rep / "translation.csv")
    lr, wd = float(row["lr"]), float(row["weight_decay"])
    with h5py.File(out / "runs" / f"{row['run_id']}.h5", "r") as f:
        t = f["time"][:]
        s = {k: f[f"observables/{k}/translation_components"][:, -1] for k in ["gd", "gf", "eom1", "eom2"]}
    measured = {k: math.log(v[-1] / v[0]) / t[-1] for k, v in s.items()}
    assert float(row["measured_gd"]) == pytest.approx(measured["gd"], rel=1e-5)
    # GD's measured rate is log(1 - ηλ)/η; each flow's follows its prediction (DESIGN.md §1.4).
    assert measured["gd"] == pytest.approx(math.log(1 - lr * wd) / lr, rel=1e-9)
    predictions = {"gf": -wd, "eom1": -wd - lr * wd ** 2 / 2, "eom2": -wd - lr * wd ** 2 / 2 - lr ** 2 * wd ** 3 / 3}
    for k, p in predictions.items():
        assert float(row[f"predicted_{k}"]) == pytest.approx(p, rel=1e-5)
        assert measured[k] == pytest.approx(p, rel=1e-8)
        assert float(row[f"gd_minus_{k}_prediction"]) == pytest.approx(measured["gd"] - p, rel=1e-4, abs=1e-15)
    # Each order is closer to the experiment than the one before.
    gaps = [abs(float(row[f"gd_minus_{k}_prediction"])) for k in ["gf", "eom1", "eom2"]]
    assert gaps[0] > 100 * gaps[1]
    assert gaps[1] > 10 * gaps[2]


def test_scale_invariant_rates_match_the_files(invariant_study):
    out, rep = invariant_study
    rows = table(rep / "scale.csv")
    assert [r["block"] for r in rows] == ["layer0.Wb", "layer1.Wb"]
    with h5py.File(out / "runs" / f"{rows[0]['run_id']}.h5", "r") as f:
        t = f["time"][:]
        norms = {k: f[f"observables/{k}/scale_invariant_norms"][:] for k in ["gd", "gf", "eom1", "eom2"]}
    for b, row in enumerate(rows):
        for k, v in norms.items():
            assert float(row[f"rate_{k}"]) == pytest.approx((v[-1, b] - v[0, b]) / t[-1], rel=1e-5)
        # The EoM tracks GD's norm better at each order.
        assert abs(float(row["gf_minus_gd"])) > abs(float(row["eom1_minus_gd"])) > abs(float(row["eom2_minus_gd"]))


def test_report_has_every_section_and_legible_plots(orders_study, invariant_study):
    for out, rep in [orders_study, invariant_study]:
        md = (rep / "report.md").read_text()
        for section in ["## Provenance", "## Configuration", "## Flags", "## Runs", "## Figures"]:
            assert section in md
        for image in ["distance_vs_time.png", "loss.png", "sharpness.png"]:
            assert f"]({image})" in md
            assert (rep / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Orders" in (orders_study[1] / "report.md").read_text()
    assert (orders_study[1] / "orders.png").exists()
    inv = (invariant_study[1] / "report.md").read_text()
    assert "## Invariant layers: translation components" in inv and "## Invariant layers: scale-invariant blocks" in inv
    assert (invariant_study[1] / "translation.png").exists()


def test_incomplete_and_diverged_runs_are_read_and_flagged(orders_study, tmp_path):
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # A run killed mid-way: status running, series of unequal lengths (the last record half written).
    path = copy / "runs" / "lr0.01_seed3_wd0.h5"
    with h5py.File(path, "a") as f:
        f.attrs["status"] = "running"
        f["step"].resize((10,))
        f["time"].resize((10,))
        f["observables/eom1/distance_to_gd"].resize((9,))
    rep = report(copy, tmp_path / "report")
    md = (rep / "report.md").read_text()
    assert "`lr0.01_seed3_wd0`: status **running** (9 records readable)" in md
    rows = {r["run_id"]: r for r in table(rep / "runs.csv")}
    assert rows["lr0.01_seed3_wd0"]["final_step"] == "16"  # record 9 of a record_every = 2 run


def test_digits_are_converted_to_the_data_format(tmp_path):
    pytest.importorskip("sklearn")
    proc = subprocess.run([str(REPO / "analysis" / "digits_to_hdf5.py"), str(tmp_path / "digits.h5"), "--samples", "200"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "digits.h5", "r") as f:
        assert f["X"].shape == (200, 64) and f["X"].dtype == np.float64 and 0 <= f["X"][:].min() <= f["X"][:].max() <= 1
        assert f["y"].dtype == np.int64 and set(f["y"][:]) == set(range(10))
    config = write_config(tmp_path, f"""
[study]
output = {tmp_path / 'out'}
[data]
source = hdf5:{tmp_path / 'digits.h5'}
[model]
layers = 64,16,10
[optimizer]
lr = 0.2
steps = 5
[flows]
kinds = gf, eom1
""")
    run = run_eomlab(["--config", config], np=2)
    assert run.returncode == 0, run.stderr


def test_report_on_a_directory_that_is_not_a_study(tmp_path):
    proc = subprocess.run([str(REPORT), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not an eomlab study output" in proc.stderr
