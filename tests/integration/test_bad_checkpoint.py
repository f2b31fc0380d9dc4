"""A bad checkpoint under real mpirun (issue 11, items 3 and 4): a flipped bit, an edited scalar, a
truncated file or a run file shorter than its checkpoint is never resumed from. That run starts again from
step 0 with a warning naming the file (so its data equal an uninterrupted study's, bit for bit), and the
other runs, in other rank groups, resume from their own checkpoints as usual."""
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import eomlab_binary, mpi_env, run_eomlab, write_config
from test_resume import STUDY as RESUME_STUDY, datasets, statuses

# test_resume's study in two rank groups side by side (ranks_per_run = 1) or one slicing θ (2).
STUDY = (RESUME_STUDY.replace("ranks_per_run = 2", "ranks_per_run = {ranks_per_run}")
         .replace("steps = 300", "steps = 1500").replace("kinds = gf, eom1, eom2", "kinds = gf, eom1"))

BAD = "lr0.05_seed1_wd0"


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The uninterrupted study's datasets, by ranks per run (1: two groups side by side; 2: θ sliced)."""
    refs = {}
    for rpr in (1, 2):
        tmp = tmp_path_factory.mktemp(f"reference{rpr}")
        config = write_config(tmp, STUDY.format(output=tmp / "out", ranks_per_run=rpr))
        proc = run_eomlab(["--config", config], np=2)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        refs[rpr] = datasets(tmp / "out")
    return refs


def interrupted_study(tmp_path, rpr):
    """A study stopped by SIGUSR1 once every run in progress has a checkpoint (exit 75)."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", ranks_per_run=rpr))
    proc = subprocess.Popen(["mpirun", "-np", "2", "--oversubscribe", eomlab_binary(), "--config", str(config)],
                            env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while len(list((tmp_path / "out" / "checkpoints").glob("*.h5"))) < (2 if rpr == 1 else 1):
        assert proc.poll() is None and time.time() < deadline, "no checkpoints appeared"
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    return config


def flip_bit(path, dataset, index):
    """Flips one bit of element `index` of a contiguous float64 dataset in the file's bytes."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset() + 8 * index + 5
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)[0]
        raw.seek(offset)
        raw.write(bytes([byte ^ 0x10]))


def set_scalar(path, index, value):
    with h5py.File(path, "r+") as f:
        f["scalars"][index] = value


def shorten_run_file(path):
    with h5py.File(path, "r+") as f:
        f["step"].resize((1,))


def checksum_array(path):
    """The checksum attribute as 64 values (a damaged header): read as one, they would overrun it."""
    with h5py.File(path, "r+") as f:
        value = int(f.attrs["checksum"])
        del f.attrs["checksum"]
        f.attrs.create("checksum", [value] * 64, dtype="int64")


def scalars_matrix(path):
    """The scalars dataset as a [6, 4096] matrix (a damaged header): read as 6 values, it would overrun them."""
    with h5py.File(path, "r+") as f:
        scalars = f["scalars"][:]
        del f["scalars"]
        f["scalars"] = np.repeat(scalars[:, None], 4096, axis=1)


def truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


CORRUPTIONS = {
    "gd_bit": lambda ckpt, run: flip_bit(ckpt, "method/theta", 3),
    "last_gd_bit": lambda ckpt, run: flip_bit(ckpt, "method/theta", 1475),  # P = 1476: in rank 1's slice
    "integrator_bit": lambda ckpt, run: flip_bit(ckpt, "flow1/integrator_vectors", 5 * 1476 + 1400),
    "step_scalar": lambda ckpt, run: set_scalar(ckpt, 0, 5),
    "truncated_checkpoint": lambda ckpt, run: truncate(ckpt),
    "checksum_array": lambda ckpt, run: checksum_array(ckpt),
    "scalars_matrix": lambda ckpt, run: scalars_matrix(ckpt),
    "short_run_file": lambda ckpt, run: shorten_run_file(run),
}


@pytest.mark.parametrize("rpr,corruption", [(1, "gd_bit"), (1, "step_scalar"), (1, "truncated_checkpoint"),
                                            (1, "short_run_file"), (1, "checksum_array"), (1, "scalars_matrix"),
                                            (2, "last_gd_bit"), (2, "integrator_bit")])
def test_a_bad_checkpoint_restarts_its_run_and_the_others_resume(tmp_path, references, rpr, corruption):
    config = interrupted_study(tmp_path, rpr)
    out = tmp_path / "out"
    ckpt = out / "checkpoints" / f"{BAD}.h5"
    CORRUPTIONS[corruption](ckpt, out / "runs" / f"{BAD}.h5")
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("eomlab: warning:")]
    assert len(warnings) == 1 and f"cannot resume from checkpoint '{ckpt}'" in warnings[0] \
        and "starts again from step 0" in warnings[0], resumed.stderr
    assert f"[run 1/2 {BAD}] resuming at step" not in resumed.stdout
    assert ckpt.with_suffix(".h5.bad").exists()
    if rpr == 1:  # the other group's run continued from its checkpoint
        assert "lr0.1_seed1_wd0] resuming at step" in resumed.stdout, resumed.stdout
    assert set(statuses(out).values()) == {"complete"}
    assert datasets(out) == references[rpr]
    if corruption == "gd_bit":  # --overwrite replaces the old results, the bad checkpoint kept of them too (a review)
        assert run_eomlab(["--config", config, "--overwrite"]).returncode == 0
        assert not ckpt.with_suffix(".h5.bad").exists()


def test_a_checkpoint_of_another_run_is_not_resumed_from(tmp_path, references):
    """A checkpoint moved by hand onto another run's name: it names its run, so it is refused like a bad one
    (it was resumed from where the target's run file had as many records: θ off by up to 1.1)."""
    config = interrupted_study(tmp_path, 1)
    out = tmp_path / "out"
    ckpts = {run: out / "checkpoints" / f"{run}.h5" for run in (BAD, "lr0.1_seed1_wd0")}
    records = {run: int(h5py.File(path, "r")["scalars"][1]) for run, path in ckpts.items()}
    source, target = sorted(ckpts, key=lambda run: records[run])  # the target's run file holds enough records
    ckpts[target].write_bytes(ckpts[source].read_bytes())
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("eomlab: warning:")]
    assert len(warnings) == 1 and f"cannot resume from checkpoint '{ckpts[target]}'" in warnings[0] \
        and f"it is the checkpoint of run '{source}', not of '{target}'" in warnings[0], resumed.stderr
    assert set(statuses(out).values()) == {"complete"}
    assert datasets(out) == references[1]


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_checkpoint_whose_run_file_is_gone_or_unreadable_restarts_its_run_saying_so(tmp_path, references, damage):
    """The run file deleted, or cut to its first 2 KiB, after the interruption: the run started again from step 0
    and its checkpoint was deleted, without a word."""
    config = interrupted_study(tmp_path, 1)
    out = tmp_path / "out"
    run, ckpt = out / "runs" / f"{BAD}.h5", out / "checkpoints" / f"{BAD}.h5"
    if damage == "missing":
        run.unlink()
    else:
        os.truncate(run, 2048)
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("eomlab: warning:")]
    assert warnings == [f"eomlab: warning: [{BAD}] run file '{run}' is {damage}; the run starts again from step 0 "
                        f"(its checkpoint is kept as '{ckpt}.bad')"], resumed.stderr
    assert ckpt.with_suffix(".h5.bad").exists()
    assert "lr0.1_seed1_wd0] resuming at step" in resumed.stdout, resumed.stdout
    assert set(statuses(out).values()) == {"complete"}
    assert datasets(out) == references[1]


def test_a_stopped_shard_does_not_say_it_is_done(tmp_path):
    """A shard stopped by a signal printed "Shard 0/2 done; after the last shard, build the catalog" before
    "Interrupted ...: rerun with --resume" (an adversarial review): the first line invited a catalog of
    unfinished runs."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", ranks_per_run=1))
    proc = subprocess.Popen(["mpirun", "-np", "1", eomlab_binary(), "--config", str(config), "--shard", "0/2"],
                            env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not list((tmp_path / "out" / "checkpoints").glob("*.h5")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "Interrupted by a stop signal" in out, out
    assert "Shard 0/2 done" not in out, out
    proc = run_eomlab(["--config", config, "--shard", "0/2", "--resume"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Shard 0/2 done; after the last shard, build the catalog" in proc.stdout, proc.stdout
