#!/usr/bin/python3
"""The Python module's cost over C++ (issue 15), measured side by side in one run:
  - one HVP on the small network 16-64-64-4 x 256 through eomlab.Objective.hvp against the same HVP in
    C++ (build/bench/bench_derivatives, hvp/small): the overhead of the binding;
  - one HVP on the reference network 784-256-256-10 x 1024 through Python against PyTorch float64's
    double backward (when torch is installed).
Usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--build build] [--repeats N]"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np


def alternating(f, theta, v):
    """f.hvp at two points in turn: every call is at a fresh point (no forward pass to reuse), as the
    C++ benchmark's and PyTorch's."""
    points, k = [theta, theta + 1e-3], [0]

    def call():
        k[0] ^= 1
        return f.hvp(points[k[0]], v)
    return call


def best_seconds(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def problem(widths, samples, seed=0):
    import eomlab
    rng = np.random.default_rng(seed)
    model = eomlab.Model(layers=list(widths), activation="tanh")
    x = rng.normal(size=(samples, widths[0]))
    y = np.arange(samples) % widths[-1]
    return model, eomlab.Objective(model, x, y), model.initial_parameters(1), rng.normal(size=model.n_params), x, y


def cxx_seconds(build, name, repeats):
    out = subprocess.run([str(build / "bench" / "bench_derivatives"), f"--benchmark_filter=^{name}$",
                          f"--benchmark_repetitions={repeats}", "--benchmark_format=json"],
                         capture_output=True, text=True, check=True).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    return min(b["real_time"] * scale[b["time_unit"]] for b in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1] / "build")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    _, f, theta, v, _, _ = problem((16, 64, 64, 4), 256)
    python_small = best_seconds(alternating(f, theta, v), args.repeats * 10)
    cxx_small = cxx_seconds(args.build, "hvp/small", 5)
    print(f"small 16-64-64-4 x 256, one HVP: Python {python_small * 1e6:.0f} µs, C++ {cxx_small * 1e6:.0f} µs, "
          f"overhead {100 * (python_small / cxx_small - 1):+.1f}%")

    model, f, theta, v, x, y = problem((784, 256, 256, 10), 1024)
    python_ref = best_seconds(alternating(f, theta, v), max(3, args.repeats // 4))
    line = f"reference 784-256-256-10 x 1024, one HVP: eomlab from Python {python_ref * 1e3:.1f} ms"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print(line + " (torch not installed)")
        return 0
    torch.set_num_threads(1)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import compare_torch
    net = compare_torch.Network(compare_torch.mlp_architecture([784, 256, 256, 10]), (784,))
    loss = net.loss(x, y, "cross_entropy")
    th, V = torch.tensor(theta, requires_grad=True), torch.tensor(v)

    def torch_hvp():
        g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
        return torch.autograd.grad(g @ V, th)[0]

    torch_ref = best_seconds(torch_hvp, max(3, args.repeats // 4))
    print(line + f", PyTorch double backward {torch_ref * 1e3:.1f} ms (1 thread each): {torch_ref / python_ref:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
