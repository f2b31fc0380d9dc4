#!/usr/bin/python3
"""Field evaluations against accuracy: eomlab's DOP853 beside SciPy's DOP853 (solve_ivp), integrating
the eom2 flow of the same small network (16-64-64-4, tanh, 256 samples, same parameters) over a fixed
horizon, each at tolerances 1e-4 .. 1e-12 (atol = rtol/100). The error of each final state is measured
against a much tighter run (eomlab at rtol 1e-13, cross-checked with SciPy at 1e-13).

    bench/integrator_efficiency.py [--build build] [--plot FILE.png]

SciPy's eom2 field is built with PyTorch autograd (g, Hg, H²g, T[g,g]); both are benchmark-only here."""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compare_torch import torch_loss, write_inputs  # noqa: E402

WIDTHS = [16, 64, 64, 4]
LR, HORIZON, ORDER = 0.1, 2.0, 2
RTOLS = [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12]


def eomlab_runs(build, d, rtols):
    env = dict(os.environ, EOMLAB_WIDTHS=",".join(map(str, WIDTHS)))
    out = subprocess.run([str(build / "bench" / "bench_integrator"), str(d / "data.h5"), str(d / "theta.h5"), str(ORDER),
                          str(LR), str(HORIZON), str(d / "eomlab"), *map(str, rtols)],
                         env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    evals = [int(line.split()[1]) for line in out if line.strip()]
    states = [np.fromfile(d / f"eomlab.{i}.bin") for i in range(len(rtols))]
    return evals, states


def scipy_runs(x, y, theta, rtols):
    import torch
    from scipy.integrate import solve_ivp

    torch.set_num_threads(1)
    loss = torch_loss(x, y, WIDTHS)

    def field(_, th_np):
        th = torch.tensor(th_np, requires_grad=True)
        g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
        gd = g.detach()
        hg = torch.autograd.grad(g @ gd, th, create_graph=True)[0]
        hgd = hg.detach()
        h2g = torch.autograd.grad(g @ hgd, th, retain_graph=True)[0]
        tgg = torch.autograd.grad(hg @ gd, th)[0]  # d/dθ (gᵀ H g) at fixed g = T[g, g]
        f = -gd - LR / 2 * hgd - LR ** 2 * (h2g / 3 + tgg / 12)
        return f.numpy()

    evals, states = [], []
    for rtol in rtols:
        sol = solve_ivp(field, (0.0, HORIZON), theta, method="DOP853", rtol=rtol, atol=rtol * 1e-2)
        evals.append(sol.nfev)
        states.append(sol.y[:, -1])
    return evals, states


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"))
    p.add_argument("--plot", help="write the evaluations-versus-error curve to this PNG")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        x, y, theta, _ = write_inputs(d, WIDTHS, 256)
        e_evals, e_states = eomlab_runs(pathlib.Path(args.build), d, RTOLS + [1e-13])
        s_evals, s_states = scipy_runs(x, y, theta, RTOLS + [1e-13])
    ref = e_states[-1]
    err = lambda s: float(np.linalg.norm(s - ref) / np.linalg.norm(ref))  # noqa: E731
    print(f"eom2 flow, MLP {WIDTHS}, lr {LR}, horizon {HORIZON}; reference: eomlab at rtol 1e-13 "
          f"(SciPy at 1e-13 differs from it by {err(s_states[-1]):.1e})")
    print("| rtol | eomlab evaluations | eomlab error | SciPy DOP853 evaluations | SciPy error |")
    print("| --- | --- | --- | --- | --- |")
    for i, rtol in enumerate(RTOLS):
        print(f"| {rtol:.0e} | {e_evals[i]} | {err(e_states[i]):.2e} | {s_evals[i]} | {err(s_states[i]):.2e} |")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.2, 4))
        ax.loglog([err(s) for s in e_states[:-1]], e_evals[:-1], "o-", label="eomlab DOP853")
        ax.loglog([err(s) for s in s_states[:-1]], s_evals[:-1], "s--", label="SciPy DOP853")
        ax.set_xlabel("relative error of θ(T) against a tight run")
        ax.set_ylabel("field evaluations")
        ax.set_title(f"eom2 over t in [0, {HORIZON:g}]: work against accuracy", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
