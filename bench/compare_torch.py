#!/usr/bin/python3
"""eomlab beside PyTorch (float64) on the same model, data and parameters, timed in the same run.

    bench/compare_torch.py [--build build] [--widths 784,256,256,10] [--samples 1024] [--repeats 10] [--rounds 3]
    bench/compare_torch.py --architecture "conv(4,3,pad=1), tanh, avgpool(2), flatten, dense(3)" --shape 1,8,8
                           [--loss cross_entropy|mse] [--agreement-only] [--inputs-only DIR] ...

Writes the data, θ and a direction v in eomlab's input format, runs build/bench/bench_compare under
mpirun with 1 and 2 ranks, then PyTorch with 1 and 2 threads: gradient by autograd, HVP by double
backward, T[v, v] by triple backward, and the eom1 field (g and Hg). Checks that both frameworks give
the same gradient, HVP and T (relative difference), and prints times and ratios (PyTorch / eomlab).
Without --architecture the network is the tanh MLP of --widths under cross-entropy. The PyTorch loss is a
function of the flat θ in eomlab's layout (DESIGN.md §3.6) built from torch.nn.functional and elementary
operations; batchnorm is written out (PyTorch 1.13's batch_norm has a wrong third derivative).
PyTorch (Debian's python3-torch) is a benchmark-only dependency."""
import argparse
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ACTIVATIONS = ("tanh", "softplus", "gelu", "relu", "silu")


def split_top(text):
    """The pieces of `text` between the commas outside parentheses, stripped."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def parse_layer(text):
    """'conv(4, 3, pad=1)' -> ('conv', ['4', '3'], {'pad': '1'}); residual's arguments stay layer texts."""
    if "(" not in text:
        return text, [], {}
    name, inner = text[:text.index("(")].strip(), text[text.index("(") + 1:text.rindex(")")]
    args, kwargs = [], {}
    for piece in split_top(inner):
        if name != "residual" and "=" in piece:
            key, value = piece.split("=", 1)
            kwargs[key.strip()] = value.strip()
        else:
            args.append(piece)
    return name, args, kwargs


class Layer:
    """One layer of the grammar for samples of `shape`: its parameter tensors (name, size, fan_in) in
    layout order, its output shape, and `apply(a, params)` on a batch a [N, *shape]."""

    def __init__(self, text, shape):
        self.name, args, kw = parse_layer(text)
        self.shape, self.params, self.inner = tuple(shape), [], []
        getattr(self, "_" + (self.name if self.name not in ACTIVATIONS else "elementwise"))(args, kw)

    def _dense(self, args, kw):
        (n_in,), n_out = self.shape, int(args[0])
        self.weightnorm = kw.get("weightnorm", "off") == "on"
        self.params = [("W", n_out * n_in, n_in), ("b", n_out, 0)]
        self.out = (n_out,)

    def _conv(self, args, kw):
        c, h, w = self.shape
        self.n_out, self.k = int(args[0]), int(args[1])
        self.stride, self.pad = int(kw.get("stride", 1)), int(kw.get("pad", 0))
        self.params = [("W", self.n_out * c * self.k * self.k, c * self.k * self.k), ("b", self.n_out, 0)]
        size = lambda n: (n + 2 * self.pad - self.k) // self.stride + 1
        self.out = (self.n_out, size(h), size(w))

    def _avgpool(self, args, kw):
        c, h, w = self.shape
        self.k = int(args[0])
        self.out = (c, h // self.k, w // self.k)

    _maxpool = _avgpool

    def _globalavgpool(self, args, kw):
        self.out = self.shape[:1]

    def _flatten(self, args, kw):
        self.out = (int(np.prod(self.shape)),)

    def _batchnorm(self, args, kw):
        self.eps = float(kw.get("eps", 0.0))
        if kw.get("affine", "on") == "on":
            self.params = [("gamma", self.shape[0], 0), ("beta", self.shape[0], 0)]
        self.out = self.shape

    def _layernorm(self, args, kw):
        self.out = self.shape

    def _elementwise(self, args, kw):
        self.out = self.shape

    def _residual(self, args, kw):
        self.inner = Network(", ".join(args), self.shape)
        self.params = self.inner.params
        assert self.inner.out == self.shape, f"residual({', '.join(args)}) changes the shape"
        self.out = self.shape

    def apply(self, a, t):
        import torch
        import torch.nn.functional as F

        n = self.name
        if n == "dense":
            W, b = t[:self.params[0][1]].view(self.out[0], -1), t[self.params[0][1]:]
            if self.weightnorm:  # each row w used as w / ‖w‖
                W = W / torch.sqrt((W * W).sum(1, keepdim=True))
            return a @ W.T + b
        if n == "conv":
            W = t[:self.params[0][1]].view(self.n_out, self.shape[0], self.k, self.k)
            return F.conv2d(a, W, t[self.params[0][1]:], stride=self.stride, padding=self.pad)
        if n == "avgpool":
            return F.avg_pool2d(a, self.k)
        if n == "maxpool":
            # torch's max_pool2d: the derivatives of a tied window go to its first maximum, as in eomlab
            # (amax would split them among the ties).
            return F.max_pool2d(a, self.k)
        if n == "globalavgpool":
            return a.mean((2, 3))
        if n == "flatten":
            return a.reshape(a.shape[0], -1)
        if n == "batchnorm":
            return self._batch_norm(a, t)
        if n == "layernorm":
            dims = tuple(range(1, a.dim()))
            centred = a - a.mean(dims, keepdim=True)
            return centred / torch.sqrt((centred * centred).mean(dims, keepdim=True))
        if n == "residual":
            return a + self.inner.apply(a, t)
        return elementwise(n, a)

    def _batch_norm(self, a, t):
        import torch

        dims = (0,) + tuple(range(2, a.dim()))
        centred = a - a.mean(dims, keepdim=True)
        y = centred / torch.sqrt((centred * centred).mean(dims, keepdim=True) + self.eps)
        if not self.params:
            return y
        per_channel = (1, -1) + (1,) * (a.dim() - 2)
        c = self.shape[0]
        return y * t[:c].view(per_channel) + t[c:].view(per_channel)


def elementwise(name, a):
    """The activations from elementary operations, whose derivatives PyTorch knows to every order."""
    import torch

    if name == "tanh":
        return torch.tanh(a)
    if name == "softplus":
        return torch.log1p(torch.exp(a))
    if name == "gelu":
        return 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))
    if name == "relu":
        return a * (a > 0)
    if name == "silu":
        return a / (1 + torch.exp(-a))
    raise ValueError(f"unknown layer '{name}'")


class Network:
    """The layers of an architecture text for samples of `shape`, with eomlab's flat θ layout."""

    def __init__(self, architecture, shape):
        self.text, self.layers, self.shape = architecture, [], tuple(shape)
        for text in split_top(architecture):
            self.layers.append(Layer(text, shape))
            shape = self.layers[-1].out
        self.out = tuple(shape)
        self.params = [p for layer in self.layers for p in layer.params]
        self.n_params = sum(size for _, size, _ in self.params)

    def apply(self, a, t):
        offset = 0
        for layer in self.layers:
            size = sum(s for _, s, _ in layer.params)
            a = layer.apply(a, t[offset:offset + size])
            offset += size
        return a

    def initial_parameters(self, rng):
        """DESIGN.md §3.6's init, with γ and β moved off 1 and 0 so that the affine maps are exercised."""
        init = {"W": lambda n, fan: rng.normal(size=n) / np.sqrt(fan), "b": lambda n, fan: 0.1 * rng.normal(size=n),
                "gamma": lambda n, fan: 1 + 0.1 * rng.normal(size=n), "beta": lambda n, fan: 0.1 * rng.normal(size=n)}
        return np.concatenate([init[name](size, fan) for name, size, fan in self.params])

    def loss(self, x, y, kind):
        """The mean loss over the samples as a function of the flat θ: softmax cross-entropy of the
        logits, or ½‖z − onehot(y)‖² for mse."""
        import torch
        import torch.nn.functional as F

        X, Y = torch.tensor(x), torch.tensor(y)
        targets = F.one_hot(Y, self.out[0]).double()
        if kind == "cross_entropy":
            return lambda t: F.cross_entropy(self.apply(X, t), Y)
        return lambda t: 0.5 * ((self.apply(X, t) - targets) ** 2).sum() / X.shape[0]


def mlp_architecture(widths):
    layers = [f"dense({w})" for w in widths[1:]]
    return ", ".join(sum(([layer, "tanh"] for layer in layers[:-1]), []) + layers[-1:])


def write_inputs(d, net, samples, seed=0):
    """Data around one random centre per class, labels 0..k-1 in turn, θ and v; returns them."""
    rng = np.random.default_rng(seed)
    classes = net.out[0]
    centres = rng.normal(size=(classes,) + net.shape)
    y = np.arange(samples) % classes
    x = centres[y] + 0.5 * rng.normal(size=(samples,) + net.shape)
    theta = net.initial_parameters(rng)
    v = rng.normal(size=theta.size)
    with h5py.File(d / "data.h5", "w") as f:
        f["X"], f["y"] = x, y.astype(np.int64)
    for name, vec in [("theta.h5", theta), ("v.h5", v)]:
        with h5py.File(d / name, "w") as f:
            f["theta"] = vec
    return x, y, theta, v


def run_eomlab(binary, d, ranks, repeats, model_env):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", **model_env)
    out = subprocess.run(["mpirun", "-np", str(ranks), str(binary), str(d / "data.h5"),
                          str(d / "theta.h5"), str(d / "v.h5"), str(d / f"eomlab{ranks}"), str(repeats)],
                         env=env, capture_output=True, text=True, check=True).stdout
    times = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if len(line.split()) == 2}
    vectors = {k: np.fromfile(d / f"eomlab{ranks}.{k}.bin") for k in ["grad", "hvp", "t"]}
    return times, vectors


def model_environment(args):
    if args.architecture:
        return {"EOMLAB_ARCHITECTURE": args.architecture, "EOMLAB_LOSS": args.loss}
    return {"EOMLAB_WIDTHS": args.widths}


def torch_derivatives(loss, theta, v):
    """g, Hv and T[v, v] by PyTorch autograd (single, double and triple backward)."""
    import torch

    th, V = torch.tensor(theta, requires_grad=True), torch.tensor(v)
    g = torch.autograd.grad(loss(th), th, create_graph=True)[0]
    hv = torch.autograd.grad(g @ V, th, create_graph=True)[0]
    t = torch.autograd.grad(hv @ V, th)[0]
    return {"grad": g.detach().numpy(), "hvp": hv.detach().numpy(), "t": t.numpy()}


def relative_differences(eomlab_vectors, torch_vectors):
    return {k: float(np.linalg.norm(eomlab_vectors[k] - torch_vectors[k]) / np.linalg.norm(torch_vectors[k]))
            for k in ["grad", "hvp", "t"]}


def agreement(binary, net, loss, samples, ranks, seed=0):
    """Relative differences eomlab vs PyTorch of g, Hv and T[v, v] for one network on `ranks` ranks."""
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        x, y, theta, v = write_inputs(d, net, samples, seed)
        model_env = {"EOMLAB_ARCHITECTURE": net.text, "EOMLAB_LOSS": loss}
        _, vectors = run_eomlab(binary, d, ranks, 1, model_env)
    return relative_differences(vectors, torch_derivatives(net.loss(x, y, loss), theta, v))


def torch_side(loss, theta, v, threads, repeats):
    import torch

    torch.set_num_threads(threads)
    th = torch.tensor(theta, requires_grad=True)
    V = torch.tensor(v)

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


def parse_arguments():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"))
    p.add_argument("--widths", default="784,256,256,10", help="the tanh MLP, when no --architecture is given")
    p.add_argument("--architecture", default="", help="DESIGN.md §3.6 text, e.g. 'conv(4,3,pad=1), tanh, ...'")
    p.add_argument("--shape", default="", help="C,H,W (or d) of a sample; default: the MLP's first width")
    p.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"])
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each setting keeps its fastest")
    p.add_argument("--agreement-only", action="store_true", help="print the agreement on 1 and 2 ranks, no timing")
    p.add_argument("--inputs-only", metavar="DIR", default="",
                   help="write the data, θ and v into DIR, print the bench_compare command and stop (no PyTorch)")
    args = p.parse_args()
    if not args.architecture:
        args.loss, widths = "cross_entropy", args.widths.split(",")
        args.architecture_for_torch, args.shape = mlp_architecture([int(w) for w in widths]), widths[0]
    else:
        args.architecture_for_torch = args.architecture
    return args


def print_agreement(vectors_by_ranks, expected):
    for ranks, vectors in vectors_by_ranks.items():
        rel = relative_differences(vectors, expected)
        print(f"agreement eomlab ({ranks} rank{'s' if ranks > 1 else ''}) vs PyTorch (relative): "
              + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()))


def print_table(results):
    names = ["gradient", "hvp", "third_order", "field_eom1", "field_eom2", "field_eom3"]
    print("| | " + " | ".join(names) + " |")
    print("|" + " --- |" * (len(names) + 1))
    for who, t in results.items():
        print(f"| {who} (ms) | " + " | ".join(f"{t[n]:.3g}" if n in t else "—" for n in names) + " |")
    best_e = {n: min(t[n] for w, t in results.items() if w.startswith("eomlab") and n in t) for n in names}
    best_t = {n: min((t[n] for w, t in results.items() if w.startswith("PyTorch") and n in t), default=None) for n in names}
    print("| PyTorch best / eomlab best | " + " | ".join(
        f"{best_t[n] / best_e[n]:.2f}" if best_t[n] else "—" for n in names) + " |")
    print("| eomlab best, in gradients | " + " | ".join(f"{best_e[n] / best_e['gradient']:.2f}" for n in names) + " |")


def main():
    args = parse_arguments()
    net = Network(args.architecture_for_torch, [int(n) for n in args.shape.split(",")])
    binary = pathlib.Path(args.build) / "bench" / "bench_compare"
    if args.inputs_only:
        d = pathlib.Path(args.inputs_only)
        d.mkdir(parents=True, exist_ok=True)
        theta = write_inputs(d, net, args.samples)[2]
        variables = " ".join(f"{k}='{v}'" for k, v in model_environment(args).items())
        print(f"P = {theta.size}; time eomlab's side on R ranks with\n  {variables} mpirun -np R {binary} "
              f"{d / 'data.h5'} {d / 'theta.h5'} {d / 'v.h5'} {d / 'eomlab'} {args.repeats}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        x, y, theta, v = write_inputs(d, net, args.samples)
        loss = net.loss(x, y, args.loss)
        # Each round times every setting once, interleaved, so both frameworks see the same machine;
        # a setting's result is its fastest round (each round a median of `repeats`).
        results, vectors_by_ranks = {}, {}

        def keep_best(who, times):
            print(f"{who}: " + ", ".join(f"{k} {t:.3g} ms" for k, t in times.items()), file=sys.stderr, flush=True)
            best = results.setdefault(who, dict(times))
            for k, t in times.items():
                best[k] = min(best[k], t)

        for _ in range(1 if args.agreement_only else args.rounds):
            for ranks in [1, 2]:
                times, vectors_by_ranks[ranks] = run_eomlab(binary, d, ranks, 1 if args.agreement_only else args.repeats,
                                                            model_environment(args))
                keep_best(f"eomlab, {ranks} rank{'s' if ranks > 1 else ''}", times)
            for threads in [] if args.agreement_only else [1, 2]:
                keep_best(f"PyTorch, {threads} thread{'s' if threads > 1 else ''}",
                          torch_side(loss, theta, v, threads, args.repeats)[0])
    print(f"{args.architecture_for_torch} on {args.shape}, {args.loss}, {args.samples} samples, float64, "
          f"P = {theta.size}" + ("" if args.agreement_only else
                                 f"; fastest of {args.rounds} interleaved rounds, each a median of {args.repeats}"))
    print_agreement(vectors_by_ranks, torch_derivatives(loss, theta, v))
    if not args.agreement_only:
        print_table(results)


if __name__ == "__main__":
    main()
