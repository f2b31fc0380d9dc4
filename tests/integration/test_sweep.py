"""Distribution and sweeps (issue 4): ranks own slices of θ and shards of the data; results do not
depend on the number of ranks per run beyond rounding; sweeps are dealt to groups and catalogued."""
import h5py
import numpy as np
import pytest

from conftest import SMALL_STUDY, run_eomlab, write_config

TRAJ = ["gd", "gf", "eom1"]

# A study whose parameter count (5·8+8 + 8·3+3 = 75) does not divide by 2 or 3: uneven slices.
STUDY = SMALL_STUDY.replace("n_samples = 64", "n_samples = 61")


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def run_study(tmp_path, name, np_, text):
    config = write_config(tmp_path, text.format(output=tmp_path / name), f"{name}.ini")
    proc = run_eomlab(["--config", config], np=np_)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / name


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_per_run_give_the_same_trajectories(tmp_path, ranks):
    one = datasets(run_study(tmp_path, "r1", 1, STUDY) / "runs" / "lr0.1_seed1_wd0.h5")
    text = STUDY.replace("ranks_per_run = 1", f"ranks_per_run = {ranks}")
    many = datasets(run_study(tmp_path, f"r{ranks}", ranks, text) / "runs" / "lr0.1_seed1_wd0.h5")
    assert one.keys() == many.keys()
    for key in one:
        if one[key].dtype.names:  # tables
            assert one[key].tobytes() == many[key].tobytes(), key
        else:
            np.testing.assert_allclose(many[key], one[key], rtol=1e-11, atol=1e-13, err_msg=key)
    with h5py.File(tmp_path / f"r{ranks}" / "runs" / "lr0.1_seed1_wd0.h5", "r") as f:
        assert f.attrs["ranks_per_run"] == ranks


@pytest.mark.parametrize("ranks", [1, 2])
def test_same_run_twice_gives_bitwise_identical_data(tmp_path, ranks):
    text = STUDY.replace("ranks_per_run = 1", f"ranks_per_run = {ranks}")
    a = datasets(run_study(tmp_path, "a", ranks, text) / "runs" / "lr0.1_seed1_wd0.h5")
    b = datasets(run_study(tmp_path, "b", ranks, text) / "runs" / "lr0.1_seed1_wd0.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key


SWEEP = STUDY.replace("lr = 0.1", "lr = 0.1, 0.05").replace("seed = 1", "seed = 1, 2")


def read_catalog(out):
    with h5py.File(out / "sweep.h5", "r") as f:
        summary = f["summary"][:]
        linked = {name: f["runs"][name].attrs["status"] for name in f["runs"]}
    return summary, linked


def test_sweep_on_two_ranks_and_on_four_ranks_in_pairs(tmp_path):
    single = run_study(tmp_path, "single", 2, SWEEP)
    pairs = run_study(tmp_path, "pairs", 4, SWEEP.replace("ranks_per_run = 1", "ranks_per_run = 2"))
    expected = {"lr0.1_seed1_wd0", "lr0.1_seed2_wd0", "lr0.05_seed1_wd0", "lr0.05_seed2_wd0"}
    for out in [single, pairs]:
        assert {p.stem for p in (out / "runs").glob("*.h5")} == expected
        summary, linked = read_catalog(out)
        assert len(summary) == 4
        assert {r.decode() for r in summary["run_id"]} == expected
        assert set(summary["status"]) == {b"complete"}
        assert linked == {name: "complete" for name in expected}  # external links resolve
        assert np.all(summary["final_distance_eom1"] < summary["final_distance_gf"])
    for name in expected:
        a = datasets(single / "runs" / f"{name}.h5")
        b = datasets(pairs / "runs" / f"{name}.h5")
        for key in a:
            if not a[key].dtype.names:
                np.testing.assert_allclose(b[key], a[key], rtol=1e-11, atol=1e-13, err_msg=f"{name}:{key}")
    s1, _ = read_catalog(single)
    s2, _ = read_catalog(pairs)
    for field in ["final_loss_gd", "final_distance_gf", "final_distance_eom1"]:
        np.testing.assert_allclose(np.sort(s2[field]), np.sort(s1[field]), rtol=1e-11)


def test_same_seed_same_start_whatever_the_lr_and_seeds_differ(tmp_path):
    out = run_study(tmp_path, "out", 2, SWEEP)
    start = {}
    for path in (out / "runs").glob("*.h5"):
        with h5py.File(path, "r") as f:
            start[(float(f.attrs["lr"]), int(f.attrs["seed"]))] = f["/trajectories/gd/theta"][0]
    np.testing.assert_array_equal(start[(0.1, 1)], start[(0.05, 1)])
    np.testing.assert_array_equal(start[(0.1, 2)], start[(0.05, 2)])
    assert not np.allclose(start[(0.1, 1)], start[(0.1, 2)])


def test_diverged_run_in_the_catalog(tmp_path):
    text = STUDY.replace("lr = 0.1", "lr = 0.1, 5").replace("activation = tanh", "activation = relu\nloss = mse")
    text = text.replace("kinds = gf, eom1", "kinds = gf, eom1\nmax_steps = 2000")
    out = run_study(tmp_path, "out", 2, text)
    summary, _ = read_catalog(out)
    status = {float(r["lr"]): r["status"].decode() for r in summary}
    assert status == {0.1: "complete", 5.0: "diverged"}


def test_dry_run_shows_groups_of_ranks(tmp_path):
    config = write_config(tmp_path, SWEEP.format(output=tmp_path / "out").replace("ranks_per_run = 1", "ranks_per_run = 2"))
    proc = run_eomlab(["--config", config, "--dry-run"], np=4)
    assert proc.returncode == 0, proc.stderr
    assert "4 runs on 4 ranks, 2 group(s) of 2" in proc.stdout
    assert "0-1" in proc.stdout and "2-3" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_the_catalog_keeps_the_longest_run_ids_whole(tmp_path):
    """Run ids of a method with lrs and weight decays in 15–17 digits and a 19-digit seed (73 characters)
    stay whole and distinct in /summary (its column held 63 characters and merged them)."""
    text = (STUDY.replace("lr = 0.1", "lr = 0.012345678901234, 0.012345678901235\nmethod = heavy_ball")
                 .replace("seed = 1", "seed = 9223372036854775807")
                 .replace("activation = tanh", "activation = tanh\nweight_decay = 0.0123456789012341, 0.0123456789012342")
                 .replace("steps = 20", "steps = 5"))
    out = run_study(tmp_path, "long", 2, text)
    summary, _ = read_catalog(out)
    ids = {r.decode() for r in summary["run_id"]}
    assert ids == {p.stem for p in (out / "runs").glob("*.h5")} and len(ids) == 4
    assert "heavy_ball_lr0.012345678901235_seed9223372036854775807_wd0.0123456789012342" in ids


def test_the_catalog_refuses_a_config_other_than_the_studys(tmp_path):
    """--catalog with other overrides than the study's (an array's extra keys left out) listed a 20-step run as
    complete under a 40-step config and dropped seeds 2 and 3 without a word, over a good sweep.h5."""
    text = STUDY.replace("seed = 1", "seed = 1, 2, 3")
    out = run_study(tmp_path, "out", 2, text)
    config = tmp_path / "out.ini"
    good = (out / "sweep.h5").read_bytes()
    for extra, key in [(["--optimizer.steps=40"], "optimizer.steps"), (["--study.seed=1"], "study.seed")]:
        proc = run_eomlab(["--config", config, "--catalog", *extra], np=2)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("eomlab")]  # not mpirun's notice
        assert len(lines) == 1 and lines[0].startswith("eomlab: --catalog: the config differs from the study in "), lines
        assert key in lines[0] and "study.ini" in lines[0], lines
        assert (out / "sweep.h5").read_bytes() == good
    # Without study.ini (removed), the run files' own configs refuse it.
    (out / "study.ini").unlink()
    proc = run_eomlab(["--config", config, "--catalog", "--optimizer.steps=40"], np=1)
    assert proc.returncode == 2 and "--catalog: run file" in proc.stderr and "optimizer.steps" in proc.stderr, proc.stderr
    assert (out / "sweep.h5").read_bytes() == good
    # The study's own config rebuilds it, listing all three runs.
    proc = run_eomlab(["--config", config, "--catalog"], np=2)
    assert proc.returncode == 0, proc.stderr
    summary, _ = read_catalog(out)
    assert sorted(int(r["seed"]) for r in summary) == [1, 2, 3]
    assert {r["status"].decode() for r in summary} == {"complete"}


@pytest.mark.parametrize("where", ["no_such_directory", "empty_directory"])
def test_the_catalog_of_a_directory_without_a_study_is_refused(tmp_path, where):
    """Found by an adversarial review: --catalog on a mistyped study.output failed in H5Fcreate with an HDF5
    error stack (exit 1) where the directory did not exist, and wrote a sweep.h5 of 'missing' runs (exit 0)
    into an existing directory holding no study."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out"), "s.ini")
    target = tmp_path / "typo"
    if where == "empty_directory":
        target.mkdir()
    proc = run_eomlab(["--config", config, "--catalog", f"--study.output={target}"], np=2)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("eomlab")]
    reason = "no such directory" if where == "no_such_directory" else "neither study.ini nor runs/"
    assert lines == [f"eomlab: --catalog: no study in '{target}' ({reason}): expected the output directory of a "
                     "study (study.output)"], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ini"] + (["typo"] if where == "empty_directory" else [])
    assert where == "no_such_directory" or list(target.iterdir()) == []
