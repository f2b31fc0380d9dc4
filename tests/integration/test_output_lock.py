"""Two invocations on one output directory (issue: a resubmitted job beside its requeued copy): one that
would compute a run another live eomlab is computing is refused with exit 2 and one line, and changes
none of the files that were there; shards with disjoint runs run side by side; a killed holder leaves no stale lock."""
import signal
import subprocess

import h5py
import pytest

from conftest import eomlab_binary, mpi_env, run_eomlab, wait_for_first_checkpoint, write_config

STUDY = """
[study]
output = {output}
seed = 1
[data]
n_samples = 256
[model]
layers = 8,32,32,4
[optimizer]
lr = 0.05, 0.1
horizon = 2000
record_every = 100
[flows]
kinds = gf
[output]
checkpoint_every = 1000
"""


def start(config, *extra):
    proc = subprocess.Popen([eomlab_binary(), "--config", str(config), *extra], env=mpi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_checkpoint(config.parent / "out", proc)
    return proc


def files_beside_the_runs(out):
    """study.ini and the locks: what a refused invocation could write while the runs are being written."""
    return {p: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_second_invocation_on_runs_in_progress_is_refused(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    first = start(config)
    before = files_beside_the_runs(tmp_path / "out")
    # A dry run refuses as the run would (a new user's review: it printed the grid and exited 0).
    for extra in (["--resume"], ["--overwrite"], ["--resume", "--shard", "0/2"], ["--resume", "--dry-run"]):
        second = run_eomlab(["--config", config, *extra], np=2 if extra == ["--resume"] else None)
        lines = [line for line in second.stderr.splitlines() if line.startswith("eomlab:")]
        assert second.returncode == 2 and len(lines) == 1, second.stdout + second.stderr
        assert "is in use by eomlab (pid %d" % first.pid in lines[0] and str(tmp_path / "out") in lines[0]
        assert second.stdout == ""
    # study.ini and the holder's lock are as they were (a refused other shard leaves its own lock file,
    # unheld).
    after = files_beside_the_runs(tmp_path / "out")
    assert {p: after.get(p) for p in before} == before
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    for path in (tmp_path / "out" / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            assert f.attrs["status"] == "complete" and f["time"][-1] == 2000


def test_shards_with_disjoint_runs_run_side_by_side(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    first = start(config, "--shard", "0/2")  # lr 0.05: 40000 steps
    # The whole study shares run 0 with shard 0/2: refused while that runs.
    whole = run_eomlab(["--config", config, "--resume"])
    assert whole.returncode == 2 and "shard 0/2" in whole.stderr, whole.stderr
    dry = run_eomlab(["--config", config, "--shard", "1/2", "--dry-run"])
    assert dry.returncode == 0 and "lr0.1_seed1_wd0" in dry.stdout, dry.stdout + dry.stderr
    second = run_eomlab(["--config", config, "--shard", "1/2"])  # lr 0.1: 20000 steps
    assert second.returncode == 0, second.stdout + second.stderr
    assert first.poll() is None  # side by side
    assert first.wait(timeout=300) == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"))
    first = start(config)
    first.send_signal(signal.SIGKILL)
    first.wait()
    resumed = run_eomlab(["--config", config, "--resume"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step" in resumed.stdout


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_two_shards_of_different_configs_started_together_never_share_a_new_directory(tmp_path, overwrite):
    """Each shard found no study.ini and wrote its own: both were accepted in 1 of 1 to 1 of 5 tries, a
    directory holding runs of two configs. The first study.ini written stands; the other shard is refused
    (with --overwrite too, which array jobs pass)."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out").replace("horizon = 2000", "horizon = 20"))
    for attempt in range(8):
        out = tmp_path / "out"
        subprocess.run(["rm", "-rf", str(out)])
        shards = [subprocess.Popen([eomlab_binary(), "--config", str(config), "--shard", f"{i}/2", *overwrite, *extra],
                                   env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for i, extra in enumerate([[], ["--data.noise=0.6"]])]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in shards]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        refused = next(err for code, err in results if code == 2)
        assert refused.startswith("eomlab: ") and "another config (data.noise was" in refused, refused
        saved = (out / "study.ini").read_text()
        for run in (out / "runs").glob("*.h5"):
            with h5py.File(run, "r") as f:
                assert f.attrs["config"] == saved, (attempt, run)


def test_a_new_study_on_a_file_system_without_hard_links_is_written(tmp_path):
    """study.ini of a new directory is linked into place; where link() is not permitted (vfat, some FUSE
    mounts: here a preloaded link() that fails with EPERM) it is renamed as before, not refused."""
    shim = tmp_path / "nolink.c"
    shim.write_text("#include <errno.h>\nint link(const char* a, const char* b) { (void)a; (void)b; errno = EPERM; return -1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "nolink.so"), str(shim)], check=True)
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out").replace("horizon = 2000", "horizon = 20"))
    proc = subprocess.run([eomlab_binary(), "--config", str(config)], capture_output=True, text=True,
                          env=dict(mpi_env(), LD_PRELOAD=str(tmp_path / "nolink.so")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "study.ini").read_text().startswith("[study]")


def test_a_shard_of_a_grown_grid_is_refused_beside_an_old_shard_computing_one_of_its_runs(tmp_path):
    """An adversarial review: shard 1/2 of seeds 1,2,3 running, shard 0/2 of seeds 1,2,3,4 (--resume adds
    seed 4) was not refused, since under the grown grid the old shard's runs have other indices: both
    computed lr0.05_seed1 at once, and a stop of the old one left it 'interrupted' at step 0 with its
    result lost. Locks now list their runs by id."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out").replace("seed = 1", "seed = 1, 2, 3"))
    first = start(config, "--shard", "1/2")  # every other run of the 6: lr0.05_seed2, lr0.1_seed1, lr0.1_seed3
    with open(tmp_path / "out" / ".eomlab-lock.1-of-2") as f:
        assert f.read().split("\n")[1:] == ["lr0.05_seed2_wd0", "lr0.1_seed1_wd0", "lr0.1_seed3_wd0", ""]
    before = files_beside_the_runs(tmp_path / "out")
    grown = run_eomlab(["--config", config, "--shard", "0/2", "--resume", "--study.seed=1,2,3,4"])
    assert grown.returncode == 2 and "is in use by eomlab (pid %d" % first.pid in grown.stderr, grown.stderr
    after = files_beside_the_runs(tmp_path / "out")
    assert {p: after.get(p) for p in before} == before  # study.ini not grown
    # shard 3/4 of the grown grid, lr0.05_seed4 and lr0.1_seed4, shares none (by index it was shard 1/2's)
    disjoint = run_eomlab(["--config", config, "--shard", "3/4", "--resume", "--study.seed=1,2,3,4", "--dry-run"])
    assert disjoint.returncode == 0, disjoint.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
