"""The dependency rules of DESIGN.md §2.1, read from the sources: heavy dependencies stay behind small
interfaces, and the numerics build and test without MPI, HDF5 or Boost."""
import re
import pytest

from conftest import REPO

SOURCES = sorted(p for p in (REPO / "src").rglob("*") if p.suffix in {".hpp", ".cpp", ".h", ".in"})
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def includes(quoted_only=False):
    """(module, file, included path) for every #include under src/ (only "..." ones: project headers)."""
    for path in SOURCES:
        module = path.relative_to(REPO / "src").parts[0]
        for delimiter, target in INCLUDE.findall(path.read_text()):
            if delimiter == '"' or not quoted_only:
                yield module, path.relative_to(REPO), target


def offenders(allowed_module, pattern):
    return [(str(f), t) for m, f, t in includes() if re.fullmatch(pattern, t) and m != allowed_module]


def test_only_dist_includes_mpi():
    assert offenders("dist", r"mpi\.h|mpi") == []


def test_only_io_includes_hdf5():
    assert offenders("io", r"hdf5\.h|H5.*\.h|highfive/.*") == []


def test_only_cli_includes_program_options():
    assert offenders("cli", r"boost/program_options.*") == []


def test_numerics_depend_on_core_and_eigen_only():
    numerics = {"core", "model", "data", "diff", "flow"}
    ours = [(m, str(f), t) for m, f, t in includes(quoted_only=True) if m in numerics]
    assert [(f, t) for m, f, t in ours if t.split("/")[0] not in numerics] == []
    assert [(f, t) for m, f, t in ours if m == "core" and t.split("/")[0] != "core"] == []  # core needs nothing of ours
    third_party = re.compile(r"mpi\.h|hdf5\.h|H5.*|boost/.*|gtest/.*|benchmark/.*")
    assert [(str(f), t) for m, f, t in includes() if m in numerics and third_party.fullmatch(t)] == []


def test_only_model_knows_the_mlp():
    """DESIGN.md §2.6: outside src/model the code sees Model only. The identifier Mlp (Mlp, MlpObjective,
    ...) and an include of model/mlp.hpp appear nowhere else under src/, comments included."""
    mlp = re.compile(r"Mlp|mlp\.hpp")
    found = [(str(p.relative_to(REPO)), n, line.strip())
             for p in SOURCES if p.relative_to(REPO / "src").parts[0] != "model"
             for n, line in enumerate(p.read_text().splitlines(), 1) if mlp.search(line)]
    assert found == []


def test_only_the_method_knows_gd():
    """DESIGN.md §2.6: GD is one method among others. The name "gd" appears as a string only in its own
    file, its registration line and the default of optimizer.method (the config's and the command line's)."""
    allowed = {"src/flow/gd.cpp", "src/flow/registrations.cpp", "src/core/config.hpp", "src/cli/options.cpp"}
    found = [(str(p.relative_to(REPO)), n, line.strip())
             for p in SOURCES if str(p.relative_to(REPO)) not in allowed
             for n, line in enumerate(p.read_text().splitlines(), 1) if '"gd"' in line]
    assert found == []
    defaults = [line for p in allowed - {"src/flow/gd.cpp", "src/flow/registrations.cpp"}
                for line in (REPO / p).read_text().splitlines() if '"gd"' in line]
    assert len(defaults) == 2 and all("method" in line for line in defaults), defaults


def test_the_rules_see_the_sources():
    """The checks above read real files: the includes they must allow are found."""
    found = {t for _, _, t in includes()}
    assert {"mpi.h", "hdf5.h", "boost/program_options.hpp"} <= found, found


def test_the_shipped_design_reference_is_the_teams():
    """docs/DESIGN.md is the design reference the README cites, shipped with the code; where the team's
    copy sits beside the repository (../shared/DESIGN.md, not on a fresh clone) the two must be equal."""
    shipped, shared = REPO / "docs" / "DESIGN.md", REPO.parent / "shared" / "DESIGN.md"
    assert "## 3." in shipped.read_text()
    if not shared.exists():
        pytest.skip(f"{shared} is not beside this clone")
    assert shipped.read_text() == shared.read_text(), "copy ../shared/DESIGN.md to docs/DESIGN.md"
