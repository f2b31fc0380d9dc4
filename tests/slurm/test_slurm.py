"""jobs/eomlab.sbatch on a real one-node SLURM cluster started by the test (issue 5): one allocation,
a 2-task job array with the catalog built afterwards, a rerun of some tasks of an array, and a job that hits its time limit, checkpoints,
requeues itself and resumes."""
import os
import pathlib
import re
import shlex
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


def job_log(tmp_path, pattern):
    return "".join(p.read_text() for p in sorted(tmp_path.glob(pattern)))


def test_one_allocation_runs_the_whole_study(cluster, tmp_path):
    (tmp_path / "a study").mkdir()
    study = tmp_path / "a study" / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--ntasks=2", "-o", tmp_path / "job-%j.out", SCRIPT, study], cwd=tmp_path, timeout=300)
    log = job_log(tmp_path, "job-*.out")
    assert r.returncode == 0, r.stderr + log + cluster.logs()
    assert "mpirun -np 2" in log
    # The log's command as a shell takes it back (found by a review: a path with spaces was ambiguous).
    assert re.search(" --config " + re.escape(shlex.quote(str(study))) + "( |$)", log, re.M), log
    rows = catalog(tmp_path / "out")
    assert {x.decode() for x in rows["run_id"]} == RUN_IDS
    assert set(rows["status"]) == {b"complete"}
    with h5py.File(tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert "SLURM_JOB_ID" in f.attrs and f.attrs["mpi_world_size"] == "2"


def test_shard_count_without_an_array_is_refused(cluster, tmp_path):
    """Found by an adversarial review: EOMLAB_SHARDS given to a job that is no array was ignored without a
    word, and the whole study ran."""
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--ntasks=1", "--export=ALL,EOMLAB_SHARDS=4", "-o", tmp_path / "job-%j.out", SCRIPT, study],
                       cwd=tmp_path, timeout=300)
    log = job_log(tmp_path, "job-*.out")
    assert r.returncode != 0 and "EOMLAB_SHARDS=4 numbers the shards of a job array's tasks, and this job is not one" in log, log
    assert not (tmp_path / "out").exists()


def test_job_array_runs_shares_and_catalog_lists_them(cluster, tmp_path):
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--array=0-1", "--ntasks=1", "-o", tmp_path / "task-%A_%a.out", SCRIPT, study],
                       cwd=tmp_path, timeout=300)
    logs = job_log(tmp_path, "task-*.out")
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


def test_rerunning_some_tasks_of_an_array_names_the_shard_count(cluster, tmp_path):
    """sbatch --array=1,3 (rerunning two tasks of four) ran shards 0/2 and 2/2: one skipped finished runs and
    reported success, one failed, and two runs were never computed. Without the shard count such ids are
    refused; with EOMLAB_SHARDS=4 task i runs shard i of 4."""
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    r = cluster.sbatch(["--array=1,3", "--ntasks=1", "-o", tmp_path / "bad-%A_%a.out", SCRIPT, study], cwd=tmp_path)
    logs = job_log(tmp_path, "bad-*.out")
    assert r.returncode != 0 and logs.count("are not contiguous") == 2, r.stderr + logs
    assert not (tmp_path / "out").exists()
    r = cluster.sbatch(["--array=1,3", "--ntasks=1", "--export=ALL,EOMLAB_SHARDS=4", "-o", tmp_path / "task-%A_%a.out",
                        SCRIPT, study], cwd=tmp_path, timeout=300)
    logs = job_log(tmp_path, "task-*.out")
    assert r.returncode == 0, r.stderr + logs + cluster.logs()
    assert "--shard 1/4" in logs and "--shard 3/4" in logs
    # Runs 1 and 3 of the grid (lr 0.1 and 0.05 of seed 2 come second in each lr: seed varies first).
    done = {p.stem for p in (tmp_path / "out" / "runs").glob("*.h5")}
    assert len(done) == 2 and done < RUN_IDS, done


def test_a_job_submitted_with_overwrite_resumes_after_its_requeue(cluster, tmp_path):
    """The restart appended --resume to the user's --overwrite, which eomlab refuses together (exit 2, the
    job FAILED); resubmitting as typed would have wiped the checkpointed runs."""
    study = one_run_study(tmp_path, steps=8000)  # ~10 s: the warning comes at step 0, long before the end
    job = submit(cluster, tmp_path, ["--ntasks=1", "-o", tmp_path / "ow-%j.out", SCRIPT, study, "--overwrite"])
    warn_when_logged(cluster, job, tmp_path, "ow-*.out", "step 0/")
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "ow-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    restart_line = next(line for line in log.splitlines() if "restart 1:" in line)
    assert "--resume" in restart_line.split() and "--overwrite" not in restart_line.split(), restart_line
    assert "checkpointed at step" in log and "resuming at step" in log, log


def test_a_cancelled_job_says_how_to_continue(cluster, tmp_path):
    """scancel's SIGTERM may end the launcher before eomlab's "rerun with --resume" reaches the log; the
    script says it."""
    study = one_run_study(tmp_path, steps=8000)  # ~10 s: the warning comes at step 0, long before the end
    job = submit(cluster, tmp_path, ["--ntasks=1", "-o", tmp_path / "cancel-%j.out", SCRIPT, study])
    wait_for_log(tmp_path, "cancel-*.out", "step 0/", cluster)
    subprocess.run(["scancel", job], env=cluster.env, check=True)
    wait_for_log(tmp_path, "cancel-*.out", "stopped by a signal", cluster)
    log = job_log(tmp_path, "cancel-*.out")
    assert f"continue with sbatch --ntasks=1 jobs/eomlab.sbatch {study} --resume" in log, log
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] in ("interrupted", "running")


def wait_for_log(tmp_path, pattern, marker, cluster, count=1):
    """Waits (up to 120 s) until count of the jobs' logs show marker. Logs are counted, not lines: one task's
    log can show a marker twice ("step 0/" is printed with and without sharpness), and counting lines let a
    test signal an array whose other task had not started yet."""
    deadline = time.time() + 120
    while sum(marker in p.read_text() for p in tmp_path.glob(pattern)) < count:
        assert time.time() < deadline, job_log(tmp_path, pattern) + cluster.logs()
        time.sleep(0.2)


def test_scancel_ends_an_srun_array_and_each_task_says_how_to_continue_alone(cluster, tmp_path):
    """Found by an adversarial review: under EOMLAB_LAUNCHER="srun --mpi=pmix", srun passed scancel's SIGTERM
    on, eomlab checkpointed (exit 75) and the script requeued the task: a cancelled array came back and ran
    to the end. The way to continue also dropped the job's arguments and its array task."""
    study = one_run_study(tmp_path, steps=8000)
    study.write_text(study.read_text().replace("seed = 1\n", "seed = 1, 2\n"))
    out = tmp_path / "elsewhere"
    array = submit(cluster, tmp_path, ["--array=0-1", "--ntasks=1", "--export=ALL,EOMLAB_LAUNCHER=srun --mpi=pmix",
                                       "-o", tmp_path / "c-%A_%a.out", SCRIPT, study, f"--study.output={out}"])
    wait_for_log(tmp_path, "c-*.out", "step 0/", cluster, count=2)
    subprocess.run(["scancel", array], env=cluster.env, check=True)
    wait_for_log(tmp_path, "c-*.out", "stopped by a signal", cluster, count=2)
    time.sleep(3)  # a requeue would show by now
    for task in (0, 1):
        log = job_log(tmp_path, f"c-{array}_{task}.out")
        assert job_field(cluster, f"{array}_{task}", "Restarts") == "0", log + cluster.logs()
        assert job_field(cluster, f"{array}_{task}", "JobState") == "CANCELLED", log
        assert "requeueing" not in log, log
        assert (f"continue with sbatch --ntasks=1 --array={task} '--export=ALL,EOMLAB_LAUNCHER=srun --mpi=pmix,"
                f"EOMLAB_SHARDS=2' jobs/eomlab.sbatch {study} --study.output={out} --resume") in log, log


def test_a_job_requeued_by_slurm_resumes_once_and_says_what_to_check_under_overwrite(cluster, tmp_path):
    """Found by an adversarial review: after `scontrol requeue` (SLURM's own requeue, as on preemption) the
    script requeued the job again and logged that SLURM had refused ("did not requeue ... submit it again"),
    inviting a duplicate job; and the restart dropped --overwrite without a word."""
    study = one_run_study(tmp_path, steps=8000)
    job = submit(cluster, tmp_path, ["--ntasks=1", "-o", tmp_path / "rq-%j.out", SCRIPT, study, "--overwrite"])
    wait_for_log(tmp_path, "rq-*.out", "step 0/", cluster)
    subprocess.run(["scontrol", "requeue", job], env=cluster.env, check=True)
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "rq-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    assert job_field(cluster, job, "Restarts") == "1" and "did not requeue" not in log, log
    assert "A job that SLURM requeues (scontrol requeue, preemption) resumes by itself" in log, log
    assert "note: the restart drops --overwrite; if the job was stopped before eomlab began" in log, log
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete"


def job_field(cluster, job, field):
    out = subprocess.run(["scontrol", "show", "job", str(job)], env=cluster.env, capture_output=True, text=True).stdout
    for item in out.split():
        if item.startswith(field + "="):
            return item.split("=", 1)[1]
    return ""


def run_requeueing_job(cluster, job, timeout=600):
    """Waits for a job that may requeue itself; returns its final state."""
    deadline = time.time() + timeout
    released = "0"
    while time.time() < deadline:
        state = job_field(cluster, job, "JobState")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            return state
        restarts = job_field(cluster, job, "Restarts")
        if state == "PENDING" and restarts not in ("", released):
            # SLURM delays a requeued job's start by minutes; bring it forward (test-only shortcut), but
            # not into the second of the requeue: slurmd refuses a launch whose credential is no newer
            # than the revocation of the killed one ("Job credential revoked").
            time.sleep(2)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster.env,
                           capture_output=True)
            released = restarts
        time.sleep(0.5)
    return "still running after %d s" % timeout


def submit(cluster, tmp_path, args):
    proc = subprocess.run(["sbatch", "--parsable", *map(str, args)], env=cluster.env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def warn_when_logged(cluster, job, tmp_path, pattern, marker):
    """Sends the batch shell SLURM's warning (USR1) once the job's log shows marker."""
    wait_for_log(tmp_path, pattern, marker, cluster)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=cluster.env, check=True)


def one_run_study(tmp_path, steps, ranks_per_run=1):
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out").replace("steps = 40", f"steps = {steps}")
                     .replace("seed = 1, 2", f"seed = 1\nranks_per_run = {ranks_per_run}")
                     .replace("lr = 0.1, 0.05", "lr = 0.05") + "[output]\ncheckpoint_every = 1000\n")
    return study


def test_job_hitting_its_time_limit_is_requeued_and_resumes(cluster, tmp_path):
    study = tmp_path / "long.ini"
    # About 50 s of work on this machine. SLURM may send the warning up to a minute early ("due to the
    # resolution of event handling", sbatch(1)); here it comes at slurmctld's first periodic check after
    # the start, at most ~30 s in, so no single allocation finishes the work.
    steps = 500000
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
    job = submit(cluster, tmp_path, ["--ntasks=1", "--time=1", "--signal=B:USR1@50",
                                     "-o", tmp_path / "long-%j.out", SCRIPT, study])
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "long-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    # Each allocation ends at its warning: usually after a checkpoint, rarely while eomlab is starting.
    restarts = int(job_field(cluster, job, "Restarts"))
    assert restarts >= 1 and log.count("requeueing job") == restarts
    assert 1 <= log.count("checkpointed at step") <= restarts
    assert f"restart {restarts}:" in log and "--resume" in log and log.count("resuming at step") >= 1
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete" and "resumed" in f.attrs
        step = f["step"][:]
        np.testing.assert_array_equal(step, np.arange(0, steps + 1, 1000))  # every record once, in order
        assert np.all(np.isfinite(f["observables/eom1/distance_to_gd"][:]))
    rows = catalog(tmp_path / "out")
    assert rows["status"][0] == b"complete"


def test_warning_while_eomlab_starts_requeues_instead_of_failing(cluster, tmp_path):
    """The warning can come before eomlab has installed its handler (SLURM sends it up to a minute
    early); a launcher that takes 4 s to start eomlab makes that moment certain."""
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    launcher = tmp_path / "slow-launcher"
    launcher.write_text('#!/bin/sh\nsleep 4\nexec mpirun -np 1 "$@"\n')
    launcher.chmod(0o755)
    env_args = [f"--export=ALL,EOMLAB_LAUNCHER={launcher}"]
    # With --resume given by the user (as when resubmitting a study), the restart must not add another.
    job = submit(cluster, tmp_path, ["--ntasks=1", *env_args, "-o", tmp_path / "slow-%j.out", SCRIPT, study,
                                     "--resume"])
    warn_when_logged(cluster, job, tmp_path, "slow-*.out", "restart 0:")
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "slow-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    assert "warning arrived while eomlab was starting" in log
    restart_line = next(line for line in log.splitlines() if "restart 1:" in line)
    assert restart_line.split().count("--resume") == 1, restart_line
    assert int(job_field(cluster, job, "Restarts")) == 1
    assert set(catalog(tmp_path / "out")["status"]) == {b"complete"}


def test_a_warned_array_task_requeues_itself_not_the_whole_array(cluster, tmp_path):
    """Found by an adversarial review: the script ran `scontrol requeue $SLURM_JOB_ID`, and in the array task
    whose job id is the array's own, SLURM took that for every task: the sibling, never warned, was killed
    ("DUE TO JOB REQUEUE") and restarted. Here the array's own task is warned; the other runs on untouched."""
    study = tmp_path / "study.ini"
    # 25000 steps (~30 s): the sibling is still running when the warned task requeues, seconds after step 0.
    study.write_text(STUDY.format(output=tmp_path / "out").replace("steps = 40", "steps = 25000")
                     .replace("lr = 0.1, 0.05", "lr = 0.05") + "[output]\ncheckpoint_every = 1000\n")
    array = submit(cluster, tmp_path, ["--array=0-1", "--ntasks=1", "-o", tmp_path / "task-%A_%a.out", SCRIPT, study])
    deadline = time.time() + 120
    while not all("step 0/" in job_log(tmp_path, f"task-{array}_{i}.out") for i in (0, 1)):
        assert time.time() < deadline, job_log(tmp_path, "task-*.out") + cluster.logs()
        time.sleep(0.2)
    ids = {}
    for i in (0, 1):
        ids[i] = job_field(cluster, f"{array}_{i}", "JobId")
    warned = next(i for i in (0, 1) if ids[i] == array)  # the task SLURM gave the array's id
    sibling = 1 - warned
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{array}_{warned}"], env=cluster.env, check=True)
    states = {i: run_requeueing_job(cluster, f"{array}_{i}") for i in (warned, sibling)}
    logs = {i: job_log(tmp_path, f"task-{array}_{i}.out") for i in (0, 1)}
    assert states == {0: "COMPLETED", 1: "COMPLETED"}, str(states) + logs[0] + logs[1] + cluster.logs()
    assert job_field(cluster, f"{array}_{sibling}", "Restarts") == "0", logs[sibling]
    assert "restart 1:" not in logs[sibling] and "requeue" not in logs[sibling].lower(), logs[sibling]
    assert job_field(cluster, f"{array}_{warned}", "Restarts") == "1"
    assert f"requeueing job {array}_{warned} to resume" in logs[warned], logs[warned]
    built = subprocess.run([binary(), "--config", study, "--catalog"], env=cluster.env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert set(catalog(tmp_path / "out")["status"]) == {b"complete"}


def test_a_warning_while_an_overwrite_starts_resumes_and_says_what_to_check(cluster, tmp_path):
    """Found by an adversarial review: a warning that came while eomlab was starting requeued the job, and the
    restart dropped the user's --overwrite, silently keeping the old results as complete. An exit by signal
    does not tell the script whether eomlab had begun (scancel signals the launcher too), so the job still
    resumes (telling a user to resubmit with --overwrite could wipe a day's checkpoints), but the log says
    what to check. (A warning before the launch ends the job with 75 instead: nothing was done.)"""
    study = tmp_path / "study.ini"
    study.write_text(STUDY.format(output=tmp_path / "out"))
    first = subprocess.run([binary(), "--config", str(study)], env=cluster.env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    created = created_times(tmp_path / "out")
    assert len(created) == 4
    launcher = tmp_path / "slow-launcher"
    launcher.write_text('#!/bin/sh\nsleep 4\nexec mpirun -np 1 "$@"\n')
    launcher.chmod(0o755)
    job = submit(cluster, tmp_path, ["--ntasks=1", f"--export=ALL,EOMLAB_LAUNCHER={launcher}",
                                     "-o", tmp_path / "ow-%j.out", SCRIPT, study, "--overwrite"])
    warn_when_logged(cluster, job, tmp_path, "ow-*.out", "restart 0:")
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "ow-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    assert "note: the restart drops --overwrite; if the job was stopped before eomlab began" in log, log
    assert "check the run files' 'created' attributes" in log
    restart_line = next(line for line in log.splitlines() if "restart 1:" in line)
    assert "--resume" in restart_line.split() and "--overwrite" not in restart_line.split(), restart_line
    assert created_times(tmp_path / "out") == created  # what the note is about


def created_times(out):
    times = {}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            times[path.name] = f.attrs["created"]
    return times


def test_job_that_cannot_requeue_fails_with_75_and_resumes_when_resubmitted(cluster, tmp_path):
    study = one_run_study(tmp_path, steps=8000)  # ~10 s: the warning comes at step 0, long before the end
    job = submit(cluster, tmp_path, ["--ntasks=1", "--no-requeue", "-o", tmp_path / "first-%j.out", SCRIPT, study])
    warn_when_logged(cluster, job, tmp_path, "first-*.out", "step 0/")
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "first-*.out")
    assert state == "FAILED" and job_field(cluster, job, "ExitCode") == "75:0", state + log
    assert "checkpointed at step" in log and "did not requeue" in log
    assert any((tmp_path / "out" / "checkpoints").glob("*.h5"))
    # As the log says: the same study again with --resume.
    r = cluster.sbatch(["--ntasks=1", "-o", tmp_path / "second-%j.out", SCRIPT, study, "--resume"], cwd=tmp_path)
    log = job_log(tmp_path, "second-*.out")
    assert r.returncode == 0 and "resuming at step" in log, r.stderr + log
    assert set(catalog(tmp_path / "out")["status"]) == {b"complete"}


def test_srun_launcher_runs_the_study_and_passes_the_warning_on(cluster, tmp_path):
    """EOMLAB_LAUNCHER="srun --mpi=pmix", the usual launcher on a cluster: 2 tasks, one warning, one
    requeue, and the resumed study completes."""
    study = one_run_study(tmp_path, steps=6000, ranks_per_run=2)  # ~15 s; warned at step 0
    job = submit(cluster, tmp_path, ["--ntasks=2", "--export=ALL,EOMLAB_LAUNCHER=srun --mpi=pmix",
                                     "-o", tmp_path / "srun-%j.out", SCRIPT, study])
    warn_when_logged(cluster, job, tmp_path, "srun-*.out", "step 0/")
    state = run_requeueing_job(cluster, job)
    log = job_log(tmp_path, "srun-*.out")
    assert state == "COMPLETED", state + log + cluster.logs()
    assert "srun --mpi=pmix" in log and "checkpointed at step" in log and "resuming at step" in log
    with h5py.File(tmp_path / "out" / "runs" / "lr0.05_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["mpi_world_size"] == "2"
        np.testing.assert_array_equal(f["step"][:], np.arange(0, 6001, 5))
