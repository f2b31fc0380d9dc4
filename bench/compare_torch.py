#!/usr/bin/python3
"""eomlab beside PyTorch (float64) on the same model, data and parameters, timed in the same run.

    bench/compare_torch.py [--build build] [--widths 784,256,256,10] [--samples 1024] [--repeats 10] [--rounds 3]

Writes the data, θ and a direction v in eomlab's input format, runs build/bench/bench_compare under
mpirun with 1 and 2 ranks, then PyTorch with 1 and 2 threads: gradient by autograd, HVP by double
backward, T[v, v] by triple backward, and the eom1 field (g and Hg). Checks that both frameworks give
the same gradient, HVP and T (relative difference), and prints times and ratios (PyTorch / eomlab).
PyTorch (Debian's python3-torch) is a benchmark-only dependency."""
import argparse
import os
import pathlib
import subprocess
import tempfile
import time

import h5py
import numpy as np


def write_inputs(d, widths, samples, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(widths[-1], widths[0]))
    y = np.arange(samples) % widths[-1]
    x = centres[y] + 0.5 * rng.normal(size=(samples, widths[0]))
    parts = []
    for i in range(len(widths) - 1):
        parts.append(rng.normal(size=widths[i + 1] * widths[i]) / np.sqrt(widths[i]))
        parts.append(0.1 * rng.normal(size=widths[i + 1]))
    theta = np.concatenate(parts)
    v = rng.normal(size=theta.size)
    with h5py.File(d / "data.h5", "w") as f:
        f["X"], f["y"] = x, y.astype(np.int64)
    for name, vec in [("theta.h5", theta), ("v.h5", v)]:
        with h5py.File(d / name, "w") as f:
            f["theta"] = vec
    return x, y, theta, v


def run_eomlab(build, d, ranks, repeats, widths):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", EOMLAB_WIDTHS=",".join(map(str, widths)))
    out = subprocess.run(["mpirun", "-np", str(ranks), str(build / "bench" / "bench_compare"), str(d / "data.h5"),
                          str(d / "theta.h5"), str(d / "v.h5"), str(d / f"eomlab{ranks}"), str(repeats)],
                         env=env, capture_output=True, text=True, check=True).stdout
    times = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}
    vectors = {k: np.fromfile(d / f"eomlab{ranks}.{k}.bin") for k in ["grad", "hvp", "t"]}
    return times, vectors


def torch_loss(x, y, widths):
    """The loss of eomlab's MLP (tanh, softmax cross-entropy, flat layout of DESIGN.md §3.3) as a
    function of a flat PyTorch parameter vector."""
    import torch

    X, Y = torch.tensor(x), torch.tensor(y)

    def loss(t):
        a, offset = X, 0
        for i in range(len(widths) - 1):
            n_in, n_out = widths[i], widths[i + 1]
            W = t[offset:offset + n_in * n_out].view(n_out, n_in)
            b = t[offset + n_in * n_out:offset + n_in * n_out + n_out]
            offset += n_in * n_out + n_out
            a = a @ W.T + b
            if i + 2 < len(widths):
                a = torch.tanh(a)
        return torch.nn.functional.cross_entropy(a, Y)

    return loss


def torch_side(x, y, theta, v, widths, threads, repeats):
    import torch

    torch.set_num_threads(threads)
    th = torch.tensor(theta, requires_grad=True)
    V = torch.tensor(v)
    loss = torch_loss(x, y, widths)

    def gradient():
        return torch.autograd.grad(loss(th), th)[0]

    def hvp():
        g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
        return torch.autograd.grad(g @ V, th)[0]

    def third():
        g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
        hv = torch.autograd.grad(g @ V, th, create_graph=True)[0]
        return torch.autograd.grad(hv @ V, th)[0]

    def eom1():
        g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
        hg = torch.autograd.grad(g @ g.detach(), th)[0]
        return -g.detach() - 0.005 * hg

    times, values = {}, {}
    for name, f in [("gradient", gradient), ("hvp", hvp), ("third_order", third), ("field_eom1", eom1)]:
        f()
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = f()
            t.append(time.perf_counter() - t0)
        times[name] = 1e3 * float(np.median(t))
        values[name] = r.detach().numpy()
    return times, values


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"))
    p.add_argument("--widths", default="784,256,256,10")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each setting keeps its fastest")
    args = p.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        x, y, theta, v = write_inputs(d, widths, args.samples)
        # Each round times every setting once, interleaved, so both frameworks see the same machine;
        # a setting's result is its fastest round (each round a median of `repeats`).
        results = {}

        def keep_best(who, times):
            best = results.setdefault(who, dict(times))
            for k, t in times.items():
                best[k] = min(best[k], t)

        for _ in range(args.rounds):
            for ranks in [1, 2]:
                times, vectors = run_eomlab(pathlib.Path(args.build), d, ranks, args.repeats, widths)
                keep_best(f"eomlab, {ranks} rank{'s' if ranks > 1 else ''}", times)
            for threads in [1, 2]:
                times, values = torch_side(x, y, theta, v, widths, threads, args.repeats)
                keep_best(f"PyTorch, {threads} thread{'s' if threads > 1 else ''}", times)
    rel = {k: float(np.linalg.norm(vectors[e] - values[k]) / np.linalg.norm(values[k]))
           for e, k in [("grad", "gradient"), ("hvp", "hvp"), ("t", "third_order")]}
    print(f"MLP {args.widths}, tanh, cross-entropy, {args.samples} samples, float64, P = {theta.size}; "
          f"fastest of {args.rounds} interleaved rounds, each a median of {args.repeats}")
    print("agreement eomlab vs PyTorch (relative): " + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()))
    names = ["gradient", "hvp", "third_order", "field_eom1", "field_eom2", "field_eom3"]
    header = "| | " + " | ".join(names) + " |"
    print(header)
    print("|" + " --- |" * (len(names) + 1))
    for who, t in results.items():
        print(f"| {who} (ms) | " + " | ".join(f"{t[n]:.3g}" if n in t else "—" for n in names) + " |")
    best_e = {n: min(t[n] for w, t in results.items() if w.startswith("eomlab") and n in t) for n in names}
    best_t = {n: min((t[n] for w, t in results.items() if w.startswith("PyTorch") and n in t), default=None) for n in names}
    print("| PyTorch best / eomlab best | " + " | ".join(
        f"{best_t[n] / best_e[n]:.2f}" if best_t[n] else "—" for n in names) + " |")
    print("| eomlab best, in gradients | " + " | ".join(f"{best_e[n] / best_e['gradient']:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
