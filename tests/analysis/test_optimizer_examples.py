"""The optimizer examples of the README (issue 14) through the real binary and analysis/report: the
slopes in orders.csv equal the ones computed from the run files, eomP of each method has slope P + 1 ±
0.25, and gf is not expected to model a method other than GD."""
import csv
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import run_eomlab  # noqa: E402


def slopes_from_files(out, method):
    """Per flow, the log-log slope of the final distance to the method against lr, from the HDF5 files."""
    by_flow = {}
    for path in sorted((out / "runs").glob("*.h5")):
        with h5py.File(path, "r") as f:
            assert f.attrs["method"] == method
            for flow in f.attrs["flows"].split(","):
                by_flow.setdefault(flow, []).append((f.attrs["lr"], f[f"observables/{flow}/distance_to_{method}"][-1]))
    return {flow: np.polyfit(np.log([lr for lr, _ in v]), np.log([d for _, d in v]), 1)[0] for flow, v in by_flow.items()}


@pytest.mark.parametrize("example, overrides, method", [
    ("momentum.ini", [], "heavy_ball"),
    ("momentum.ini", ["--optimizer.method=nesterov"], "nesterov"),
    ("adam.ini", [], "adam"),
    ("rmsprop.ini", [], "rmsprop"),
])
def test_example_orders(tmp_path, example, overrides, method):
    out = tmp_path / "out"
    proc = run_eomlab(["--config", REPO / "examples" / example, f"--study.output={out}", *overrides])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    subprocess.run([sys.executable, REPO / "analysis" / "report", out], check=True, capture_output=True)
    with open(out / "report" / "orders.csv") as f:
        rows = {r["flow"]: r for r in csv.DictReader(f)}
    computed = slopes_from_files(out, method)
    assert set(rows) == set(computed)
    for flow, row in rows.items():
        assert row["method"] == method
        assert float(row["slope"]) == pytest.approx(computed[flow], abs=1e-4), flow
        if flow == "gf":
            assert (row["expected"], row["within_0.25"]) == ("", "n/a")
            assert abs(computed[flow]) < 0.1  # gradient flow does not follow a momentum method at all
        else:
            order = int(flow[3:])
            assert row["expected"] == str(order + 1) and row["within_0.25"] == "yes"
            assert abs(computed[flow] - (order + 1)) <= 0.25, (flow, computed[flow])
