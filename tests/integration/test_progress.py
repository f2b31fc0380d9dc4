"""Progress on standard output (rank 0 of each rank group only): a run's first and last step, lines every
output.progress_every seconds with an ETA, and after each run its time and the ETA of what is left."""
import re

from conftest import run_eomlab, write_config

STUDY = """
[study]
output = {output}
seed = 1
ranks_per_run = 2
[data]
n_samples = 128
[model]
layers = 8,32,32,4
[optimizer]
lr = 0.1, 0.05, 0.02
steps = {steps}
record_every = 10
[flows]
kinds = gf, eom1
[output]
progress_every = {every}
"""

STEP = re.compile(r"^\[run (?P<run>\d+)/\d+ \S+\] step (?P<step>\d+)/(?P<steps>\d+) \((?P<percent>\d+)%\) "
                  r"elapsed [\d.]+ s(?P<eta>, ETA [\d.]+ s)?$")


def step_lines(stdout):
    return [STEP.match(line) for line in stdout.splitlines() if STEP.match(line)]


def test_every_zero_prints_first_and_last_step_once_and_the_study_eta(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", steps=60, every=0))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = step_lines(proc.stdout)
    # Two ranks, one group: rank 1 prints nothing, so each line appears once.
    assert [(m["run"], m["step"], m["eta"]) for m in lines] == [(r, s, None) for r in "123" for s in ("0", "60")]
    done = [line for line in proc.stdout.splitlines() if "] done in " in line]
    assert len(done) == 3
    assert re.search(r"\] done in [\d.]+ s; 2 runs left, ETA [\d.]+ s$", done[0])
    assert re.search(r"\] done in [\d.]+ s; 1 run left, ETA [\d.]+ s$", done[1])
    assert done[2].endswith("; no runs left")


def test_lines_between_carry_increasing_steps_and_an_eta(tmp_path):
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", steps=600, every=0.002))
    proc = run_eomlab(["--config", config, "--optimizer.lr=0.05"], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = step_lines(proc.stdout)
    steps = [int(m["step"]) for m in lines]
    assert len(steps) > 4 and steps[0] == 0 and steps[-1] == 600
    assert steps == sorted(set(steps))  # increasing: no line twice
    for m in lines[1:-1]:
        assert m["eta"] is not None and abs(int(m["percent"]) - 100 * int(m["step"]) / 600) <= 0.5


WITHIN = re.compile(r"^\[run 1/1 \S+\] step 0/400 \(0%\) elapsed [\d.]+ s, (?:(?P<flow>gf|eom1) at t = (?P<t>[\d.e+-]+) "
                    r"of 20|sharpness)$")


def test_a_long_record_shows_the_flow_it_integrates(tmp_path):
    """An adversarial review: flows that took 765 s within one record printed nothing after 'step 0/1 (0%)'.
    Lines come every progress_every seconds within a record too, naming the flow and its time."""
    text = (STUDY.format(output=tmp_path / "out", steps=400, every=0.001)
            .replace("record_every = 10", "record_every = 400").replace("n_samples = 128", "n_samples = 1024"))
    proc = run_eomlab(["--config", write_config(tmp_path, text), "--optimizer.lr=0.05", "--flows.rtol=1e-12"], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    within = [WITHIN.match(line) for line in proc.stdout.splitlines() if WITHIN.match(line)]
    flows = [m["flow"] for m in within if m["flow"]]
    assert "gf" in flows and "eom1" in flows, proc.stdout
    assert flows == sorted(flows, key=["gf", "eom1"].index)  # gf's record, then eom1's
    for flow in ("gf", "eom1"):
        times = [float(m["t"]) for m in within if m["flow"] == flow]
        assert times == sorted(times) and 0 <= times[0] and times[-1] < 20, times
    assert [int(m["step"]) for m in step_lines(proc.stdout)] == [0, 400]


def test_the_eta_of_a_resumed_study_counts_only_the_runs_it_will_compute(tmp_path):
    """Found in a review: after --resume, "runs left" counted the finished runs it was about to skip."""
    config = write_config(tmp_path, STUDY.format(output=tmp_path / "out", steps=20, every=0))
    assert run_eomlab(["--config", config], np=2).returncode == 0
    (tmp_path / "out" / "runs" / "lr0.1_seed1_wd0.h5").unlink()
    proc = run_eomlab(["--config", config, "--resume"], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = [line for line in proc.stdout.splitlines() if "] done in " in line]
    assert len(done) == 1 and done[0].startswith("[run 1/3 lr0.1_seed1_wd0] ") and done[0].endswith("; no runs left"), done
    assert proc.stdout.count("already complete, skipped") == 2
