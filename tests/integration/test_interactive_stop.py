"""Interactive stops (issue 11, item 8): a user's `kill` (SIGTERM) or a terminal's Ctrl-C (SIGINT).

Open MPI's mpirun takes SIGTERM and SIGINT itself: it kills the ranks one second later and exits 1, so
a GD step longer than that was lost with everything since the last checkpoint. scripts/eomlab-mpirun
turns them into SIGUSR1 for the ranks: eomlab finishes its GD step, checkpoints and exits 75. Here the
GD steps take about 2 s (P = 1.86e6, 4096 samples, one rank), longer than mpirun's grace second."""
import signal
import subprocess
import time

import h5py
import pytest

from conftest import REPO, SMALL_STUDY, datasets, eomlab_binary, mpi_env, run_eomlab, start_study, write_config

SLOW_STUDY = """
[study]
name = slow
output = {output}
seed = 1
[data]
source = gaussian_mixture
n_samples = 4096
[model]
layers = 784,1024,1024,10
[optimizer]
lr = 0.01
steps = 1000
record_every = 1000
[flows]
kinds = gf
[output]
sharpness = off
theta = none
"""


def start_slow_study(tmp_path):
    """Starts the slow study under scripts/eomlab-mpirun and returns once GD is stepping."""
    config = write_config(tmp_path, SLOW_STUDY.format(output=tmp_path / "out"))
    proc = subprocess.Popen([str(REPO / "scripts" / "eomlab-mpirun"), "-np", "1", eomlab_binary(), "--config", str(config)],
                            env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "step 0/1000" in line:  # record 0 is written: GD steps from here on
            break
    else:
        raise AssertionError(f"the study did not start: {proc.communicate()}")
    time.sleep(3)
    return proc


def checkpointed_step(proc, out):
    """The step eomlab checkpointed at, after checking the exit code, the checkpoint and the run's status;
    and the launcher's stderr."""
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, (rest, err)
    assert "Interrupted by a stop signal" in rest
    assert (out / "checkpoints" / "lr0.01_seed1_wd0.h5").exists()
    with h5py.File(out / "runs" / "lr0.01_seed1_wd0.h5", "r") as f:
        assert f.attrs["status"] == "interrupted"
    line = next(l for l in rest.splitlines() if "checkpointed at step" in l)
    # The summary's values are the last record's, which it names (it read as if they were the checkpoint's).
    with h5py.File(out / "runs" / "lr0.01_seed1_wd0.h5", "r") as f:
        assert f"(the values of its last record, step {f['step'][-1]})" in rest, rest
    return int(line.rsplit(" ", 1)[1]), err


def test_sigterm_to_the_launcher_checkpoints_a_long_step_and_exits_75(tmp_path):
    proc = start_slow_study(tmp_path)
    proc.send_signal(signal.SIGTERM)
    step, err = checkpointed_step(proc, tmp_path / "out")
    assert step >= 1 and "stopping" in err


def test_two_ctrl_c_50_ms_apart_still_checkpoint(tmp_path):
    """Ctrl-C twice: the second is reported and ignored, the step in progress is checkpointed."""
    proc = start_slow_study(tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    step, err = checkpointed_step(proc, tmp_path / "out")
    assert step >= 1 and "already stopping" in err


def start_without_mpirun(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)):
    """eomlab alone on a long study of two runs, returned once its first run is under way (SIGHUP at its
    default, were pytest run under nohup, unless preexec_fn says otherwise)."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("steps = 20", "steps = 2000000").replace(
        "record_every = 5", "record_every = 1000").replace("lr = 0.1", "lr = 0.1, 0.05")
    proc = subprocess.Popen([eomlab_binary(), "--config", str(write_config(tmp_path, text))], env=mpi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    deadline = time.time() + 60
    while not any((tmp_path / "out" / "runs").glob("*.h5")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    return proc


# SIGHUP: a closed terminal or ssh session (found by a review: it killed eomlab between checkpoints)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_to_eomlab_without_mpirun_checkpoints_and_exits_75(tmp_path, stop):
    proc = start_without_mpirun(tmp_path)
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "checkpointed at step" in out
    # The summary names the run the stop came before as not started (it said "unreadable: H5Fopen failed").
    assert "lr0.05_seed1_wd0            missing (not started)" in out and "unreadable" not in out, out



def test_a_hangup_that_nohup_ignores_stays_ignored(tmp_path):
    proc = start_without_mpirun(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert proc.poll() is None  # still stepping
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75 and "checkpointed at step" in out, err


LONG_RECORD = """
[study]
name = long_record
output = {output}
seed = 1
ranks_per_run = 2
[data]
n_samples = 512
[model]
layers = 256,128,128,10
[optimizer]
lr = 0.1
steps = 20
record_every = 20
[flows]
kinds = gf, eom1, eom2
[output]
sharpness = off
"""


def test_a_stop_inside_a_long_record_checkpoints_the_integrators_and_resumes_identically(tmp_path):
    """With one record at the end of 20 GD steps the flows integrate for seconds inside that record.
    A stop there used to wait for the whole record (here: the run then completed, exit 0); now the
    integrators stop between two of their steps, the checkpoint holds them mid-way, and the resumed run
    is bitwise the uninterrupted one."""
    assert run_eomlab(["--config", write_config(tmp_path, LONG_RECORD.format(output=tmp_path / "ref"), "ref.ini")],
                      np=2).returncode == 0
    config = write_config(tmp_path, LONG_RECORD.format(output=tmp_path / "out"))
    proc = start_study(config)
    for line in proc.stdout:
        if "step 0/20" in line:
            break
    time.sleep(1.5)  # GD's 20 steps take a few ms; the flows' integration about 8 s
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "checkpointed at step 20" in out
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step 20" in resumed.stdout
    assert datasets(tmp_path / "out") == datasets(tmp_path / "ref")


def test_a_stop_while_mpirun_starts_exits_75_saying_nothing_was_computed(tmp_path):
    """A Ctrl-C in the first moments, before mpirun or eomlab can take signals, kills them by the
    forwarded USR1: the launcher says so and exits 75 like any other stop (nothing was lost)."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("steps = 20", "steps = 2000000").replace(
        "record_every = 5", "record_every = 1000")
    config = write_config(tmp_path, text)
    proc = subprocess.Popen([str(REPO / "scripts" / "eomlab-mpirun"), "-np", "1", eomlab_binary(), "--config", str(config)],
                            env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "stopped while mpirun was starting" in err or "Interrupted by a stop signal" in out, out + err


def test_sigterm_while_mpi_starts_up_exits_75(tmp_path):
    """eomlab takes stop signals before MPI's start-up (about 0.3 s as a singleton), not after it: a SIGTERM
    at 0.15 s ended the process with 143 (killed) instead of the 75 a requeue waits for."""
    text = SMALL_STUDY.format(output=tmp_path / "out").replace("steps = 20", "steps = 2000000").replace(
        "record_every = 5", "record_every = 1000")
    proc = subprocess.Popen([eomlab_binary(), "--config", str(write_config(tmp_path, text))], env=mpi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, out + err


def test_a_reader_of_the_progress_lines_that_goes_away_does_not_end_the_study(tmp_path):
    """Found by a review: `eomlab --config study.ini | head -1` killed eomlab by SIGPIPE at its next line,
    between checkpoints, and a closed `less` would too. The lines are lost; the study goes on and completes."""
    config = write_config(tmp_path, SMALL_STUDY.format(output=tmp_path / "out").replace("seed = 1", "seed = 1,2,3,4")
                          .replace("steps = 20", "steps = 400"))
    proc = subprocess.run(["bash", "-c", f'"{eomlab_binary()}" --config "{config}" | head -1; echo "${{PIPESTATUS[0]}}"'],
                          env=mpi_env(), capture_output=True, text=True, timeout=300)
    first, status = proc.stdout.splitlines()
    assert first.startswith("eomlab ") and status == "0", proc
    runs = sorted((tmp_path / "out" / "runs").glob("*.h5"))
    assert len(runs) == 4
    for path in runs:
        with h5py.File(path, "r") as f:
            assert f.attrs["status"] == "complete", path.name
