"""--help, --version, --print-config, --dry-run and overrides of the real binary."""
import h5py
import numpy as np
import pytest

from conftest import run_eomlab, write_config


def test_help_lists_every_config_key(small_study):
    proc = run_eomlab(["--help"])
    assert proc.returncode == 0
    for key in ["--config", "--print-config", "--dry-run", "--overwrite", "optimizer.lr", "flows.kinds",
                "model.activation", "study.ranks_per_run", "output.theta"]:
        assert key in proc.stdout


def test_version():
    proc = run_eomlab(["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("eomlab ")


def test_print_config_round_trips_and_shows_overrides(tmp_path, small_study):
    proc = run_eomlab(["--config", small_study, "--print-config", "--optimizer.lr=0.3,0.2"])
    assert proc.returncode == 0
    assert "[optimizer]" in proc.stdout and "lr = 0.3,0.2" in proc.stdout
    assert "rtol = 1e-10" in proc.stdout  # defaults are included
    again = run_eomlab(["--config", write_config(tmp_path, proc.stdout, "printed.ini"), "--print-config"])
    assert again.returncode == 0 and again.stdout == proc.stdout
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_grid_and_rank_layout_without_computing(tmp_path, small_study):
    proc = run_eomlab(["--config", small_study, "--dry-run", "--optimizer.lr=0.1,0.05", "--study.seed=1,2"], np=2)
    assert proc.returncode == 0, proc.stderr
    assert "4 runs on 2 ranks, 2 group(s) of 1" in proc.stdout
    for run_id in ["lr0.1_seed1_wd0", "lr0.1_seed2_wd0", "lr0.05_seed1_wd0", "lr0.05_seed2_wd0"]:
        assert run_id in proc.stdout
    assert not (tmp_path / "out").exists()


def test_dry_run_table_keeps_long_run_ids_apart_from_the_next_column(tmp_path, small_study):
    """Found by a review: the dry run's table had a fixed 28-character run_id column, so a heavy ball id of 35
    characters ran into the lr column ("heavy_ball_lr0.0005_seed1_wd00.0005")."""
    proc = run_eomlab(["--config", small_study, "--dry-run", "--optimizer.method=heavy_ball",
                       "--optimizer.lr=0.0005", "--model.weight_decay=0.0005"])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "heavy_ball_lr" in line)
    assert row.split()[1:4] == ["heavy_ball_lr0.0005_seed1_wd0.0005", "0.0005", "1"], row


@pytest.mark.parametrize("bad", ["init_without_theta", "init_of_wrong_length", "output_path_too_long"])
def test_dry_run_refuses_what_the_run_refuses_with_the_same_line(tmp_path, small_study, bad):
    """A model.init file the run refuses (no /theta, a wrong length) and an output path too long for MPI-IO
    passed --dry-run with exit 0."""
    init = tmp_path / "init.h5"
    with h5py.File(init, "w") as f:
        if bad == "init_of_wrong_length":
            f["theta"] = np.zeros(7)
    extra = ([f"--model.init=hdf5:{init}"] if bad.startswith("init") else
             [f"--study.output={tmp_path / ('o' * (240 - len(str(tmp_path))))}"])
    dry = run_eomlab(["--config", small_study, "--dry-run", *extra])
    run = run_eomlab(["--config", small_study, *extra])
    assert dry.returncode == run.returncode == 2, dry.stdout + dry.stderr + run.stderr
    assert dry.stdout == "" and dry.stderr == run.stderr and dry.stderr.count("\n") == 1, dry.stderr
    assert dry.stderr.startswith("eomlab: model.init" if bad.startswith("init") else "eomlab: study.output: "), dry.stderr


@pytest.mark.parametrize("bad", ["output_under_a_file", "output_holds_results", "output_of_another_config"])
def test_dry_run_checks_the_output_directory_as_the_run_does(tmp_path, small_study, bad):
    """Found by an adversarial review: --dry-run passed an output directory the run refuses (under a file, on a
    read-only file system, holding results without --resume or --overwrite), though the README says a dry run
    refuses with the run's own line what the run would refuse."""
    extra = []
    if bad == "output_under_a_file":
        (tmp_path / "file").write_text("")
        extra = [f"--study.output={tmp_path / 'file' / 'out'}"]
    else:
        first = run_eomlab(["--config", small_study])
        assert first.returncode == 0, first.stderr
        if bad == "output_of_another_config":
            extra = ["--optimizer.steps=7"]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    dry = run_eomlab(["--config", small_study, "--dry-run", *extra])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing made or changed
    run = run_eomlab(["--config", small_study, *extra])
    assert dry.returncode == run.returncode == 2, dry.stdout + dry.stderr + run.stderr
    assert dry.stdout == "" and dry.stderr == run.stderr and dry.stderr.count("\n") == 1, dry.stderr
    expected = {"output_under_a_file": f"eomlab: study.output: cannot create directory '{tmp_path / 'file' / 'out' / 'runs'}': "
                                       "Not a directory",
                "output_holds_results": "eomlab: study.output: '", "output_of_another_config": "eomlab: study.output: '"}
    assert dry.stderr.startswith(expected[bad]), dry.stderr
    assert bad != "output_holds_results" or "already holds results" in dry.stderr
    assert bad != "output_of_another_config" or "holds a study with another config" in dry.stderr
    # With --resume the dry run of the same study passes, as the run would.
    if bad == "output_holds_results":
        assert run_eomlab(["--config", small_study, "--dry-run", "--resume"]).returncode == 0


@pytest.mark.parametrize("flags, message", [
    (["--catalog", "--shard", "1/2"], "--catalog lists every run of the study and changes none: expected no --shard, got it"),
    (["--catalog", "--overwrite"], "--catalog lists every run of the study and changes none: expected no --overwrite, got it"),
    (["--catalog", "--resume"], "--catalog lists every run of the study and changes none: expected no --resume, got it"),
    (["--dry-run", "--catalog"], "expected at most one of --print-config, --dry-run and --catalog, got --dry-run and --catalog"),
    (["--print-config", "--dry-run"], "expected at most one of --print-config, --dry-run and --catalog, got --print-config and --dry-run")])
def test_contradictory_flags_are_refused_not_dropped(tmp_path, small_study, flags, message):
    """Found by an adversarial review: --catalog --shard 1/2 (or --overwrite, --resume) was accepted and the
    extra flag silently dropped; of --dry-run and --catalog one won without a word."""
    proc = run_eomlab(["--config", small_study, *flags])
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr == f"eomlab: command line: {message}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--overw", "--res", "--optimizer.l=0.3", "--dry"])
def test_an_abbreviated_flag_or_key_is_refused_not_guessed(tmp_path, small_study, flag):
    """Found by an adversarial review: Boost guessed unique prefixes, so --overw ran as --overwrite (and the
    SLURM job script, which matches whole flags, kept it beside --resume on a restart) and --optimizer.l=0.3
    set optimizer.lr."""
    proc = run_eomlab(["--config", small_study, flag])
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr == f"eomlab: command line: unknown option '{flag}' (see eomlab --help)\n"
    assert not (tmp_path / "out").exists()


def test_a_data_source_on_the_command_line_replaces_the_keys_of_the_files_source(tmp_path, small_study):
    """data.n_samples with an hdf5 file and data.noise / data.seed with any file are refused (the file's
    data is its own); given on the command line, a data source replaces the file's keys it does not read,
    as --optimizer.steps replaces the file's horizon (the small study's n_samples = 64 made
    --data.source=hdf5:... impossible without editing the file)."""
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = np.random.default_rng(0).normal(size=(24, 5)), np.arange(24) % 3
    config = small_study.read_text().replace("n_samples = 64", "n_samples = 64\nnoise = 0.3\nseed = 4")
    small_study.write_text(config)
    proc = run_eomlab(["--config", small_study, f"--data.source=hdf5:{tmp_path / 'data.h5'}", "--print-config"])
    assert proc.returncode == 0, proc.stderr
    data = proc.stdout.split("[data]")[1].split("[model]")[0]
    assert not any(key in data for key in ("n_samples", "noise", "seed")), data  # keys the file's data does not read
    proc = run_eomlab(["--config", small_study, f"--data.source=hdf5:{tmp_path / 'data.h5'}", "--data.n_samples=10"])
    assert proc.returncode == 2 and "data.n_samples: expected a key of a synthetic or image source" in proc.stderr
    proc = run_eomlab(["--config", small_study, f"--data.source=hdf5:{tmp_path / 'data.h5'}"])
    assert proc.returncode == 0, proc.stderr


def test_dry_run_refusing_a_data_file_prints_only_the_one_line(tmp_path, small_study):
    proc = run_eomlab(["--config", small_study, "--dry-run", f"--data.source=hdf5:{tmp_path / 'missing.h5'}"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("eomlab: data.source: ")
