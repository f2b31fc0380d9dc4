#!/usr/bin/python3
"""Peak memory per rank of one run with P ≈ 1e6 parameters, on 1 and 2 ranks per run: the real eomlab
under mpirun, GD beside gf, eom1 and eom2 by default (each flow has its own DOP853, 16 stage and 7 dense-output
vectors, all sliced over the run's ranks). Reads `peak_rank_memory_bytes` (max over the run's ranks)
from the run file and prints it beside what the vectors alone need.

    bench/memory.py [--build build] [--layers 784,1024,256,10] [--samples 1024] [--ranks 1,2] [--flows gf,eom1,eom2] [--sharpness on,off]
"""
import argparse
import os
import pathlib
import subprocess
import tempfile

import h5py

MIB = 1024.0 * 1024.0


def n_params(layers):
    return sum(layers[i] * layers[i + 1] + layers[i + 1] for i in range(len(layers) - 1))


def config_text(layers, samples, ranks, flows, output, sharpness="on"):
    return f"""[study]
name = memory
output = {output}
seed = 1
ranks_per_run = {ranks}

[data]
source = gaussian_mixture
n_samples = {samples}

[model]
layers = {",".join(map(str, layers))}
activation = tanh
loss = cross_entropy

[optimizer]
lr = 0.01
steps = 2

[flows]
kinds = {", ".join(flows)}
rtol = 1e-6
atol = 1e-8

[output]
theta = none
sharpness = {sharpness}
"""


def run(build, layers, samples, ranks, flows, sharpness, d):
    out = d / f"r{ranks}_{sharpness}"
    ini = d / f"r{ranks}_{sharpness}.ini"
    ini.write_text(config_text(layers, samples, ranks, flows, out, sharpness))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    subprocess.run(["mpirun", "-np", str(ranks), str(build / "src" / "eomlab"), "--config", str(ini)],
                   env=env, check=True, capture_output=True, text=True)
    (run_file,) = (out / "runs").glob("*.h5")
    with h5py.File(run_file) as f:
        return int(f.attrs["peak_rank_memory_bytes"]), str(f.attrs["status"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"))
    p.add_argument("--layers", default="784,1024,256,10")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--flows", default="gf,eom1,eom2")
    p.add_argument("--sharpness", default="on,off", help="output.sharpness values to run")
    args = p.parse_args()
    layers = [int(w) for w in args.layers.split(",")]
    P = n_params(layers)
    vector = 8.0 * P / MIB
    flows = args.flows.split(",")
    print(f"MLP {args.layers}, P = {P}, {args.samples} samples, flows {', '.join(flows)}; one vector of length P = "
          f"{vector:.1f} MiB")
    print("| ranks per run | sharpness | peak memory per rank (MiB) | integrator vectors per rank (MiB) | status |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for sharpness in args.sharpness.split(","):
            for ranks in [int(r) for r in args.ranks.split(",")]:
                peak, status = run(pathlib.Path(args.build), layers, args.samples, ranks, flows, sharpness,
                                   pathlib.Path(tmp))
                # Each flow's DOP853 holds 16 stages, 7 dense-output vectors and 6 more (y, y_old, y_new,
                # stage, two error estimates), all slices of length P / ranks.
                sliced = len(flows) * 29 * vector / ranks
                print(f"| {ranks} | {sharpness} | {peak / MIB:.1f} | {sliced:.1f} | {status} |")


if __name__ == "__main__":
    main()
