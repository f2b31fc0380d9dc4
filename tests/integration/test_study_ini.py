"""<output>/study.ini under faults (issue 11, items 9 and 10): it is written whole or not at all (a full
disk at start leaves no empty file and the directory stays usable), a damaged one left by an older eomlab
is recovered from the run files on --resume, and a shard's --overwrite never replaces the config of a
study whose other shards have results or are running."""
import shutil
import subprocess

import pytest

from conftest import SMALL_STUDY, eomlab_binary, mpi_env, run_eomlab, wait_for_first_checkpoint, write_config
from test_output_lock import STUDY as SHARDED  # two runs of 20000 steps, checkpoints every 1000


@pytest.fixture(params=[1, 0])
def small_disk(request, tmp_path):
    """A 4 MiB tmpfs with one 4 KiB page free (the lock file fits, study.ini does not) or none."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        (mount / "filler").write_bytes(b"\0" * (4 * 1024 * 1024 - 4096 * request.param))
        yield mount, "study.ini" if request.param else ".eomlab-lock.0-of-1"
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def test_full_disk_at_start_leaves_no_empty_study_ini_and_the_directory_usable(tmp_path, small_disk):
    small_disk, failing = small_disk
    out = small_disk / "out"
    config = write_config(tmp_path, SMALL_STUDY.format(output=out))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("eomlab:")]
    assert len(lines) == 1 and lines[0].startswith("eomlab: study.output: cannot write") and failing in lines[0] \
        and "No space left" in lines[0], proc.stderr
    assert not (out / "study.ini").exists()
    assert not list(out.glob(".study.ini.tmp*"))
    (small_disk / "filler").unlink()
    resumed = run_eomlab(["--config", config, "--resume"], np=1)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (out / "study.ini").read_text().startswith("[study]")


def test_resume_recovers_an_empty_study_ini_from_the_run_files(tmp_path, small_study):
    out = tmp_path / "out"
    assert run_eomlab(["--config", small_study], np=1).returncode == 0
    good = (out / "study.ini").read_text()
    (out / "study.ini").write_text("")  # what an older eomlab left on a full disk
    proc = run_eomlab(["--config", small_study, "--resume"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study.ini' is empty; using the config recorded in" in proc.stderr
    assert "already complete, skipped" in proc.stdout
    assert (out / "study.ini").read_text() == good
    # Cut short, and a changed config: the comparison is with the run files' config, not '(unset)'.
    (out / "study.ini").write_text(good[:40])
    proc = run_eomlab(["--config", small_study, "--resume", "--optimizer.steps=30"], np=1)
    assert proc.returncode == 2 and "cut short" in proc.stderr and "optimizer.steps" in proc.stderr
    assert "(unset)" not in proc.stderr, proc.stderr


def test_the_catalog_of_a_study_with_a_damaged_study_ini_compares_with_the_run_files_and_rewrites_nothing(
        tmp_path, small_study):
    out = tmp_path / "out"
    assert run_eomlab(["--config", small_study], np=1).returncode == 0
    (out / "study.ini").write_text("[study]\nname = sm")  # cut short by an older eomlab
    proc = run_eomlab(["--config", small_study, "--catalog", "--optimizer.steps=30"], np=1)
    assert proc.returncode == 2 and "optimizer.steps" in proc.stderr and "(unset)" not in proc.stderr, proc.stderr
    proc = run_eomlab(["--config", small_study, "--catalog"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study.ini' is cut short; using the config recorded in" in proc.stderr
    assert "rewriting" not in proc.stderr  # the catalog writes sweep.h5 only
    assert (out / "study.ini").read_text() == "[study]\nname = sm"
    # Nor does a dry run (found by a review: it said "and rewriting it" once it checked the output).
    proc = run_eomlab(["--config", small_study, "--dry-run", "--resume"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study.ini' is cut short; using the config recorded in" in proc.stderr and "rewriting" not in proc.stderr
    assert (out / "study.ini").read_text() == "[study]\nname = sm"


def test_a_damaged_study_ini_gives_way_to_the_first_run_file_by_name(tmp_path, small_study):
    """The config that stands in for an empty study.ini is the first readable run file's in name order, as in
    the report (analysis/eomlab_analysis/load.py), not in the file system's directory order."""
    out = tmp_path / "out"
    assert run_eomlab(["--config", small_study], np=1).returncode == 0
    (run,) = (out / "runs").glob("*.h5")
    for i in range(7):
        shutil.copy(run, out / "runs" / f"a{i}.h5")
    (out / "study.ini").write_text("")
    proc = run_eomlab(["--config", small_study, "--catalog"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"is empty; using the config recorded in '{out / 'runs' / 'a0.h5'}'" in proc.stderr, proc.stderr


def test_empty_study_ini_without_results_is_rewritten(tmp_path, small_study):
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.ini").write_text("")
    proc = run_eomlab(["--config", small_study, "--resume"], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "study.ini").read_text().startswith("[study]")


def test_a_directory_named_study_ini_is_refused_before_anything_is_made(tmp_path, small_study):
    """An adversarial review: exit 2 came after runs/, checkpoints/ and the lock file had been made."""
    out = tmp_path / "out"
    (out / "study.ini").mkdir(parents=True)
    for flags in [[], ["--dry-run"]]:
        proc = run_eomlab(["--config", small_study] + flags, np=1)
        assert refused_one_line(proc) == f"eomlab: study.output: cannot write '{out / 'study.ini'}': Is a directory"
        assert sorted(p.name for p in out.iterdir()) == ["study.ini"]


def refused_one_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.startswith("eomlab:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
    return lines[0]


def test_a_shard_overwrite_never_replaces_the_config_of_a_live_or_populated_study(tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, SHARDED.format(output=out))
    first = subprocess.Popen([eomlab_binary(), "--config", str(config), "--shard", "0/2"], env=mpi_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_checkpoint(out, first)
    saved = (out / "study.ini").read_bytes()
    # Shard 1/2 with other keys while shard 0/2 runs: refused, study.ini unchanged.
    line = refused_one_line(run_eomlab(["--config", config, "--shard", "1/2", "--overwrite", "--flows.rtol=1e-8"], np=1))
    assert "--overwrite --shard" in line and "flows.rtol" in line and "pid %d" % first.pid in line, line
    assert (out / "study.ini").read_bytes() == saved
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stdout + stderr
    # Shard 0 has finished, but its results are of the old config: still refused.
    line = refused_one_line(run_eomlab(["--config", config, "--shard", "1/2", "--overwrite", "--flows.rtol=1e-8"], np=1))
    assert "other shards have results" in line and "lr0.05" in line, line
    assert (out / "study.ini").read_bytes() == saved
    # The old config is shard 0's: shard 0 resumes (nothing to do), shard 1 runs, and the whole study
    # may be replaced by an --overwrite without --shard.
    assert run_eomlab(["--config", config, "--shard", "0/2", "--resume"], np=1).returncode == 0
    assert run_eomlab(["--config", config, "--shard", "1/2"], np=1).returncode == 0
    assert run_eomlab(["--config", config, "--overwrite", "--flows.rtol=1e-8", "--optimizer.horizon=200"],
                      np=1).returncode == 0
    assert b"rtol = 1e-08" in (out / "study.ini").read_bytes() or b"rtol = 1e-8" in (out / "study.ini").read_bytes()


def test_disk_full_during_a_run_names_hdf5s_own_reason(tmp_path):
    """A run file outgrowing a 1 MiB disk: HDF5's error stack is read into the message (it named only
    the call and the dataset)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        text = SMALL_STUDY.format(output=mount / "out").replace("layers = 5,8,3", "layers = 16,128,128,4").replace(
            "steps = 20", "steps = 200").replace("record_every = 5", "record_every = 1")
        config = write_config(tmp_path, text)
        proc = run_eomlab(["--config", config])
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "failed on '/trajectories/" in proc.stderr and "HDF5 says: file write failed" in proc.stderr, proc.stderr
    finally:
        subprocess.run(["umount", "-l", str(mount)])


@pytest.mark.parametrize("np_", [None, 2])
def test_a_disk_filling_during_the_run_files_ends_with_exit_1_naming_the_file_and_the_systems_reason(tmp_path, np_):
    """16 KiB free: study.ini and the lock fit, the run files do not. Alone, eomlab crashed in MPI_Finalize
    (exit 139), and the message gave HDF5's 'file write failed' without the system's reason (and, for a
    dataset of the file, without the file)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        (mount / "filler").write_bytes(b"\0" * (5 * 1024 * 1024 - 16 * 1024))
        config = write_config(tmp_path, SMALL_STUDY.format(output=mount / "out"))
        proc = run_eomlab(["--config", config], np=np_)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("eomlab:")]
        assert lines and all(f"'{mount / 'out' / 'runs'}/" in line and (
            line.endswith("; the system says: No space left on device") or "; its file system is full (" in line)
            for line in lines), proc.stderr
        (mount / "filler").unlink()
        resumed = run_eomlab(["--config", config, "--resume"], np=np_)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        subprocess.run(["umount", "-l", str(mount)])
