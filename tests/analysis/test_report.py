"""analysis/report on studies produced by the real eomlab: the numbers in its CSV tables are checked
against values computed directly from the HDF5 files (issue 6)."""
import csv
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import SMALL_STUDY, run_eomlab, write_config  # noqa: E402

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
        assert "## Rates" not in md and not (rep / "rates.csv").exists()  # files without rates (no `rates` attribute)
    assert "## Orders" in (orders_study[1] / "report.md").read_text()
    assert (orders_study[1] / "orders.png").exists()
    inv = (invariant_study[1] / "report.md").read_text()
    assert "## Invariant layers: translation components" in inv and "## Invariant layers: scale-invariant blocks" in inv
    assert (invariant_study[1] / "translation.png").exists()


def run_files(out):
    """{lr: path} of the run files in out/runs, from their attributes (not from the run-id format)."""
    files = {}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            files[float(f.attrs["lr"])] = path
    return files


def test_incomplete_and_diverged_runs_are_read_and_flagged(orders_study, tmp_path):
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # A run killed mid-way: status running, series of unequal lengths (the last record half written).
    path = run_files(copy)[0.01]
    with h5py.File(path, "a") as f:
        f.attrs["status"] = "running"
        f["step"].resize((10,))
        f["time"].resize((10,))
        f["observables/eom1/distance_to_gd"].resize((9,))
        run_id = f.attrs["run_id"]
    rep = report(copy, tmp_path / "report")
    md = (rep / "report.md").read_text()
    assert f"- {run_id.replace('_', chr(92) + '_')}: status **running** (9 records readable)" in md
    rows = {r["run_id"]: r for r in table(rep / "runs.csv")}
    assert rows[run_id]["final_step"] == "16"  # record 9 of a record_every = 2 run
    assert "4 of the study's 4 runs." in md
    # A study stopped before its last run: the report says how many have no run file yet.
    run_files(copy)[0.08].unlink()
    md = (report(copy, tmp_path / "report2") / "report.md").read_text()
    assert "3 of the study's 4 runs (1 without a run file yet)." in md
    # Found by an adversarial review: a run file cut short (unreadable) was counted as "without a run file
    # yet" and listed as "left by an earlier config or copied in".
    damaged = run_files(copy)[0.04]
    damaged.write_bytes(damaged.read_bytes()[:4096])
    md = (report(copy, tmp_path / "report3") / "report.md").read_text()
    assert "2 of the study's 4 runs (1 with a run file that cannot be read, 1 without a run file yet)" in md, md
    assert "## Stale run files\n\n1 cannot be read (damaged or cut short" in md and "left by an earlier" not in md, md



def test_a_run_stopped_at_its_first_record_is_left_out_of_the_fits_with_the_reason(orders_study, tmp_path):
    """A run stopped right after its t = 0 record was dropped from the order fits without a word (an
    adversarial review: a seed whose other runs had no second record vanished from orders.csv); it is
    listed under left_out like a run stopped later."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with h5py.File(run_files(copy)[0.02], "a") as f:
        f.attrs["status"] = "interrupted"
        for name in ["step", "time"] + [f"observables/{t}/{o}" for t in f["observables"] for o in f[f"observables/{t}"]]:
            f[name].resize((1,) + f[name].shape[1:])
    rep = report(copy, tmp_path / "report")
    rows = table(rep / "orders.csv")
    assert rows and all("lr 0.02: status interrupted (unfinished: its last record is at t = 0)" in r["left_out"]
                        for r in rows), rows
    assert "lr 0.02: status interrupted" in (rep / "report.md").read_text()
    # A complete run with no readable record (a damaged file): left out too, the others still fitted (a
    # review of the change: it crashed the report on time[-1], and one record cost the group its fits).
    with h5py.File(run_files(copy)[0.04], "a") as f:
        f["step"].resize((0,))
    rows = table(report(copy, tmp_path / "report2") / "orders.csv")
    assert all("lr 0.04: status complete, but 0 record(s) readable" in r["left_out"] and r["fitted_lrs"] == "0.08 0.01"
               for r in rows), rows


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
    # Found by a review: a study that has written no run yet was "not an eomlab study output", and one
    # with an empty runs/ said no run had diverged or crossed the stability limit.
    (tmp_path / "study.ini").write_text("[study]\nname = s\n")
    proc = subprocess.run([str(REPORT), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "has no runs/ directory yet: its study has written no run" in proc.stderr
    (tmp_path / "runs").mkdir()
    md = (report(tmp_path, tmp_path / "report") / "report.md").read_text()
    assert "No run file of the study to report yet." in md and "crossed" not in md


# Issue 11 item 6: a study rerun with --overwrite and another config leaves the old config's runs in runs/.
# The second config sweeps a diverging lr (0.8: the loss stops being finite) and one past the edge of
# stability (0.2: lr·λ_max ≈ 2.36, loss never above its start); 0.1, 0.05, 0.025 are in the stable regime.
STALE_FIRST = """
[study]
name = first
output = {output}
seed = 3
[data]
n_samples = 64
noise = 0.6
[model]
layers = 6,10,3
activation = softplus
loss = mse
[optimizer]
lr = 0.1, 0.05, 0.0125
horizon = 6.4
[flows]
kinds = gf, eom1
"""
STALE_SECOND = STALE_FIRST.replace("name = first", "name = second").replace("noise = 0.6", "noise = 0.5").replace(
    "lr = 0.1, 0.05, 0.0125", "lr = 0.8, 0.2, 0.1, 0.05, 0.025")
FITTED = [0.1, 0.05, 0.025]


def set_config(path, edit):
    with h5py.File(path, "a") as f:
        config = f.attrs["config"]
        assert edit(config) != config
        f.attrs["config"] = edit(config)


@pytest.fixture(scope="module")
def stale_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stale")
    out = tmp / "out"
    for text, extra in [(STALE_FIRST, []), (STALE_SECOND, ["--overwrite"])]:
        proc = run_eomlab(["--config", write_config(tmp, text.format(output=out)), *extra])
        assert proc.returncode == 0, proc.stderr
    files = run_files(out)  # the first study's 0.1 and 0.05 were replaced; its 0.0125 stayed
    with h5py.File(files[0.8], "r") as f:
        loss = f["observables/gd/loss"][:]
        assert f.attrs["status"] == "diverged" and not loss[-1] <= 1e6 * loss[0]  # optimizer.divergence_factor
    with h5py.File(files[0.2], "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["max_lr_sharpness"] > 2
        assert f["observables/gd/loss"][:].max() <= f["observables/gd/loss"][0]  # no divergence criterion fires
    for lr in FITTED:
        with h5py.File(files[lr], "r") as f:
            assert f.attrs["status"] == "complete" and f.attrs["max_lr_sharpness"] < 2
    # A member whose stored config differs only in what does not change results: spacing of lists and
    # numbers, the name, the directory, the checkpoint cadence. It stays a run of the study.
    set_config(files[0.1], lambda c: c.replace(", ", ",").replace("horizon = 6.4", "horizon = 6.40").replace(
        "name = second", "name = renamed").replace(f"output = {out}", "output = /elsewhere").replace(
        "checkpoint_every = 0", "checkpoint_every = 7"))
    # Copies that are not runs of the study: another data seed; a grid point the study lacks; an older
    # duplicate of a grid point.
    shutil.copy(files[0.025], out / "runs" / "other_data_seed.h5")
    set_config(out / "runs" / "other_data_seed.h5", lambda c: re.sub(r"(\[data\][^\[]*\nseed = )0\n", r"\g<1>5\n", c))
    shutil.copy(files[0.05], out / "runs" / "off_grid.h5")
    with h5py.File(out / "runs" / "off_grid.h5", "a") as f:
        f.attrs["lr"] = 0.07
    shutil.copy(files[0.025], out / "runs" / "older_copy.h5")
    os.utime(out / "runs" / "older_copy.h5", ns=(0, files[0.025].stat().st_mtime_ns - 10 ** 10))
    return out, files, report(out, tmp / "report")


def test_stale_run_files_are_listed_with_the_reason_and_left_out(stale_study):
    out, files, rep = stale_study
    runs = table(rep / "runs.csv")
    assert sorted(float(r["lr"]) for r in runs) == sorted([0.8, 0.2] + FITTED)
    assert {r["run_id"] + ".h5" for r in runs} == {files[lr].name for lr in [0.8, 0.2] + FITTED}
    stale = {r["file"]: r["reason"] for r in table(rep / "stale.csv")}
    assert set(stale) == {files[0.0125].name, "other_data_seed.h5", "off_grid.h5", "older_copy.h5"}
    # the grid's lists are not compared as config (a study's grid may grow on --resume): its point is checked
    assert stale[files[0.0125].name] == "written with another config: data.noise = 0.6 (study.ini: 0.5)"
    assert "data.seed = 5 (study.ini: 0)" in stale["other_data_seed.h5"] and "optimizer" not in stale["other_data_seed.h5"]
    assert "0.07" in stale["off_grid.h5"] and "not a point of the study's grid" in stale["off_grid.h5"]
    assert files[0.025].name in stale["older_copy.h5"]
    md = (rep / "report.md").read_text()
    assert "## Stale run files" in md and "older\\_copy.h5" in md and "4 file(s) in runs/ are not runs" in md


def test_order_fits_leave_out_diverged_runs_and_runs_past_the_edge_of_stability(stale_study):
    out, files, rep = stale_study
    rows = {r["flow"]: r for r in table(rep / "orders.csv")}
    assert set(rows) == {"gf", "eom1"}
    for flow, row in rows.items():
        distances = []
        for lr in FITTED:
            with h5py.File(files[lr], "r") as f:
                assert np.isclose(f["time"][-1], 6.4)
                distances.append(f[f"observables/{flow}/distance_to_gd"][-1])
        direct = np.polyfit(np.log(FITTED), np.log(distances), 1)[0]
        assert float(row["slope"]) == pytest.approx(direct, rel=1e-5)
        assert float(row["time"]) == pytest.approx(6.4) and int(row["lrs"]) == 3
        assert sorted(map(float, row["fitted_lrs"].split())) == sorted(FITTED)
        assert "lr 0.8: status diverged" in row["left_out"] and "lr 0.2: past the edge of stability" in row["left_out"]
    md = (rep / "report.md").read_text()
    orders = md[md.index("## Orders"):md.index("## Figures")]
    for lr, why in [(0.8, "status diverged"), (0.2, "past the edge of stability")]:
        with h5py.File(files[lr], "r") as f:
            run_id = f.attrs["run_id"].replace("_", "\\_")
        assert f"- {run_id} (seed 3, weight decay 0.0, lr {lr!r}): {why}" in orders
        if lr == 0.8:
            assert f"The plots leave out the diverged runs: {run_id}" in orders


# Issue 11 item 16: hostile text in study.ini and in run attributes, string attributes stored every way
# h5py meets them (variable-length UTF-8 with invalid bytes, fixed-length bytes, numpy scalars).
HOSTILE_NAME = b"100% <b>x</b> | ```t``` \xff\xfe"


HOSTILE_RUN_ID = b'=HYPERLINK("x")|\n<script>'


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    out = tmp / "out"
    config = write_config(tmp, SMALL_STUDY.format(output=out))
    proc = run_eomlab(["--config", config, "--model.weight_decay=0.05"])
    assert proc.returncode == 0, proc.stderr
    ini = out / "study.ini"
    ini.write_bytes(ini.read_bytes().replace(b"name = small", b"name = " + HOSTILE_NAME + b"\nsecond line"))
    (path,) = (out / "runs").glob("*.h5")
    with h5py.File(path, "a") as f:
        utf8 = h5py.string_dtype("utf-8")
        f.attrs.create("study", np.array(HOSTILE_NAME + b"\nline", dtype=utf8))
        f.attrs.create("git_sha", np.array(b"ab\xffcd", dtype=utf8))
        f.attrs["run_id"] = np.bytes_(HOSTILE_RUN_ID)
        f.attrs["status"] = np.array([b"complete"])  # a one-element array of fixed-length bytes
        f.attrs["lr"] = "0.1"  # a number stored as text
        f.attrs["host"] = "@host -2+3"
        f.attrs["seed"] = np.int32(f.attrs["seed"])
        f.attrs["edge_of_stability"] = np.bytes_(b"no")
        loss = f["observables/gd/loss"][-1]
    path = path.rename(path.with_name(HOSTILE_RUN_ID.decode() + ".h5"))  # a file not named after its run is stale
    return path, loss, report(out, tmp / "report")


def outside_code(md):
    """report.md without its fenced configuration block (which shows study.ini literally)."""
    start = md.index("````ini\n")
    return md[:start] + md[md.index("\n````\n", start) + 6:]


def test_hostile_text_is_escaped_in_markdown(hostile_study):
    _, _, rep = hostile_study
    md = (rep / "report.md").read_bytes().decode("utf-8")  # valid UTF-8: undecodable bytes became U+FFFD
    assert md.splitlines()[0] == "# eomlab report: study '100% &lt;b&gt;x&lt;/b&gt; \\| \\`\\`\\`t\\`\\`\\` \ufffd\ufffd'"
    assert "````ini\n" in md  # a fence longer than the ``` inside study.ini
    text = outside_code(md)
    assert "<" not in text and "```" not in text
    runs, rates = [line for line in text.splitlines() if "HYPERLINK" in line]  # runs and translation tables
    assert runs.startswith("| =HYPERLINK(\"x\")\\|\\\\n&lt;script&gt; | 0.1 | 1 | 0.05 | complete |")
    assert rates.startswith("| =HYPERLINK(\"x\")\\|\\\\n&lt;script&gt; | 0.1 | 0.05 | -")
    assert "- git_sha: ab\ufffdcd" in text and "- host: @host -2+3" in text


def test_hostile_text_cannot_run_as_a_spreadsheet_formula(hostile_study):
    path, loss, rep = hostile_study
    (row,) = table(rep / "runs.csv")
    assert row["run_id"] == "'=HYPERLINK(\"x\")|\n<script>"
    assert row["status"] == "complete" and row["seed"] == "1"
    assert float(row["final_loss_gd"]) == pytest.approx(loss, rel=1e-5)
    (rates,) = table(rep / "translation.csv")
    assert rates["run_id"].startswith("'=")
    with h5py.File(path, "r") as f:
        s, t = f["observables/gd/translation_components"][:, -1], f["time"][:]
    # Negative numbers stay numbers: no quote in front of -0.05...
    assert rates["measured_gd"].startswith("-")
    assert float(rates["measured_gd"]) == pytest.approx(math.log(s[-1] / s[0]) / t[-1], rel=1e-5)


def test_a_study_begun_by_an_older_eomlab_keeps_the_runs_of_this_one(tmp_path):
    """study.ini written before optimizer.divergence_factor existed (an older eomlab; --resume keeps it)
    and a run file written now, with the key at its default: the run is one of the study, not stale."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Study
    out = tmp_path / "out"
    proc = run_eomlab(["--config", write_config(tmp_path, SMALL_STUDY.format(output=out))])
    assert proc.returncode == 0, proc.stderr
    ini = out / "study.ini"
    old = "".join(line for line in ini.read_text().splitlines(True) if not line.startswith("divergence_factor"))
    assert old != ini.read_text()
    ini.write_text(old)
    study = Study(out)
    assert study.stale == [] and len(study.runs) == len(list((out / "runs").glob("*.h5")))
    # Found by a review: the keys added later than that one (a study begun before optimizer.method or
    # output.rates existed, resumed now) made the new runs stale.
    later = ("divergence_factor", "method", "max_steps", "start_correction", "sharpness", "rates")
    old = "".join(line for line in ini.read_text().splitlines(True) if not line.startswith(later))
    assert len(old.splitlines()) == len(ini.read_text().splitlines()) - 5
    ini.write_text(old)
    study = Study(out)
    assert study.stale == [] and len(study.runs) == len(list((out / "runs").glob("*.h5")))


@pytest.mark.parametrize("damage", ["empty", "cut short", "garbage"])
def test_a_damaged_study_ini_is_replaced_by_a_run_files_config_as_eomlab_does(tmp_path, damage):
    """Found by an adversarial review: an empty or cut-short study.ini (an older eomlab, a full disk) was
    read as the study's config: its runs were listed as stale ("data.n_samples = 64 (study.ini: (unset))"),
    "0 of the study's 1 run", and an empty Configuration block; eomlab's --resume and --catalog use the
    config recorded in a run file instead."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Study
    out = tmp_path / "out"
    proc = run_eomlab(["--config", write_config(tmp_path, SMALL_STUDY.format(output=out))])
    assert proc.returncode == 0, proc.stderr
    ini = out / "study.ini"
    whole = ini.read_bytes()
    ini.write_bytes({"empty": b"", "cut short": whole[:200], "garbage": b"\x00\xff[study\n" * 9}[damage])
    study = Study(out)
    files = sorted((out / "runs").glob("*.h5"))
    assert study.stale == [] and len(study.runs) == len(files) == 1
    assert study.config_text == whole.decode()  # the run file records the config study.ini held
    named = "empty" if damage == "empty" else "cut short"
    assert study.config_note == f"study.ini is {named}; the config recorded in runs/{files[0].name} is used"
    md = (report(out, tmp_path / "report") / "report.md").read_text()
    assert f"Study.ini is {named}; the config recorded in runs/{files[0].name} is used." in md
    assert "1 of the study's 1 run." in md and "stale" not in md.lower()
    assert ini.read_bytes() == {"empty": b"", "cut short": whole[:200], "garbage": b"\x00\xff[study\n" * 9}[damage]


def test_seeds_beyond_a_floats_precision_are_distinct_grid_points():
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import config_differences, grid
    seeds = {"study.seed": "9007199254740993,9007199254740992", "optimizer.lr": "0.1", "model.weight_decay": "0"}
    assert grid(seeds) == {(9007199254740993, 0.1, 0.0), (9007199254740992, 0.1, 0.0)}
    assert config_differences({"data.seed": "9007199254740993"}, {"data.seed": "9007199254740992"})
    assert not config_differences({"optimizer.horizon": "60", "optimizer.lr": "1"},
                                  {"optimizer.horizon": "60.0", "optimizer.lr": "1.0"})


def test_keys_an_older_eomlab_recorded_and_did_not_read_are_not_differences():
    """Up to 0628664 an architecture's config also recorded model.layers, activation and normalize at their
    defaults, and up to aaa2e9b an hdf5 source's data.n_features and n_classes when given: run files of one
    study written before and after are of one config."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import config_differences
    newer = {"model.architecture": "dense(4)", "data.source": "hdf5:d.h5", "optimizer.lr": "0.1"}
    older = {**newer, "model.layers": "16,32,32,4", "model.activation": "tanh", "model.normalize": "none",
             "data.n_features": "8", "data.n_classes": "4"}
    assert not config_differences(older, newer)
    assert config_differences({**older, "model.architecture": "dense(3)"}, newer)
    mlp = {"model.architecture": "", "model.layers": "8,4", "data.source": "gaussian_mixture"}
    assert config_differences(mlp, {**mlp, "model.layers": "8,3"})
    assert config_differences(mlp, {**mlp, "model.activation": "relu"})


# Names the binary's own method and flows never have (and files of an older eomlab, without the
# attributes): copies of real run files edited with h5py. tests/integration/test_extensions.py reports on
# the files of a registered toy method and flow.

def contract_attributes(f, discrete, flows, rates="off"):
    f.attrs.update(method=discrete, discrete_trajectory=discrete, flows=",".join(flows),
                   trajectories=",".join([discrete, *flows]), rates=rates)
    for t in [discrete, *flows]:
        group = f[f"observables/{t}"]
        group.attrs["series"] = ",".join(k for k in group if isinstance(group[k], h5py.Dataset))


def rename(f, old, new):
    for where in ["observables", "trajectories"]:
        if f"{where}/{old}" in f:
            f.move(f"{where}/{old}", f"{where}/{new}")


def test_unusual_trajectory_and_flow_names_are_read_from_the_attributes(orders_study, tmp_path):
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for path in run_files(copy).values():
        with h5py.File(path, "a") as f:
            rename(f, "gd", "walker")
            rename(f, "eom1", "toyflow")
            for t in ["gf", "toyflow", "eom2"]:  # only the method-independent name stays
                del f[f"observables/{t}/distance_to_gd"]
            contract_attributes(f, "walker", ["eom2", "toyflow", "gf"])
    rep = report(copy, tmp_path / "report")
    runs = table(rep / "runs.csv")
    assert list(runs[0])[6:] == ["final_loss_walker", "final_loss_eom2", "final_loss_toyflow", "final_loss_gf",
                                 "final_distance_eom2", "final_distance_toyflow", "final_distance_gf", "max_lr_sharpness"]
    for row in runs:
        with h5py.File(copy / "runs" / f"{row['run_id']}.h5", "r") as f:
            assert float(row["final_loss_walker"]) == pytest.approx(f["observables/walker/loss"][-1], rel=1e-5)
            assert float(row["final_distance_toyflow"]) == pytest.approx(
                f["observables/toyflow/distance_to_discrete"][-1], rel=1e-5)
    original = {r["flow"]: r for r in table(orders_study[1] / "orders.csv")}
    rows = {r["flow"]: r for r in table(rep / "orders.csv")}
    assert list(rows) == ["eom2", "gf"]  # toyflow has no order: not fitted
    for flow, row in rows.items():
        assert row["slope"] == original[flow]["slope"]
    # eomP is the method's own model whatever its name; gf is plain gradient flow, GD's eom0 only (issue 14).
    assert rows["eom2"]["expected"] == original["eom2"]["expected"] == "3"
    assert (rows["gf"]["expected"], rows["gf"]["within_0.25"], original["gf"]["expected"]) == ("", "n/a", "1")
    md = (rep / "report.md").read_text()
    assert "not fitted, only shown in the other tables and plots: toyflow" in md
    assert "Slope of the distance to walker" in md and "### Distance to walker against time" in md


def test_files_without_the_attributes_list_their_flows_by_order_then_name(orders_study, tmp_path):
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Run, flow_order
    path = tmp_path / "run.h5"
    shutil.copy(next(iter(run_files(orders_study[0]).values())), path)
    with h5py.File(path, "a") as f:  # as an eomlab before the names were written
        rename(f, "eom1", "toyflow")
        for key in ["method", "discrete_trajectory", "flows", "trajectories", "rates"]:
            del f.attrs[key]
    run = Run(path)
    assert (run.discrete, run.flows) == ("gd", ["gf", "eom2", "toyflow"])
    assert [flow_order(t) for t in ["gf", "eom0", "eom1", "eom12", "toyflow", "eom", "eom1x"]] == [0, 0, 1, 12, None, None, None]


RATES = """
[study]
name = rates
output = {output}
seed = 2
[data]
n_samples = 64
[model]
layers = 5,8,3
normalize = layer
weight_decay = 0.05
[optimizer]
lr = 0.1
steps = 12
record_every = 1
[flows]
kinds = gf, eom1
[output]
rates = on
"""


def blockwise(fn, layout, *arrays):
    """[R, B]: fn of each block's slice [R, size] of the arrays [R, P], blocks in layout order."""
    return np.stack([fn(*(a[:, b["offset"]:b["offset"] + b["size"]] for a in arrays)) for b in layout], axis=1)


def read_rates(path):
    """The rate datasets of DESIGN.md §3.8 that the binary wrote (output.rates = on, record_every = 1), each
    first checked against the stored θ trajectory: on GD, (θ_{k+1} − θ_k)/η = −g_k, so the measured rates,
    block_grad_norms and gf's predictions follow from consecutive records (the last record's next step is
    not stored: it is left out of these checks)."""
    with h5py.File(path, "r") as f:
        assert f.attrs["rates"] == "on" and f.attrs["flows"] == "gf,eom1"
        lr, wd = float(f.attrs["lr"]), float(f.attrs["weight_decay"])
        theta, layout = f["trajectories/gd/theta"][:], f["model/layout"][:]
        written = {name: f[f"observables/gd/{name}"][:] for name in
                   ["measured_block_rates", "block_grad_norms", "predicted_block_rates/gf", "predicted_block_rates/eom1",
                    "measured_translation_rates", "predicted_translation_rates/gf", "predicted_translation_rates/eom1"]}
        norms = blockwise(lambda a: np.sum(a * a, axis=1), layout, theta)
        step = (theta[1:] - theta[:-1]) / lr
        close = lambda got, want: np.testing.assert_allclose(got[:-1], want, rtol=1e-9, atol=1e-12)  # noqa: E731
        close(written["measured_block_rates"], (norms[1:] - norms[:-1]) / lr)
        close(written["block_grad_norms"], blockwise(lambda g: np.sum(g * g, axis=1), layout, step))
        close(written["predicted_block_rates/gf"], blockwise(lambda a, g: 2 * np.sum(a * g, axis=1), layout, theta[:-1], step))
        components = lambda a: np.stack([a[:, c["offset"] + c["stride"] * np.arange(c["count"])].sum(axis=1)  # noqa: E731
                                         for c in f["model/translation_components"][:]], axis=1)
        stored = f["observables/gd/translation_components"][:]
        close(written["measured_translation_rates"], (stored[1:] - stored[:-1]) / lr)
        close(written["predicted_translation_rates/gf"], components(step))
        # eom1 along a translation direction v (Hv = λv): ⟨v, F⟩ = −(λ + ηλ²/2)⟨v, θ⟩.
        np.testing.assert_allclose(written["predicted_translation_rates/eom1"], -(wd + lr * wd ** 2 / 2) * stored,
                                   rtol=1e-9, atol=1e-12)
        return written, [n.decode() for n in layout["name"]], f["step"][:], f["time"][:], stored, lr, wd


@pytest.fixture(scope="module")
def rates_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rates")
    proc = run_eomlab(["--config", write_config(tmp, RATES.format(output=tmp / "out"))])
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "out" / "runs").glob("*.h5")
    return read_rates(path), report(tmp / "out", tmp / "report")


def relative(predicted, measured):
    return np.linalg.norm(predicted - measured) / np.linalg.norm(measured)


def test_rate_table_matches_the_rates_in_the_file(rates_study):
    (written, blocks, step, time, _, lr, _), rep = rates_study
    rows = table(rep / "rates.csv")
    assert len(step) == 13 and [r["block"] for r in rows] == [b for b in blocks for _ in range(4)]
    assert [r["record"] for r in rows[:4]] == ["0", "6", "12", "all"]
    measured = written["measured_block_rates"]
    for row in rows:
        b = blocks.index(row["block"])
        which = slice(None) if row["record"] == "all" else slice(int(row["record"]), int(row["record"]) + 1)
        if row["record"] != "all":
            k = int(row["record"])
            assert int(row["step"]) == step[k] and float(row["time"]) == pytest.approx(time[k])
        m = measured[which, b]
        assert float(row["measured"]) == pytest.approx(np.mean(m), rel=1e-5)
        assert float(row["lr_grad_norm_sq"]) == pytest.approx(lr * np.mean(written["block_grad_norms"][which, b]), rel=1e-5)
        for flow in ["gf", "eom1"]:
            p = written[f"predicted_block_rates/{flow}"][which, b]
            assert float(row[f"predicted_{flow}"]) == pytest.approx(np.mean(p), rel=1e-5)
            assert float(row[f"rel_error_{flow}"]) == pytest.approx(relative(p, m), rel=1e-5)
        # On GD the measured rate exceeds gf's prediction by exactly η‖g_A‖² (to the CSV's 6 digits of each).
        measured_row, gf_row = float(row["measured"]), float(row["predicted_gf"])
        assert measured_row - gf_row == pytest.approx(float(row["lr_grad_norm_sq"]), rel=1e-4,
                                                      abs=1e-5 * (abs(measured_row) + abs(gf_row)))
    md = (rep / "report.md").read_text()
    assert "## Rates of ‖θ_A‖² at the iterates" in md and "| layer0.W | all |" in md


def test_translation_table_has_the_weight_class_sums_and_their_rates_at_the_iterates(rates_study):
    (written, _, _, time, stored, lr, wd), rep = rates_study
    (row,) = table(rep / "translation.csv")
    s = stored[:, :-1]  # the weight class-sums at every record
    norm = np.linalg.norm(s, axis=1)
    direct = math.log(norm[-1] / norm[0]) / time[-1]
    assert direct == pytest.approx(math.log(1 - lr * wd) / lr, rel=1e-9)  # every s_j decays alike
    assert float(row["weight_sum_measured_gd"]) == pytest.approx(direct, rel=1e-5)
    assert float(row["weight_sum_gd_minus_eom1_prediction"]) == pytest.approx(direct + wd + lr * wd ** 2 / 2, rel=1e-4)
    # measured: the rate of the exponential through ‖s_k‖² and ‖s_{k+1}‖², which GD's geometric decay makes
    # exact; 2⟨s, Δs⟩/η was gf's field by construction (a review: gf read as exact, eom1 as 5e-4 off).
    after = s + lr * written["measured_translation_rates"][:, :-1]
    now = np.sum(s * s, axis=1)
    measured = now * np.log(np.sum(after * after, axis=1) / now) / lr
    assert measured == pytest.approx(2 * now * math.log(1 - lr * wd) / lr, rel=1e-8)
    assert float(row["weight_sum_sq_rate_measured"]) == pytest.approx(np.mean(measured), rel=1e-5)
    for flow in ["gf", "eom1"]:
        predicted = 2 * np.sum(s * written[f"predicted_translation_rates/{flow}"][:, :-1], axis=1)
        assert float(row[f"weight_sum_sq_rate_predicted_{flow}"]) == pytest.approx(np.mean(predicted), rel=1e-5)
        assert float(row[f"weight_sum_sq_rate_rel_error_{flow}"]) == pytest.approx(relative(predicted, measured), rel=1e-5)
    # GD's exact rate is 2 log(1 − ηλ)/η ‖s‖²; gf's field gives −2λ‖s‖², eom1's −(2λ + ηλ²)‖s‖².
    exact = math.log(1 - lr * wd) / lr
    assert float(row["weight_sum_sq_rate_rel_error_gf"]) == pytest.approx(abs(-wd - exact) / abs(exact), rel=1e-5)
    assert float(row["weight_sum_sq_rate_rel_error_eom1"]) == pytest.approx(abs(-wd - lr * wd ** 2 / 2 - exact) / abs(exact), rel=1e-4)
    assert float(row["weight_sum_sq_rate_rel_error_eom1"]) < float(row["weight_sum_sq_rate_rel_error_gf"]) / 10


WEIGHTNORM_SGD = """
[study]
name = weightnorm_sgd
output = {output}
seed = 2
[data]
n_samples = 64
[model]
architecture = dense(8), tanh, dense(3, weightnorm=on)
weight_decay = 0.05
[optimizer]
method = sgd
batch_size = 16
lr = 0.1
steps = 40
record_every = 8
[flows]
kinds = gf, eom1
rtol = 1e-12
atol = 1e-14
"""


def test_translation_table_of_sgd_with_a_weight_normalized_output_layer(tmp_path):
    """A review found two gaps: a weight-normalized output layer listed its W class-sums as translation
    components (its rows are divided by their norms: no symmetry), and the report gave sgd no predictions,
    though each of its steps scales the bias class-sum by 1 − ηλ exactly as GD's does."""
    proc = run_eomlab(["--config", write_config(tmp_path, WEIGHTNORM_SGD.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "out" / "runs").glob("*.h5")
    with h5py.File(path, "r") as f:
        assert [c["name"].decode() for c in f["model/translation_components"][:]] == ["layer1.b"]
        s, time = f["observables/sgd/translation_components"][:, 0], f["time"][:]
    lr, wd = 0.1, 0.05
    exact = math.log(1 - lr * wd) / lr
    assert math.log(s[-1] / s[0]) / time[-1] == pytest.approx(exact, rel=1e-9)  # the file: (1 − ηλ) per step
    (row,) = table(report(tmp_path / "out", tmp_path / "report") / "translation.csv")
    assert float(row["measured_sgd"]) == pytest.approx(exact, rel=1e-5)
    assert float(row["predicted_sgd"]) == pytest.approx(exact, rel=1e-5)
    assert float(row["predicted_gf"]) == pytest.approx(-wd, rel=1e-5)
    assert float(row["predicted_eom1"]) == pytest.approx(-wd - lr * wd ** 2 / 2, rel=1e-5)
    assert float(row["measured_eom1"]) == pytest.approx(-wd - lr * wd ** 2 / 2, rel=1e-6)
    assert abs(float(row["sgd_minus_eom1_prediction"])) < abs(float(row["sgd_minus_gf_prediction"])) / 20
    weight_cells = [v for k, v in row.items() if k.startswith("weight_sum")]
    assert weight_cells and all(v == "nan" for v in weight_cells)


ADAM = """
[study]
name = adam
output = {output}
[data]
n_samples = 64
[model]
layers = 5,16,3
[optimizer]
method = adam
beta1 = 0.8
beta2 = 0.9
eps = 0.01
lr = 0.4, 0.01
steps = 20
record_every = 5
[flows]
kinds = eom1
# lr 0.4's eom1 is stiff past the edge and fails at its step limit either way; at the default 100000
# it took half a minute to get there.
max_steps = 2000
"""


def test_adam_runs_are_judged_by_their_preconditioned_sharpness(tmp_path):
    """runs.csv carries lr·λ_max(P⁻¹H); a run past Adam's limit 2(1+β1)/(1−β1) = 18 is flagged with it and
    left out of the fits; sharpness.png is drawn."""
    proc = run_eomlab(["--config", write_config(tmp_path, ADAM.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rep = report(tmp_path / "out", tmp_path / "report")
    rows = {row["run_id"]: row for row in table(rep / "runs.csv")}
    past = []
    for run_id, row in rows.items():
        with h5py.File(tmp_path / "out" / "runs" / f"{run_id}.h5", "r") as f:
            value = f.attrs["max_lr_preconditioned_sharpness"]
            assert value == pytest.approx(f.attrs["lr"] * f["observables/adam/preconditioned_sharpness"][()].max())
            assert float(row["max_lr_preconditioned_sharpness"]) == pytest.approx(value, rel=1e-5)
            assert f.attrs["stable_lr_sharpness"] == pytest.approx(18)
            if value > 18:
                past.append(run_id)
                assert f.attrs["edge_of_stability"].startswith("lr*preconditioned_sharpness > 18 from step")
    assert past == ["adam_lr0.4_seed0_wd0"], rows  # lr 0.01 stays below the limit
    md = (rep / "report.md").read_text()
    assert "adam\\_lr0.4\\_seed0\\_wd0: past the edge of stability: lr\\*preconditioned\\_sharpness &gt; 18 from step" in md
    assert "past the edge of stability (max lr·λ\\_max(P⁻¹H) = " in md  # the reason it is left out of the fit
    assert (rep / "sharpness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


MIXED = """
[study]
name = mixed
output = {output}
seed = 2
[data]
n_samples = 64
[model]
layers = 5,8,3
[optimizer]
method = {method}
lr = 0.04, 0.02
steps = 8
record_every = 2
[flows]
kinds = gf, eom1
"""


def test_runs_of_two_methods_in_one_folder_are_fitted_apart(tmp_path):
    """A folder without study.ini holding sgd and heavy-ball runs of the same (seed, lr, weight decay): no run
    is taken for a duplicate of the other method's, each method gets its own fit and figures, and gf is
    expected at slope 1 for sgd (its eom0, −ḡ) but models nothing for heavy ball."""
    folder = tmp_path / "folder" / "runs"
    folder.mkdir(parents=True)
    for method in ["sgd\nbatch_size = 32", "heavy_ball"]:
        out = tmp_path / method[:3]
        proc = run_eomlab(["--config", write_config(tmp_path, MIXED.format(output=out, method=method), f"{method[:3]}.ini")])
        assert proc.returncode == 0, proc.stderr
        for run in (out / "runs").glob("*.h5"):
            shutil.copy(run, folder / run.name)
    rep = report(tmp_path / "folder", tmp_path / "report")
    assert len(table(rep / "runs.csv")) == 4
    assert "same grid point" not in (rep / "report.md").read_text()
    rows = {(row["method"], row["flow"]): row for row in table(rep / "orders.csv")}
    assert sorted(rows) == [("heavy_ball", "eom1"), ("heavy_ball", "gf"), ("sgd", "eom1"), ("sgd", "gf")]
    assert all(row["lrs"] == "2" for row in rows.values())
    assert rows[("sgd", "gf")]["expected"] == "1" and rows[("sgd", "gf")]["within_0.25"] != "n/a"
    assert rows[("heavy_ball", "gf")]["expected"] == "" and rows[("heavy_ball", "gf")]["within_0.25"] == "n/a"
    for method in ["sgd", "heavy_ball"]:
        assert (rep / f"orders_{method}_seed2_wd0.png").exists()


def test_figure_names_tell_weight_decays_apart():
    """Weight decays that %g would merge (0.0123457) get their full spelling in file names and labels."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.report import number_text
    assert [number_text(x) for x in (0.0, 0.01, 1e-5)] == ["0", "0.01", "1e-05"]
    assert number_text(0.0123456789012341) == "0.0123456789012341"
    assert number_text(0.0123456789012341) != number_text(0.0123456789012342)


# Weight normalization makes each hidden neuron's weight row a scale-invariant block: 24 here.
MANY_BLOCKS = INVARIANT.replace("normalize = layer", "normalize = weight").replace("horizon = 2", "horizon = 0.4")


@pytest.fixture(scope="module")
def many_blocks_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("many_blocks")
    proc = run_eomlab(["--config", write_config(tmp, MANY_BLOCKS.format(output=tmp / "out"))], np=1)
    assert proc.returncode == 0, proc.stderr
    # The module runs as `python3 -m eomlab_analysis.report` too (it did nothing, exit 0).
    env = dict(os.environ, PYTHONPATH=str(REPO / "analysis"))
    proc = subprocess.run([sys.executable, "-m", "eomlab_analysis.report", str(tmp / "out"), "--out", str(tmp / "report")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "report: " in proc.stdout, proc.stdout + proc.stderr
    return tmp / "out", tmp / "report"


def test_scale_csv_holds_every_block_and_the_report_says_which_it_shows(many_blocks_study):
    out, rep = many_blocks_study
    rows = table(rep / "scale.csv")
    with h5py.File(out / "runs" / f"{rows[0]['run_id']}.h5", "r") as f:
        blocks = [n.decode() for n in f["model/scale_invariant_blocks"]["name"]]
        t, norms = f["time"][:], f["observables/gd/scale_invariant_norms"][:]
    assert len(blocks) == 24 and [r["block"] for r in rows] == blocks  # the first 8 only, before
    for b, row in enumerate(rows):
        assert float(row["rate_gd"]) == pytest.approx((norms[-1, b] - norms[0, b]) / t[-1], rel=1e-5)  # 6 digits
    md = (rep / "report.md").read_text()
    section = md.split("## Invariant layers: scale-invariant blocks")[1].split("\n## ")[0]
    assert "The first 8 blocks of each run are shown; all 24 rows are in `scale.csv`." in section
    assert sum(line.startswith("| ") for line in section.splitlines()) == 2 + 8


# Of two lrs the second diverges, which leaves one to fit.
ONE_LR_LEFT = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 40").replace("steps = 20", "steps = 2").replace(
    "kinds = gf, eom1", "kinds = gf")


def test_an_order_fit_of_one_learning_rate_is_not_judged(tmp_path):
    proc = run_eomlab(["--config", write_config(tmp_path, ONE_LR_LEFT.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rows = table(report(tmp_path / "out", tmp_path / "report") / "orders.csv")
    assert rows and all(r["lrs"] == "1" and r["slope"] == "nan" and r["within_0.25"] == "n/a" for r in rows), rows
    assert all("lr 40.0: " in r["left_out"] for r in rows), rows  # "no", before


# A conv bias before batchnorm has no gradient: its measured rate is rounding (~1e-20), and an error
# relative to it read as 35 or 520 (a review's CNN); the other blocks' errors stay.
BIAS_BEFORE_BATCHNORM = RATES.replace("layers = 5,8,3\nnormalize = layer\n",
                                      "architecture = conv(2, 3, pad=1), batchnorm, tanh, flatten, dense(3)\n").replace(
    "n_samples = 64", "n_samples = 64\nshape = 1,4,4").replace("weight_decay = 0.05\n", "")


def test_rates_at_rounding_level_get_no_relative_error(tmp_path):
    proc = run_eomlab(["--config", write_config(tmp_path, BIAS_BEFORE_BATCHNORM.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rows = table(report(tmp_path / "out", tmp_path / "report") / "rates.csv")
    bias = [r for r in rows if r["block"] == "layer0.b"]
    assert bias and all(abs(float(r["measured"])) < 1e-15 and r["rel_error_eom1"] == "nan" for r in bias), bias
    others = [r for r in rows if r["block"] in ("layer0.W", "layer3.W")]
    assert others and all(math.isfinite(float(r["rel_error_eom1"])) for r in others), others


def test_the_rounding_level_of_a_rate_is_judged_at_its_own_record():
    """A diverging run's last rates (1e6) made every earlier small rate (1e-9) look like rounding."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.report import ROUNDING_RATE, rate_cells
    measured = np.array([[1e-3, 1e-9, 1e-19], [1e6, 2e-9, 3e-19]])
    rounding = ROUNDING_RATE * np.max(np.abs(measured), axis=1)
    small = rate_cells(measured[:, 1], {"gf": 1.1 * measured[:, 1]}, ["gf"], slice(None), rounding)
    assert small[2] == pytest.approx(0.1)
    noise = rate_cells(measured[:, 2], {"gf": 2 * measured[:, 2]}, ["gf"], slice(None), rounding)
    assert math.isnan(noise[2])


def orders_row(report_dir, flow):
    (row,) = [r for r in table(report_dir / "orders.csv") if r["flow"] == flow]
    return row


def test_unfinished_runs_and_failed_flows_are_named_and_not_fitted(orders_study, tmp_path):
    """Found by a review: a run stopped by a signal (status interrupted) was fitted as if it had finished,
    or moved the common time to its last record; a flow that failed at one lr was listed among the
    fitted lrs although its NaN was dropped; a flow missing in one run crashed the report."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    files = run_files(copy)
    with h5py.File(files[0.01], "a") as f:
        f.attrs["status"] = "interrupted"
    with h5py.File(files[0.08], "a") as f:
        for name in ("distance_to_gd", "distance_to_discrete"):
            if name in f["observables/eom2"]:
                f["observables/eom2"][name][3:] = np.nan
        f["observables/eom2"].attrs["status"] = "failed"
    with h5py.File(files[0.04], "a") as f:
        del f["observables/eom1"]
        f.attrs["flows"] = "gf, eom2"
    rep = report(copy, tmp_path / "report")
    gf, eom1, eom2 = (orders_row(rep, flow) for flow in ("gf", "eom1", "eom2"))
    assert gf["lrs"] == "3" and "lr 0.01: status interrupted (unfinished" in gf["left_out"], gf
    assert eom2["lrs"] == "2" and eom2["fitted_lrs"] == "0.04 0.02" and "lr 0.08: eom2 distance nan" in eom2["left_out"]
    assert "(eom2 failed)" in eom2["left_out"]
    assert eom1["lrs"] == "2" and "lr 0.04: no eom1 trajectory" in eom1["left_out"], eom1
    d = {}  # the slope of the points left, as they are in the file
    for lr in (0.04, 0.02):
        with h5py.File(files[lr], "r") as f:
            d[lr] = f["observables/eom2/distance_to_gd"][-1]
    assert float(eom2["slope"]) == pytest.approx(math.log(d[0.04] / d[0.02]) / math.log(2), rel=1e-5)  # 6 digits in the CSV


STEPS = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 0.05, 0.03").replace("steps = 20", "steps = 40").replace(
    "record_every = 5", "record_every = 10")


def test_runs_of_optimizer_steps_that_share_no_record_time_say_so(tmp_path):
    """Found by a review: runs of `steps` at several lrs end at different times; the fit took the earliest
    end, which the others had not recorded, and gave slope nan with nothing in left_out."""
    proc = run_eomlab(["--config", write_config(tmp_path, STEPS.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rows = table(report(tmp_path / "out", tmp_path / "report") / "orders.csv")
    assert rows and all(r["slope"] == "nan" and r["lrs"] == "0" for r in rows), rows
    assert all("no record time after t = 0 is common to the runs (they end at t = 1.2, 2, 4" in r["left_out"] for r in rows)
    assert not (tmp_path / "report" / "orders.png").exists()  # was drawn without a point


def test_a_study_without_sharpness_is_not_said_to_stay_below_the_stability_limit(tmp_path):
    """Found by a review: with output.sharpness = off, runs past the edge of stability were fitted and the
    report said "No run ... crossed the stability limit" without having looked."""
    config = write_config(tmp_path, SMALL_STUDY.format(output=tmp_path / "out"))
    proc = run_eomlab(["--config", config, "--output.sharpness=off", "--optimizer.lr=0.1,0.05"])
    assert proc.returncode == 0, proc.stderr
    md = (report(tmp_path / "out", tmp_path / "report") / "report.md").read_text()
    assert "crossed the stability limit" not in md
    assert "the stability limit was **not checked** for 2 run(s)" in md


def test_a_new_report_removes_the_tables_and_figures_of_the_last_one(orders_study, tmp_path):
    """Found by a review: after a rerun with one lr, orders.csv and orders.png of the old sweep stayed
    beside the new report.md. Files the report did not write are kept."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    rep = tmp_path / "report"
    report(copy, rep)
    (rep / "notes.txt").write_text("mine")
    assert (rep / "orders.csv").exists() and (rep / "orders.pdf").exists()
    for lr, path in run_files(copy).items():
        if lr != 0.08:
            path.unlink()
    report(copy, rep)
    assert not (rep / "orders.csv").exists() and not (rep / "orders.png").exists() and not (rep / "orders.pdf").exists()
    assert (rep / "notes.txt").read_text() == "mine" and (rep / "runs.csv").exists() and (rep / "loss.png").exists()


def test_provenance_lists_every_build_of_the_runs_and_a_bad_out_folder_is_refused(orders_study, tmp_path):
    """Found by a review: report.md named only the first run's git_sha, and --out under a file gave a traceback."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with h5py.File(run_files(copy)[0.02], "a") as f:
        sha = f.attrs["git_sha"]
        f.attrs["git_sha"] = "0123abc"
    md = (report(copy, tmp_path / "report") / "report.md").read_text()
    assert f"- git_sha: {sha} (3 runs), 0123abc (1 run)" in md, md[:800]
    proc = subprocess.run([str(REPORT), str(copy), "--out", str(copy / "study.ini" / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("analysis/report: ") and len(proc.stderr.splitlines()) == 1, proc.stderr


HEAVY_BALL_OUTSIDE = """
[study]
name = hb
output = {output}
seed = 1
[data]
n_samples = 64
[model]
layers = 4,16,3
[optimizer]
method = heavy_ball
momentum = 0.9
lr = 0.016, 0.008, 0.004
horizon = 0.64
record_every = 5
[flows]
kinds = eom0, eom1, eom2
rtol = 1e-12
atol = 1e-14
max_steps = 3000
[output]
sharpness = off
"""


def test_a_model_outside_its_regime_is_not_judged_by_its_slope(tmp_path):
    """DESIGN.md §1.5: at β = 0.9 eom2 can be less accurate than eom1 although its slope is 3. Found by a
    review: eom2 was certified "within 0.25: yes" (slope 3.06) while farther from heavy ball than eom1 and
    eom0 at every lr. Each row's judgement is checked against the distances in the files."""
    proc = run_eomlab(["--config", write_config(tmp_path, HEAVY_BALL_OUTSIDE.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rep = report(tmp_path / "out", tmp_path / "report")
    final = {}
    for lr, path in run_files(tmp_path / "out").items():
        with h5py.File(path, "r") as f:
            final[lr] = {t: f[f"observables/{t}/distance_to_discrete"][-1] for t in ("eom0", "eom1", "eom2")}
    rows = {r["flow"]: r for r in table(rep / "orders.csv")}
    for flow, lower in [("eom1", "eom0"), ("eom2", "eom1")]:
        outside = [lr for lr in sorted(final, reverse=True) if final[lr][flow] >= final[lr][lower]]
        assert rows[flow]["outside_regime"].count("lr ") == len(outside), rows[flow]
        assert (rows[flow]["within_0.25"] == "outside its regime") == bool(outside), rows[flow]
    assert rows["eom2"]["within_0.25"] == "outside its regime"  # this network at β = 0.9: at every lr
    assert rows["eom0"]["within_0.25"] == "yes"
    assert "outside its regime" in (rep / "report.md").read_text()


def test_run_files_of_two_networks_without_a_study_ini_are_fitted_apart(tmp_path):
    """Found by two reviews: without study.ini, runs of two widths (or two momenta) in one folder were fitted
    together (eom1 slope 1.67, "no") and a run of the other network at the same grid point was dropped
    as a duplicate. Each fit is checked against a report of its network alone."""
    wide = SMALL_STUDY.replace("layers = 5,8,3", "layers = 5,16,16,3")
    folder = tmp_path / "mixed"
    (folder / "runs").mkdir(parents=True)
    alone = {}
    for name, text, lrs in [("narrow", SMALL_STUDY, "0.1,0.05"), ("wide", wide, "0.1,0.025,0.0125")]:
        out = tmp_path / name
        proc = run_eomlab(["--config", write_config(tmp_path, text.format(output=out), f"{name}.ini"),
                           f"--optimizer.lr={lrs}", "--optimizer.horizon=1"])
        assert proc.returncode == 0, proc.stderr
        alone[name] = {r["flow"]: r for r in table(report(out, tmp_path / f"{name}_report") / "orders.csv")}
        for path in (out / "runs").glob("*.h5"):
            shutil.copy(path, folder / "runs" / f"{name}_{path.name}")
    rep = report(folder, tmp_path / "report")
    md = (rep / "report.md").read_text()
    assert "The run files hold 2 configs" in md and "model.layers = 5,8,3" in md and "model.layers = 5,16,16,3" in md
    runs = table(rep / "runs.csv")
    assert len(runs) == 5 and {r["config"] for r in runs} == {"1", "2"}  # lr 0.1 of each network kept
    rows = table(rep / "orders.csv")
    assert len(rows) == 4
    for row in rows:
        name = "narrow" if row["lrs"] == "2" else "wide"
        assert row["slope"] == alone[name][row["flow"]]["slope"], (row, alone[name][row["flow"]])


def test_tables_tell_close_learning_rates_apart(tmp_path):
    """Found by a review: the CSV tables wrote lr and weight decay with 6 significant digits, so runs of lr
    0.1 and 0.1000001 (distinct run ids and files) had the same lr in runs.csv."""
    close = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 0.1000001").replace("steps = 20", "steps = 2").replace(
        "record_every = 5", "record_every = 1")
    proc = run_eomlab(["--config", write_config(tmp_path, close.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    rows = table(report(tmp_path / "out", tmp_path / "report") / "runs.csv")
    assert sorted(float(r["lr"]) for r in rows) == [0.1, 0.1000001] and {r["weight_decay"] for r in rows} == {"0"}


def test_figures_tell_close_learning_rates_apart(tmp_path, monkeypatch):
    """Found by a review: the figures wrote lrs with %g, so lr 0.1 and 0.1000001 had two legend entries and
    two loss panels "lr = 0.1". The texts of every figure are read as it is saved."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis import report as rep
    import matplotlib.text
    close = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 0.1000001").replace("steps = 20", "steps = 2").replace(
        "record_every = 5", "record_every = 1")
    proc = run_eomlab(["--config", write_config(tmp_path, close.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    texts, save = {}, rep.save
    monkeypatch.setattr(rep, "save", lambda fig, out, stem, title: (
        texts.setdefault(stem, [t.get_text() for t in fig.findobj(matplotlib.text.Text)]), save(fig, out, stem, title))[1])
    rep.build(tmp_path / "out", tmp_path / "report")
    for stem in ["distance_vs_time", "loss", "sharpness"]:
        assert any(t.endswith("lr = 0.1000001") for t in texts[stem]) and any(t.endswith("lr = 0.1") for t in texts[stem]), \
            (stem, texts[stem])


def test_the_loss_figure_of_a_long_sweep_wraps_onto_rows(tmp_path):
    """Found by a review: 32 lrs gave a loss figure 14080 pixels wide; the panels now wrap, 5 to a row."""
    sweep = SMALL_STUDY.replace("lr = 0.1", "lr = " + ", ".join(f"{0.01 * k:g}" for k in range(1, 8))).replace(
        "steps = 20", "steps = 2").replace("record_every = 5", "record_every = 1").replace("kinds = gf, eom1", "kinds = gf")
    proc = run_eomlab(["--config", write_config(tmp_path, sweep.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    png = (report(tmp_path / "out", tmp_path / "report") / "loss.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width <= 5 * 4.0 * 110 + 10 and height >= 2 * 3.4 * 110 - 10, (width, height)  # 5 columns, 2 rows at 110 dpi


def test_a_sweep_of_many_lrs_gets_a_colorbar_and_ten_loss_panels(tmp_path, monkeypatch):
    """Found by a review: a sweep of 100 lrs drew a legend of 100 entries beside the distances and 200 beside
    the sharpness, and 100 loss panels (a figure 7480 pixels high). More than 8 lrs now get a colorbar, and the
    loss curves of 10 lrs spread over the sweep, the largest and the smallest included."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis import report as rep
    import matplotlib.text
    lrs = [f"{0.005 * k:g}" for k in range(1, 13)]
    sweep = SMALL_STUDY.replace("lr = 0.1", "lr = " + ", ".join(lrs)).replace("steps = 20", "steps = 2").replace(
        "record_every = 5", "record_every = 1").replace("kinds = gf, eom1", "kinds = gf")
    proc = run_eomlab(["--config", write_config(tmp_path, sweep.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    texts, save = {}, rep.save
    monkeypatch.setattr(rep, "save", lambda fig, out, stem, title: (
        texts.setdefault(stem, [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible()]),
        save(fig, out, stem, title))[1])
    rep.build(tmp_path / "out", tmp_path / "report")
    panels = [t for t in texts["loss"] if t.startswith("lr = ")]
    assert panels == ["lr = " + lr for lr in rep.spread(lrs[::-1], 10)] and len(panels) == 10, panels
    assert panels[0] == "lr = 0.06" and panels[-1] == "lr = 0.005"
    assert any("Loss curves of 10 of the 12 lrs, spread over the sweep" in t for t in texts["loss"]), texts["loss"]
    for stem in ["distance_vs_time", "sharpness"]:
        assert not any("lr = " in t for t in texts[stem]), (stem, texts[stem])  # no legend entry per lr
        assert "lr (12 values)" in texts[stem] and "0.06" in texts[stem] and "0.005" in texts[stem], texts[stem]


def test_a_group_whose_runs_are_all_left_out_keeps_its_rows(orders_study, tmp_path):
    """Found by a review: a report taken while every run was unfinished wrote an orders.csv of its header
    alone, although report.md sent the reader to its left_out column."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for path in run_files(copy).values():
        with h5py.File(path, "a") as f:
            f.attrs["status"] = "interrupted"
    rows = table(report(copy, tmp_path / "report") / "orders.csv")
    assert [r["flow"] for r in rows] == ["gf", "eom1", "eom2"]
    assert all(r["lrs"] == "0" and r["left_out"].count("status interrupted") == 4 for r in rows), rows


def test_an_older_hdf5_study_keeps_the_runs_resumed_by_this_eomlab(tmp_path):
    """An older eomlab accepted, and ignored, data.n_samples with an hdf5 file and data.noise / data.seed
    with any file (its study.ini spells them); eomlab resumes such a study as their defaults' (6b1e42c).
    Found by a review: the report took the resumed runs for stale ones."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Study
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = rng.normal(size=(40, 5)), np.arange(40) % 3
    text = SMALL_STUDY.format(output=tmp_path / "out").replace(
        "source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{tmp_path / 'data.h5'}")
    proc = run_eomlab(["--config", write_config(tmp_path, text)])
    assert proc.returncode == 0, proc.stderr
    ini = tmp_path / "out" / "study.ini"
    now = ini.read_text()
    data = now[now.index("[data]"):now.index("[model]")]
    source = f"source = hdf5:{tmp_path / 'data.h5'}\n"
    assert data == "[data]\n" + source + "\n", data  # the keys the file's data does not read are left out
    old = now.replace(source, source + "n_samples = 32\nnoise = 0.3\nseed = 7\n")
    ini.write_text(old)
    study = Study(tmp_path / "out")
    assert study.stale == [] and len(study.runs) == 1


RESPELLED = """
[study]
name = respelled
output = {output}
seed = 1
[data]
source = idx:{idx}
n_samples = 12
[model]
architecture = conv(2,3,pad=1), batchnorm, tanh, avgpool(2), flatten, dense(4)
[optimizer]
lr = 0.1, 0.05
steps = 4
record_every = 2
[flows]
kinds = gf
"""


def test_shards_of_one_architecture_spelled_two_ways_are_one_study(tmp_path):
    """An adversarial review: --shard (and --resume) accept an architecture respelled with its defaults,
    whose run files then record the new spelling; the report listed them as stale, written with another
    config, and --catalog of an image study (whose shape the config does not give) refused them. Both now
    compare the layers the architectures make."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from test_image_data import small_idx
    small_idx(tmp_path / "idx")
    config = write_config(tmp_path, RESPELLED.format(output=tmp_path / "out", idx=tmp_path / "idx"))
    respelled = "conv(2, 3, stride=1, pad=1), batchnorm(eps=0, affine=on), tanh, avgpool(2), flatten, dense(4)"
    for args in [["--shard", "0/2"], ["--shard", "1/2", f"--model.architecture={respelled}"]]:
        proc = run_eomlab(["--config", config] + args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for spelling in [[], [f"--model.architecture={respelled}"]]:
        catalog = run_eomlab(["--config", config, "--catalog"] + spelling)
        assert catalog.returncode == 0 and "lists 2 runs, 2 with a run file" in catalog.stdout, catalog.stdout + catalog.stderr
    other = run_eomlab(["--config", config, "--catalog", "--model.architecture=conv(2,3,pad=1,stride=2), batchnorm, tanh, "
                        "avgpool(2), flatten, dense(4)"])
    assert other.returncode == 2 and "model.architecture was" in other.stderr, other.stdout + other.stderr
    rep = report(tmp_path / "out", tmp_path / "report")
    assert [r["run_id"] for r in table(rep / "runs.csv")] == ["lr0.1_seed1_wd0", "lr0.05_seed1_wd0"]
    md = (rep / "report.md").read_text()
    assert "2 of the study's 2 runs" in md and "stale" not in md.lower(), md


SGD_BATCHNORM = """
[study]
name = sgd_bn
output = {output}
seed = 3
[data]
n_samples = 48
n_features = 5
n_classes = 3
[model]
architecture = dense(8), batchnorm, tanh, dense(3)
weight_decay = 0.01
[optimizer]
method = sgd
batch_size = 12
order = fixed
lr = 0.2, 0.1, 0.05
horizon = 2.4
record_every = 4
[flows]
kinds = gf, eom0, eom1
"""


def test_gf_is_no_model_of_sgd_over_batchnorm(tmp_path):
    """A review: with batchnorm each batch has its own statistics and sgd's eom0 is the batches' mean
    gradient, not gf; the report still expected slope 1 of gf (within_0.25 'no') and compared eom1 with gf
    for its regime. gf now has no expected order there, and eom0 and eom1 theirs."""
    proc = run_eomlab(["--config", write_config(tmp_path, SGD_BATCHNORM.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["flow"]: r for r in table(report(tmp_path / "out", tmp_path / "report") / "orders.csv")}
    assert (rows["gf"]["expected"], rows["gf"]["within_0.25"]) == ("", "n/a")
    assert (rows["eom0"]["expected"], rows["eom0"]["within_0.25"]) == ("1", "yes")
    assert (rows["eom1"]["expected"], rows["eom1"]["within_0.25"]) == ("2", "yes")
    # The report asks the run file (/model couples_samples, written by the model that couples them), not the
    # layers' names; a file without the attribute (an older eomlab) by the names.
    files = sorted((tmp_path / "out" / "runs").glob("*.h5"))
    for path in files:
        with h5py.File(path, "r") as f:
            assert f["model"].attrs["couples_samples"] == 1
    for expected_gf, change in [("1", lambda a: a.__setitem__("couples_samples", 0)),
                                ("", lambda a: a.__delitem__("couples_samples"))]:
        for path in files:
            with h5py.File(path, "r+") as f:
                change(f["model"].attrs)
        gf = {r["flow"]: r for r in table(report(tmp_path / "out", tmp_path / "report") / "orders.csv")}["gf"]
        assert gf["expected"] == expected_gf


def test_a_log_axis_of_less_than_two_decades_is_labelled_between_its_powers_of_ten(tmp_path):
    """An adversarial review: sharpness.png's log axis over 2.5–40 showed the one label 10¹, so the values
    could not be read off it (and the orders plots' lr axis of one decade alike). Every saved figure's log
    axis of less than two decades gets labels between its powers of ten; one of more keeps the powers alone."""
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis import report as r
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def labels(low, high, axis=1):
        fig, ax = r.subplots()
        ax.loglog([low, high], [low, high])
        r.save(fig, tmp_path, "axis", "an axis")
        FigureCanvasAgg(fig).draw()
        ticks = ax.get_yticklabels(which="both") if axis else ax.get_xticklabels(which="both")
        return [t.get_text() for t in ticks if t.get_text() and t.get_visible() and low <= t.get_position()[axis] <= high]

    for axis in (0, 1):
        assert len(labels(2.5, 40, axis)) >= 3, labels(2.5, 40, axis)
        assert all(re.fullmatch(r"\$\\mathdefault\{10\^\{-?\d+\}\}\$", t) for t in labels(1e-6, 1e2, axis)), labels(1e-6, 1e2, axis)


def hdf5_study(tmp_path, data, lrs, name="out"):
    """SMALL_STUDY on the data file `data` at the given lrs, its output in tmp_path / name; returns its config."""
    text = SMALL_STUDY.format(output=tmp_path / name).replace(
        "source = gaussian_mixture\nn_samples = 64", f"source = hdf5:{data}").replace(
        "lr = 0.1", f"lr = {lrs}").replace("steps = 20", "steps = 8").replace("record_every = 5", "record_every = 2")
    return write_config(tmp_path, text, f"{name}.ini")


def write_data(path, rng):
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = rng.normal(size=(40, 5)), np.arange(40) % 3


def test_runs_of_one_config_computed_from_different_data_are_flagged(tmp_path):
    """Found by a review: the shards of a study, one replaced (--overwrite, as documented) after its data
    file changed, were reported as one study without a word; eomlab --catalog warns of it. The flag names
    each fingerprint the files record with its runs. (They are not fitted apart: runs begun by an eomlab
    from 168ee9b to aaa2e9b and resumed by a later one legitimately hold two fingerprints.)"""
    data, rng = tmp_path / "data.h5", np.random.default_rng(0)
    config = hdf5_study(tmp_path, data, "0.1, 0.05, 0.025, 0.0125")
    for shard, extra in [(0, []), (1, ["--overwrite"])]:
        write_data(data, rng)
        proc = run_eomlab(["--config", config, "--shard", f"{shard}/2", *extra])
        assert proc.returncode == 0, proc.stderr
    runs_of = {}
    for path in (tmp_path / "out" / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            runs_of.setdefault(f.attrs["data_fingerprint"], []).append(path.stem)
    assert len(runs_of) == 2
    rep = report(tmp_path / "out", tmp_path / "report")
    (flag,) = [line for line in (rep / "report.md").read_text().splitlines() if "computed from **different data**" in line]
    for fingerprint, runs in runs_of.items():
        assert f"{fingerprint}: " + ", ".join(sorted(r.replace("_", "\\_") for r in runs)) in flag \
            or f"{fingerprint}: " + ", ".join(sorted(r.replace("_", "\\_") for r in runs)[::-1]) in flag, (flag, runs_of)
    assert len(table(rep / "runs.csv")) == 4


def test_configs_of_different_data_files_are_not_flagged_as_mixed(tmp_path):
    """From a review of the flag above: a folder without study.ini holding two configs, each of its own data
    file, is not one config computed from different data."""
    rng, folder = np.random.default_rng(1), tmp_path / "mixed"
    (folder / "runs").mkdir(parents=True)
    for name, lrs in [("a", "0.1, 0.05"), ("b", "0.025, 0.0125")]:
        write_data(tmp_path / f"{name}.h5", rng)
        proc = run_eomlab(["--config", hdf5_study(tmp_path, tmp_path / f"{name}.h5", lrs, name)])
        assert proc.returncode == 0, proc.stderr
        for path in (tmp_path / name / "runs").glob("*.h5"):
            shutil.copy(path, folder / "runs" / path.name)
    md = (report(folder, tmp_path / "report") / "report.md").read_text()
    assert "The run files hold 2 configs" in md and "different data" not in md, md


def test_a_run_file_under_another_name_is_stale_and_leaves_the_runs_own_file(tmp_path):
    """Found by a review: a newer copy of a run under another name (here without its eom1 trajectory) took
    the run's place, and the run's own file was listed as the stale duplicate; eomlab --catalog and --resume
    refuse such a file ("copied or renamed by hand")."""
    two = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 0.05")
    proc = run_eomlab(["--config", write_config(tmp_path, two.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    runs_dir = tmp_path / "out" / "runs"
    copy = runs_dir / "zz_copy.h5"
    shutil.copy(runs_dir / "lr0.05_seed1_wd0.h5", copy)
    with h5py.File(copy, "a") as f:
        del f["observables/eom1"]
    os.utime(copy, ns=(0, (runs_dir / "lr0.05_seed1_wd0.h5").stat().st_mtime_ns + 10 ** 10))
    rep = report(tmp_path / "out", tmp_path / "report")
    assert sorted(r["run_id"] for r in table(rep / "runs.csv")) == ["lr0.05_seed1_wd0", "lr0.1_seed1_wd0"]
    stale = {r["file"]: r["reason"] for r in table(rep / "stale.csv")}
    assert list(stale) == ["zz_copy.h5"] and "holds run 'lr0.05_seed1_wd0'" in stale["zz_copy.h5"], stale
    assert "2 of the study's 2 runs," in (rep / "report.md").read_text()
    # Without study.ini (a folder of copies, whose names need not be run ids) the file named after its run
    # still counts, as the newest copy would otherwise (a review of the fix).
    (tmp_path / "out" / "study.ini").unlink()
    rep = report(tmp_path / "out", tmp_path / "report_without_ini")
    assert {r["run_id"] for r in table(rep / "runs.csv")} == {"lr0.05_seed1_wd0", "lr0.1_seed1_wd0"}
    stale = {r["file"]: r["reason"] for r in table(rep / "stale.csv")}
    assert stale == {"zz_copy.h5": "same grid point as lr0.05_seed1_wd0.h5, the file named after its run"}, stale
    # ... and the report still says what ran: the config the first run file records (a review: no config
    # at all was shown)
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:  # the first by name
        recorded = f.attrs["config"]
    recorded = recorded.decode() if isinstance(recorded, bytes) else recorded
    md = (rep / "report.md").read_text()
    assert "The config recorded in runs/lr0.05\\_seed1\\_wd0.h5" in md and recorded.strip() in md, md
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        eom1 = f["observables/eom1/distance_to_gd"][-1]
    (row,) = [r for r in table(rep / "runs.csv") if r["run_id"] == "lr0.05_seed1_wd0"]
    assert float(row["final_distance_eom1"]) == pytest.approx(eom1, rel=1e-5), row


def test_a_file_that_holds_no_run_is_not_counted_as_a_damaged_run(tmp_path):
    """Found by a review: an HDF5 file of initial parameters in runs/ was counted as a run whose file cannot
    be read, hiding the run without a file ("1 with a run file that cannot be read"); a directory named
    x.h5 gave HDF5's internals."""
    two = SMALL_STUDY.replace("lr = 0.1", "lr = 0.1, 0.05")
    proc = run_eomlab(["--config", write_config(tmp_path, two.format(output=tmp_path / "out"))])
    assert proc.returncode == 0, proc.stderr
    runs_dir = tmp_path / "out" / "runs"
    (runs_dir / "lr0.05_seed1_wd0.h5").unlink()
    with h5py.File(runs_dir / "my_init_theta.h5", "w") as f:
        f["theta"] = np.zeros(10)
    (runs_dir / "x.h5").mkdir()
    rep = report(tmp_path / "out", tmp_path / "report")
    md = (rep / "report.md").read_text()
    assert "1 of the study's 2 runs (1 without a run file yet)" in md and "2 hold no run:" in md, md
    stale = {r["file"]: r["reason"] for r in table(rep / "stale.csv")}
    assert stale["my_init_theta.h5"].startswith("not a run file: no run_id, config or step"), stale
    assert stale["x.h5"] == "not a run file: a directory, not a file", stale
    # the run's file a link into a purged scratch folder: damaged, not "a directory" (a review of the above)
    (runs_dir / "lr0.05_seed1_wd0.h5").symlink_to(tmp_path / "scratch" / "gone.h5")
    rep = report(tmp_path / "out", tmp_path / "report_purged")
    assert "1 of the study's 2 runs (1 with a run file that cannot be read)" in (rep / "report.md").read_text()
    assert {r["file"]: r["reason"] for r in table(rep / "stale.csv")}["lr0.05_seed1_wd0.h5"].startswith("unreadable")
    rows = table(rep / "runs.csv")
    assert [r["run_id"] for r in rows] == ["lr0.1_seed1_wd0"]


def test_provenance_lists_every_host_job_and_resume_of_the_runs(orders_study, tmp_path):
    """Found by an adversarial review: report.md showed the first run's host, created time and SLURM job
    alone (shards run as two jobs read as one), no BLAS, and nothing of the builds that resumed a run."""
    out, _ = orders_study
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    files = run_files(copy)
    for lr, job in [(0.08, "111"), (0.04, "111"), (0.02, "222"), (0.01, "222")]:
        with h5py.File(files[lr], "a") as f:
            f.attrs["SLURM_JOB_ID"] = job
            f.attrs["created"] = "2026-12-01T10:00:00Z" if job == "111" else "2026-12-02T09:30:00Z"
    with h5py.File(files[0.01], "a") as f:
        sha, blas, host = f.attrs["git_sha"], f.attrs["blas"], f.attrs["host"]
        f.attrs["host"] = "node7"
        f.attrs["resume_provenance"] = ("2026-12-03T08:00:00Z: eomlab_version=0.1.0; git_sha=fedcba9; "
                                        "host=node9; SLURM_JOB_ID=333;")
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.report import md as md_text
    md = (report(copy, tmp_path / "report") / "report.md").read_text()
    assert "- SLURM_JOB_ID: 111 (2 runs), 222 (2 runs), 333 (1 run)" in md, md[:1500]
    assert f"- host: {md_text(host)} (3 runs), node7 (1 run), node9 (1 run)" in md, md[:1500]
    assert f"- git_sha: {md_text(sha)} (4 runs), fedcba9 (1 run)" in md, md[:1500]
    assert f"- blas: {md_text(blas)}" in md, md[:1500]
    assert "- created: 2026-12-01T10:00:00Z to 2026-12-02T09:30:00Z" in md, md[:1500]
    assert "- resumed: 1 run" in md, md[:1500]


def test_a_study_extended_with_more_learning_rates_keeps_its_runs(tmp_path):
    """Found by an adversarial review: adding an lr to a finished study was refused on --resume (the lists
    were compared whole), so it meant --overwrite and computing every run again; and runs of the first
    lrs were stale to the report beside the extended study.ini. The grid's lists may now grow on --resume:
    the finished runs are kept as they are, the new points computed (bitwise a fresh study's), and the
    report and --catalog count them all. A list that loses a value is still refused."""
    study = SMALL_STUDY.format(output=tmp_path / "out").replace("lr = 0.1", "lr = 0.1, 0.05")
    config = write_config(tmp_path, study)
    assert run_eomlab(["--config", config]).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "runs").glob("*.h5")}
    extended = ["--config", config, "--optimizer.lr=0.1,0.05,0.025"]
    proc = run_eomlab(extended)
    assert proc.returncode == 2 and "or --resume to add the new grid points" in proc.stderr, proc.stderr
    proc = run_eomlab(extended + ["--resume"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("already complete, skipped") == 2, proc.stdout
    runs = tmp_path / "out" / "runs"
    assert {name: (runs / name).read_bytes() for name in before} == before
    (tmp_path / "fresh").mkdir()
    fresh = write_config(tmp_path / "fresh", SMALL_STUDY.format(output=tmp_path / "fresh" / "out").replace("lr = 0.1", "lr = 0.1, 0.05, 0.025"))
    assert run_eomlab(["--config", fresh]).returncode == 0
    with h5py.File(runs / "lr0.025_seed1_wd0.h5", "r") as a, h5py.File(tmp_path / "fresh" / "out" / "runs" / "lr0.025_seed1_wd0.h5", "r") as b:
        for name in ["step", "time", "observables/gd/loss", "observables/eom1/distance_to_gd"]:
            assert np.array_equal(a[name][()], b[name][()]), name
    md = (report(tmp_path / "out", tmp_path / "report") / "report.md").read_text()
    assert "3 of the study's 3 runs." in md and "Stale run files" not in md, md[:1500]
    proc = run_eomlab(extended + ["--catalog"])
    assert proc.returncode == 0 and "lists 3 runs, 3 with a run file" in proc.stdout, proc.stdout + proc.stderr
    proc = run_eomlab(["--config", config, "--optimizer.lr=0.1,0.025", "--resume"])
    assert proc.returncode == 2 and "optimizer.lr was '0.1,0.05,0.025', now '0.1,0.025'" in proc.stderr, proc.stderr
    # An adversarial review: a requeued array task of the grid before a growth was told "the config differs",
    # a config its user never changed. Where the study's lists extend this one's, it says so.
    assert "has more grid points than this config" in proc.stderr and "study.ini), which holds these runs" in proc.stderr
    # A second adversarial review: a reordered list was taken as grown, giving the runs other indices, so
    # a job array's shards other runs (two never computed while every shard said done). Refused now; and
    # a shard that grows the grid says its runs are others than before.
    proc = run_eomlab(["--config", config, "--optimizer.lr=0.05,0.1,0.025", "--resume"])
    assert proc.returncode == 2 and "the values there keeping their order" in proc.stderr, proc.stderr
    proc = run_eomlab(["--config", config, "--optimizer.lr=0.1,0.05,0.025,0.0125", "--resume", "--shard", "0/2"])
    assert proc.returncode == 0 and "shard 0/2 of the grown grid holds other runs" in proc.stderr, proc.stderr
    # A review: with study.ini removed, a shrunk grid was taken (the run files' own lists were not compared).
    (tmp_path / "out" / "study.ini").unlink()
    proc = run_eomlab(["--config", config, "--optimizer.lr=0.1,0.025", "--resume"])
    assert proc.returncode == 2 and "was written with another config (optimizer.lr was '0.1,0.05" in proc.stderr, proc.stderr
    assert "now '0.1,0.025'" in proc.stderr and not (tmp_path / "out" / "study.ini").exists()



def test_a_resume_after_an_overwrite_of_fewer_lrs_keeps_the_other_runs(tmp_path):
    """A review of the check above: beside study.ini a run file's lists may be older than an --overwrite that
    shrank the grid; growing it back with --resume keeps that run, as it did before."""
    study = SMALL_STUDY.format(output=tmp_path / "out").replace("lr = 0.1", "lr = 0.1, 0.05").replace(
        "steps = 20", "steps = 2").replace("record_every = 5", "record_every = 1")
    config = write_config(tmp_path, study)
    assert run_eomlab(["--config", config]).returncode == 0
    assert run_eomlab(["--config", config, "--optimizer.lr=0.1", "--overwrite"]).returncode == 0
    proc = run_eomlab(["--config", config, "--resume"])
    assert proc.returncode == 0 and "lr0.05_seed1_wd0] already complete, skipped" in proc.stdout, proc.stdout + proc.stderr
