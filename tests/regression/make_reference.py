#!/usr/bin/python3
"""Writes the reference data of the regression test (tests/integration/test_regression.py).

    tests/regression/make_reference.py BINARY [--np N] [--allow-dirty]

Runs every study of tests/regression/configs/*.ini with BINARY under `mpirun -np N` (default 2), each
into a temporary directory (`--study.output=...` overrides the config's), and stores its run files as
tests/regression/reference/<study>/runs/<run_id>.h5, plus tests/regression/reference/PROVENANCE naming
the binary's --version line, the date and the commands. sweep.h5, study.ini, checkpoints and lock files
are not kept: the test compares run files only.

The run files are rewritten with `h5repack -l CONTI` (contiguous storage instead of eomlab's 256-record
chunks: about 50 KB a file instead of 1 MB); the script checks that every dataset (bytes, dtype, shape)
and every attribute of the repacked file equals the original's.

Regenerate only when a change of results is intended, with a binary built from a clean checkout of the
commit that makes it, and name that commit in the commit message: the reference is what the test holds
every later binary to.
"""
import hashlib
import argparse
import datetime
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = HERE / "configs"
REFERENCE = HERE / "reference"



def cpu_signature():
    """This machine's CPU as -march=native sees it: the model name and a digest of its feature flags."""
    model, flags = "unknown", ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            if key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    return f"{model}; flags sha1 {hashlib.sha1(flags.encode()).hexdigest()[:12]}"

def mpi_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def study_command(binary, config, output, np_ranks):
    """The command that runs one study; the test runs the same one (conftest.run_eomlab)."""
    return ["mpirun", "-np", str(np_ranks), "--oversubscribe", str(binary), "--config", str(config), f"--study.output={output}"]


def contents(path):
    """Every dataset (dtype, shape, bytes) and every attribute (of the root, groups and datasets) of an HDF5 file."""
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                items[name] = ("dataset", str(obj.dtype), obj.shape, np.asarray(data).tobytes())
            for key, value in obj.attrs.items():
                items[f"{name}@{key}"] = ("attr", repr(value))
        for key, value in f.attrs.items():
            items[f"/@{key}"] = ("attr", repr(value))
        f.visititems(visit)
    return items


def repack(source, target):
    subprocess.run(["h5repack", "-l", "CONTI", str(source), str(target)], check=True)
    a, b = contents(source), contents(target)
    if a != b:
        differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        sys.exit(f"make_reference: h5repack changed {target.name}: {', '.join(differing[:10])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="the eomlab binary whose results become the reference")
    parser.add_argument("--np", type=int, default=2, dest="np_ranks", help="mpirun ranks (default 2, as the test)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="accept a binary built from a checkout with uncommitted changes")
    args = parser.parse_args()

    binary = pathlib.Path(args.binary).resolve()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if "dirty" in version and not args.allow_dirty:
        sys.exit(f"make_reference: {binary} was built from a checkout with uncommitted changes ({version}); "
                 "reference data must come from a commit (or pass --allow-dirty)")
    mpirun_version = subprocess.run(["mpirun", "--version"], capture_output=True, text=True,
                                    env=mpi_env()).stdout.splitlines()[0]
    configs = sorted(CONFIGS.glob("*.ini"))
    if not configs:
        sys.exit(f"make_reference: no study configs in {CONFIGS}")

    staging = pathlib.Path(tempfile.mkdtemp(prefix="reference.", dir=HERE))
    lines = []
    try:
        with tempfile.TemporaryDirectory(prefix="eomlab-reference-") as tmp:
            for config in configs:
                study = config.stem
                output = pathlib.Path(tmp) / study
                command = study_command(binary, config, output, args.np_ranks)
                print(" ".join(command), flush=True)
                done = subprocess.run(command, env=mpi_env(), capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    sys.exit(f"make_reference: study {study} exited {done.returncode}:\n{done.stderr}")
                runs = sorted((output / "runs").glob("*.h5"))
                if not runs:
                    sys.exit(f"make_reference: study {study} wrote no run files")
                (staging / study / "runs").mkdir(parents=True)
                described = []
                for run in runs:
                    with h5py.File(run, "r") as f:
                        status = f.attrs["status"]
                        blas = f.attrs["blas"]
                    if status not in ("complete", "diverged"):
                        sys.exit(f"make_reference: {study}/{run.name} has status {status}")
                    repack(run, staging / study / "runs" / run.name)
                    described.append(f"{run.stem} ({status})")
                shown = " ".join(command).replace(str(tmp), "$TMPDIR").replace(str(REPO) + "/", "")
                lines.append(f"  {shown}\n      runs: {', '.join(described)}")

        relative = os.path.relpath(pathlib.Path(__file__).resolve(), REPO)
        (staging / "PROVENANCE").write_text(
            "Reference data of tests/integration/test_regression.py (issue 12: a refactor changes no result).\n"
            f"binary:   {binary}\n"
            f"version:  {version}\n"
            f"date:     {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
            f"host:     {socket.gethostname()}\n"
            f"mpirun:   {mpirun_version}\n"
            f"blas:     {blas}\n"
            f"cpu:      {cpu_signature()}\n"
            f"command:  {relative} {' '.join(sys.argv[1:])}\n"
            "studies (each run by the command below; run files repacked with `h5repack -l CONTI`, storage\n"
            "layout only: datasets and attributes checked identical to the files eomlab wrote):\n"
            + "\n".join(lines) + "\n")
        if REFERENCE.exists():
            shutil.rmtree(REFERENCE)
        staging.rename(REFERENCE)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    size = sum(p.stat().st_size for p in REFERENCE.rglob("*") if p.is_file())
    print(f"reference written to {REFERENCE} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
