"""Publication figures of analysis/report (issue 15): every (seed, weight decay) group of a sweep gets its
own figures, each in PNG, PDF and SVG, all named in report.md; legends of the crowded plots sit beside
the axes (no data under them); a diverged run is left out of the figures and listed."""
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import run_eomlab, write_config  # noqa: E402

SWEEP = """
[study]
name = groups
output = {output}
seed = 1, 2
[data]
n_samples = 48
[model]
layers = 4,8,3
normalize = layer
weight_decay = 0, 0.01
[optimizer]
lr = 0.1, 0.05{extra_lr}
steps = 8
record_every = 2
divergence_factor = 10
[flows]
kinds = gf, eom1
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("groups")
    config = write_config(tmp, SWEEP.format(output=tmp / "out", extra_lr=", 40"))  # lr 40 diverges
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # its 4 groups' figures drawn by 4 processes
    subprocess.run([sys.executable, REPO / "analysis" / "report", tmp / "out", "--jobs", "4"], check=True, capture_output=True)
    return tmp / "out" / "report"


def test_every_group_has_its_figures_in_every_format(report):
    md = (report / "report.md").read_text()
    for seed in [1, 2]:
        for wd in ["0", "0.01"]:
            for stem in ["distance_vs_time", "orders", "loss", "sharpness"]:
                name = f"{stem}_seed{seed}_wd{wd}"
                for ext in ["png", "pdf", "svg"]:
                    path = report / f"{name}.{ext}"
                    assert path.exists() and path.stat().st_size > 1000, path
                assert f"]({name}.png)" in md, name
            assert f"(seed {seed}, weight decay {wd})" in md
    for seed in [1, 2]:  # the translation component where there is weight decay
        assert (report / f"translation_seed{seed}_wd0.01.pdf").exists()
        assert (report / f"translation_rates_seed{seed}_wd0.01.svg").exists()  # the paper's table as a plot
        for wd in ["0", "0.01"]:  # layer normalization: scale-invariant blocks
            assert (report / f"scale_invariant_seed{seed}_wd{wd}.pdf").exists()
    assert not any((report / f"translation_seed{seed}_wd0.{ext}").exists() for seed in [1, 2] for ext in ["png", "pdf"])
    assert (report / "orders_seed1_wd0.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (report / "orders_seed1_wd0.svg").read_bytes()[:500]


def test_legends_sit_beside_the_axes(report):
    svg = (report / "orders_seed1_wd0.svg").read_text()
    # The axes end well before the figure's right edge: the legend has its own room.
    width = float(re.search(r'<svg[^>]* width="([0-9.]+)pt"', svg)[1])
    assert width > 500


def test_gaps_are_in_scientific_notation(report):
    with open(report / "translation.csv") as f:
        header, *rows = [line.strip().split(",") for line in f]
    gaps = [i for i, h in enumerate(header) if "_minus_" in h]
    assert gaps
    for row in rows:
        for i in gaps:
            assert re.fullmatch(r"-?\d\.\d{5}e[+-]\d\d|nan", row[i]), (header[i], row[i])


def test_a_diverged_run_is_left_out_and_listed(report):
    md = (report / "report.md").read_text()
    assert "lr40\\_seed1\\_wd0: status **diverged**" in md, md  # listed (Markdown-escaped)
    with open(report / "orders.csv") as f:
        rows = f.read()
    assert "lr 40.0: status diverged" in rows  # left out of the fits, with the reason


def test_the_figures_do_not_depend_on_the_number_of_processes_drawing_them(report, tmp_path):
    """The groups' figures are drawn by several processes (--jobs; by default as many as the CPUs, at most
    8): the report's files are byte for byte those of one process, PDF and SVG included (they carried their
    creation time, and SVG random ids)."""
    one = tmp_path / "one"
    subprocess.run([sys.executable, REPO / "analysis" / "report", report.parent, "--out", one, "--jobs", "1"],
                   check=True, capture_output=True)
    names = sorted(p.name for p in one.iterdir())
    assert sum(name.endswith((".pdf", ".svg")) for name in names) >= 32, names
    assert names == sorted(p.name for p in report.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (report / name).read_bytes(), name


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_a_bad_number_of_jobs_is_refused_naming_the_option(tmp_path, jobs):
    proc = subprocess.run([sys.executable, REPO / "analysis" / "report", tmp_path, "--jobs", jobs],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert f"argument --jobs: expected a whole number of processes >= 1, got '{jobs}'" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "report").exists()
