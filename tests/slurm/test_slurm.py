"""jobs/eomlab.sbatch on a real one-node SLURM cluster started by the test (issue 5): one allocation,
a 2-task job array with the catalog built afterwards, and a job that hits its time limit, checkpoints,
requeues itself and resumes."""
import os
import pathlib
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cluster import Cluster  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "jobs" / "eomlab.sbatch"

STUDY = """
[study]
output = {output}
seed = 1, 2
[data]
n_samples = 128
[model]
layers = 8,16,4
[optimizer]
lr = 0.1, 0.05
steps = 40
record_every = 5
[flows]
kinds = gf, eom1
"""

RUN_IDS = {"lr0.1_seed1_wd0", "lr0.1_seed2_wd0", "lr0.05_seed1_wd0", "lr0.05_seed2_wd0"}


def binary():
    return os.environ.get("EOMLAB_BINARY") or str(REPO / "build" / "src" / "eomlab")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    c.env["EOMLAB"] = binary()
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()


def catalog(out):
    with h5py.File(out / "sweep.h5", "r") as f:
        return f["summary"][:]


def test_one_allocation_runs_the_whole_study(cluster, tmp_path):
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--ntasks=2", "-o", tmp_path / "job-%j.out", SCRIPT, study], cwd=tmp_path, timeout=300)
    log = "".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert r.returncode == 0, r.stderr + log + cluster.logs()
    assert "mpirun -np 2" in log
    rows = catalog(tmp_path / "out")
    assert {x.decode() for x in rows["run_id"]} == RUN_IDS
    assert set(rows["status"]) == {b"complete"}
    with h5py.File(tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert "SLURM_JOB_ID" in f.attrs and f.attrs["mpi_world_size"] == "2"


def test_job_array_runs_shares_and_catalog_lists_them(cluster, tmp_path):
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--array=0-1", "--ntasks=1", "-o", tmp_path / "task-%A_%a.out", SCRIPT, study],
                       cwd=tmp_path, timeout=300)
    logs = "".join(p.read_text() for p in tmp_path.glob("task-*.out"))
    assert r.returncode == 0, r.stderr + logs + cluster.logs()
    assert "--shard 0/2" in logs and "--shard 1/2" in logs
    runs = tmp_path / "out" / "runs"
    assert {p.stem for p in runs.glob("*.h5")} == RUN_IDS
    tasks = set()
    for p in runs.glob("*.h5"):
        with h5py.File(p, "r") as f:
            assert f.attrs["status"] == "complete"
            tasks.add(f.attrs["SLURM_ARRAY_TASK_ID"])
    assert tasks == {"0", "1"}
    # The catalog after the last task.
    proc = subprocess.run([binary(), "--config", study, "--catalog"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = catalog(tmp_path / "out")
    assert len(rows) == 4 and set(rows["status"]) == {b"complete"}


def job_field(cluster, job, field):
    out = subprocess.run(["scontrol", "show", "job", str(job)], env=cluster.env, capture_output=True, text=True).stdout
    for item in out.split():
        if item.startswith(field + "="):
            return item.split("=", 1)[1]
    return ""


def test_job_hitting_its_time_limit_is_requeued_and_resumes(cluster, tmp_path):
    study = tmp_path / "long.ini"
    steps = 160000  # about 90 s on this machine: well past the 1-minute limit
    study.write_text(f"""
[study]
output = {tmp_path / 'out'}
seed = 1
[data]
n_samples = 256
[model]
layers = 8,32,32,4
[optimizer]
lr = 0.05
steps = {steps}
record_every = 1000
[flows]
kinds = gf, eom1
[output]
checkpoint_every = 5000
""")
    submit = subprocess.run(["sbatch", "--parsable", "--ntasks=1", "--time=1", "--signal=B:USR1@50",
                             "-o", str(tmp_path / "long-%j.out"), str(SCRIPT), str(study)],
                            env=cluster.env, cwd=tmp_path, capture_output=True, text=True)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    deadline = time.time() + 600
    state = ""
    while time.time() < deadline:
        state = job_field(cluster, job, "JobState")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        if state == "PENDING" and job_field(cluster, job, "Restarts") not in ("", "0"):
            # SLURM delays a requeued job's start by minutes; release it now (test-only shortcut).
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster.env, capture_output=True)
        time.sleep(1)
    log = "".join(p.read_text() for p in tmp_path.glob("long-*.out"))
    assert state == "COMPLETED", state + log + cluster.logs()
    # On a loaded machine the resumed job may hit the limit again and requeue once more: also correct.
    restarts = int(job_field(cluster, job, "Restarts"))
    assert restarts >= 1
    assert log.count("checkpointed at step") == restarts and log.count("requeueing job") == restarts
    assert "restart 1:" in log and "--resume" in log and log.count("resuming at step") == restarts
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete" and "resumed" in f.attrs
        step = f["step"][:]
        np.testing.assert_array_equal(step, np.arange(0, steps + 1, 1000))  # every record once, in order
        assert np.all(np.isfinite(f["observables/eom1/distance_to_gd"][:]))
    rows = catalog(tmp_path / "out")
    assert rows["status"][0] == b"complete"
