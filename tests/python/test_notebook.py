"""examples/notebook.py, the README's Python walk-through, runs as a script in a fresh interpreter and
shows what it says: the exact HVP within finite-difference error, eom1 closer to GD than gf, and the
sweep's slopes 1, 2, 3 for gf, eom1, eom2 (within 0.25), with its figure written."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EOMLAB_PYTHON_DIR") or REPO / "build" / "python")


def test_notebook_runs_and_shows_the_orders(tmp_path):
    if not list(BUILD.glob("eomlab*.so")):
        pytest.skip(f"the module is not built in {BUILD}")
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "notebook.py"), str(tmp_path / "nb")],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(BUILD), OMPI_ALLOW_RUN_AS_ROOT="1",
                                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert float(re.search(r"relative gap ([0-9.e+-]+)", out)[1]) < 1e-7
    gf, eom1 = (float(re.search(rf"{k}: distance to GD at t = 4: ([0-9.e+-]+)", out)[1]) for k in ["gf", "eom1"])
    assert eom1 < gf / 5
    slopes = {k: float(v) for k, v in re.findall(r"'(\w+)': ([0-9.]+)", out.split("slopes of the final distance")[1])}
    assert slopes.keys() == {"gf", "eom1", "eom2"}
    for order, flow in enumerate(["gf", "eom1", "eom2"]):
        assert abs(slopes[flow] - (order + 1)) <= 0.25, slopes
    assert (tmp_path / "nb" / "orders.png").stat().st_size > 1000
