"""The HDF5 readers on truncated and corrupted data and parameter files, through the real binary:
every outcome is exit 0 (the damage missed what is read) or exit 2 with one line naming the key and
the file and nothing written; no crash, no hang."""
import random

import h5py
import numpy as np
import pytest

from conftest import run_eomlab, write_config

STUDY = """
[study]
output = {output}
[data]
source = hdf5:{data}
[model]
layers = 4,6,3
init = {init}
[optimizer]
lr = 0.1
steps = 2
[flows]
kinds = gf
[output]
sharpness = off
"""


def make_files(tmp_path):
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"] = rng.normal(size=(30, 4))
        f["y"] = rng.integers(0, 3, size=30).astype(np.int64)
    with h5py.File(tmp_path / "init.h5", "w") as f:
        f["theta"] = rng.normal(size=4 * 6 + 6 + 6 * 3 + 3)
    return (tmp_path / "data.h5").read_bytes(), (tmp_path / "init.h5").read_bytes()


def damage(original, rng):
    data = bytearray(original)
    if rng.random() < 0.5:
        return bytes(data[:rng.randrange(len(data))])  # truncated
    for _ in range(rng.randrange(1, 40)):  # random bytes overwritten
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("target", ["data", "init"])
def test_damaged_input_files(tmp_path, target):
    data_bytes, init_bytes = make_files(tmp_path)
    rng = random.Random(7 if target == "data" else 8)
    outcomes = {0: 0, 2: 0}
    for case in range(25):
        case_dir = tmp_path / f"case{case}"
        case_dir.mkdir()
        (case_dir / "data.h5").write_bytes(damage(data_bytes, rng) if target == "data" else data_bytes)
        (case_dir / "init.h5").write_bytes(damage(init_bytes, rng) if target == "init" else init_bytes)
        out = case_dir / "out"
        config = write_config(case_dir, STUDY.format(output=out, data=case_dir / "data.h5",
                                                     init=f"hdf5:{case_dir / 'init.h5'}"))
        proc = run_eomlab(["--config", config], timeout=60)
        assert proc.returncode in (0, 2), f"case {case}: exit {proc.returncode}\n{proc.stderr}"
        outcomes[proc.returncode] += 1
        if proc.returncode == 2:
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            assert len(lines) == 1, proc.stderr
            key = "data.source" if target == "data" else "model.init"
            assert key in lines[0] and str(case_dir / f"{target}.h5") in lines[0], lines[0]
            assert not out.exists()
    assert outcomes[2] >= 10, outcomes
