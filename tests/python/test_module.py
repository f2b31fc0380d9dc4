"""The Python module (issue 15, DESIGN.md §3.9) in a fresh interpreter: g, Hv, T and the flow fields of gd
and heavy ball against PyTorch float64 autograd (where torch is installed) and against central finite
differences of the module's own value and gradient (always); bad arguments raise ValueError with the
command line's message; run() of a study given as a dict writes the run files."""
import os
import pathlib
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EOMLAB_PYTHON_DIR") or REPO / "build" / "python")
BINARY = os.environ.get("EOMLAB_BINARY") or str(REPO / "build" / "src" / "eomlab")
sys.path.insert(0, str(BUILD))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "analysis"))
eomlab = pytest.importorskip("eomlab", reason=f"the module is not built in {BUILD}")
import compare_torch  # noqa: E402
import sgd_orders  # noqa: E402

NETWORKS = {
    "mlp": ("dense(7), tanh, dense(6), softplus, dense(3)", (5,)),
    "cnn": ("conv(3,3,pad=1), tanh, avgpool(2), flatten, dense(3)", (2, 6, 6)),
}
LR = 0.05


def problem(name, loss="cross_entropy", samples=20, seed=1):
    architecture, shape = NETWORKS[name]
    net = compare_torch.Network(architecture, shape)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples,) + shape)
    y = np.arange(samples) % 3
    theta = net.initial_parameters(rng)
    model = eomlab.Model(architecture=architecture, input_shape=shape, loss=loss)
    return net, x, y, theta, model, eomlab.Objective(model, x, y)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_model_describes_the_network():
    net, x, y, theta, model, f = problem("cnn")
    assert model.n_params == net.n_params == f.n_params == theta.size
    assert [b["name"] for b in model.layout][:2] == ["layer0.W", "layer0.b"] or len(model.layout) >= 4
    assert sum(b["size"] for b in model.layout) == model.n_params
    # input_shape is the tuple the constructor takes (it was the text "1x6x6"), so a model can be remade
    assert model.input_shape == NETWORKS["cnn"][1]
    again = eomlab.Model(architecture=model.architecture, input_shape=model.input_shape)
    assert np.array_equal(again.initial_parameters(2), model.initial_parameters(2))
    mlp = eomlab.Model(layers=[4, 8, 3], activation="tanh")
    assert mlp.n_params == 4 * 8 + 8 + 8 * 3 + 3
    assert mlp.initial_parameters(1).shape == (mlp.n_params,)
    assert np.array_equal(mlp.initial_parameters(1), mlp.initial_parameters(1))


@pytest.mark.parametrize("name", NETWORKS)
def test_derivatives_against_finite_differences(name):
    net, x, y, theta, model, f = problem(name)
    rng = np.random.default_rng(5)
    u, v = rng.normal(size=theta.size), rng.normal(size=theta.size)
    h = 1e-5
    g = f.gradient(theta)
    fd_g = np.array([(f.value(theta + h * e) - f.value(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
    assert rel(g, fd_g) < 1e-7
    assert rel(f.hvp(theta, v), (f.gradient(theta + h * v) - f.gradient(theta - h * v)) / (2 * h)) < 1e-7
    fd_t = (f.hvp(theta + h * u, v) - f.hvp(theta - h * u, v)) / (2 * h)
    assert rel(f.third_order(theta, u, v), fd_t) < 1e-6
    assert rel(f.third_order(theta, u, v), f.third_order(theta, v, u)) < 1e-12
    assert np.array_equal(f.field("gf", LR, theta), -g)


@pytest.mark.parametrize("name", NETWORKS)
def test_against_pytorch_float64(name):
    torch = pytest.importorskip("torch")
    net, x, y, theta, model, f = problem(name)
    loss = net.loss(x, y, "cross_entropy")
    th = torch.tensor(theta, requires_grad=True)

    def grad(t):
        return torch.autograd.grad(loss(t), t, create_graph=True)[0]

    g_t = grad(th)

    def hvp(v):
        return torch.autograd.grad(g_t @ torch.tensor(v), th, create_graph=True, retain_graph=True)[0]

    def third(u, v):
        hv = torch.autograd.grad(g_t @ torch.tensor(v), th, create_graph=True)[0]
        return torch.autograd.grad(hv @ torch.tensor(u), th, retain_graph=True)[0].detach().numpy()

    g = g_t.detach().numpy()
    H = lambda v: hvp(v).detach().numpy()  # noqa: E731
    assert abs(f.value(theta) - float(loss(th))) <= 1e-12 * abs(float(loss(th)))
    assert rel(f.gradient(theta), g) < 1e-12
    v = np.random.default_rng(2).normal(size=theta.size)
    assert rel(f.hvp(theta, v), H(v)) < 1e-12
    assert rel(f.third_order(theta, g, v), third(g, v)) < 1e-12
    hg, tgg = H(g), third(g, g)
    expected = {
        "gf": -g,
        "eom1": -g - LR / 2 * hg,
        "eom2": -g - LR / 2 * hg - LR**2 * (H(hg) / 3 + tgg / 12),
        "eom3": -g - LR / 2 * hg - LR**2 * (H(hg) / 3 + tgg / 12)
                - LR**3 * (H(H(hg)) / 4 + third(hg, g) / 12 + H(tgg) / 12),
    }
    for kind, field in expected.items():
        assert rel(f.field(kind, LR, theta), field) < 1e-12, kind
    b = 0.6
    c = 1 / (1 - b)
    heavy = {
        "eom0": -c * g,
        "eom1": -c * g - LR * (1 + b) * c**3 / 2 * hg,
        "eom2": -c * g - LR * (1 + b) * c**3 / 2 * hg
                - LR**2 * ((1 + 4 * b + b * b) * c**5 / 3 * H(hg) + (1 + 10 * b + b * b) * c**5 / 12 * tgg),
    }
    for kind, field in heavy.items():
        assert rel(f.field(kind, LR, theta, method="heavy_ball", momentum=b), field) < 1e-12, kind
    start = theta + LR * b * c**2 * g + LR**2 * b * (2 + b) * c**4 * hg
    assert rel(f.start_point("eom2", LR, theta, method="heavy_ball", momentum=b) - theta, start - theta) < 1e-12


@pytest.mark.parametrize("call, message", [
    (lambda: eomlab.Model(architecture="dense(3), wobble", input_shape=(4,)), "model.architecture"),
    (lambda: eomlab.Model(architecture="dense(3)"), "input_shape"),
    (lambda: eomlab.Model(layers=[4, 3], activation="sigmoid"), "model.activation"),
    (lambda: eomlab.Model(layers=[4, 3], colour="red"), "colour"),
    # found by a review: the first two were silently accepted, the third crashed the interpreter later
    (lambda: eomlab.Model(layers=[3, 4, 2], architecture="dense(2)", input_shape=(3,)), "layers: expected either"),
    (lambda: eomlab.Model(layers=[3, 4, 2], architecture="dense(2)"), "layers: expected either"),  # named input_shape
    (lambda: eomlab.Model(architecture="dense(2)", input_shape=3), "input_shape: expected a tuple"),
    (lambda: eomlab.Model(layers=[2147483647] * 4), "at most 2\\^62 parameters"),
    # named the config key data.n_features or data.shape, not the argument
    (lambda: eomlab.Model(architecture="dense(2)", input_shape=(-3,)), r"input_shape: expected sizes in \[1, 2147483647\], got \(-3,\)"),
    (lambda: eomlab.Model(architecture="dense(2)", input_shape=(1, -28, 28)), r"input_shape: expected sizes .* got \(1, -28, 28\)"),
    # found by an adversarial review: accepted, with a loss of 0 whatever θ (the binary refuses it)
    (lambda: eomlab.Model(architecture="dense(1)", input_shape=(4,)),
     "model.architecture: the last layer gives 1 outputs, expected at least 2 for cross_entropy"),
    (lambda: eomlab.Model(architecture="conv(1, 2), flatten", input_shape=(1, 2, 2)), "expected at least 2 for cross_entropy"),
    # found by an adversarial review: an empty architecture made the default MLP and dropped input_shape;
    # a one-output MLP was refused naming data.n_classes, which the module has not
    (lambda: eomlab.Model(architecture="", input_shape=(1, 4, 4)),
     r"^model.architecture: expected at least one layer \(leave the key out for model.layers' MLP\), got nothing$"),
    (lambda: eomlab.Model(architecture=" ", input_shape=(16,)), "model.architecture: expected at least one layer"),
    (lambda: eomlab.Model(layers=[16, 1]), r"^model.layers: expected an output width of at least 2 for cross_entropy"),
])
def test_bad_models_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_objective_arguments_raise_value_error():
    net, x, y, theta, model, f = problem("mlp")
    with pytest.raises(ValueError, match="theta: expected"):
        f.gradient(theta[:-1])
    with pytest.raises(ValueError, match="X: expected samples"):
        eomlab.Objective(model, x[:, :4], y)
    with pytest.raises(ValueError, match="y: expected labels"):
        eomlab.Objective(model, x, y + 5)
    with pytest.raises(ValueError, match="y: expected whole-number labels, got 0.5"):  # was truncated to y
        eomlab.Objective(model, x, y + 0.5)
    with pytest.raises(ValueError, match="X: expected samples"):  # [N, d, 1] was read as [N, d]
        eomlab.Objective(model, x[:, :, None], y)
    # the shape given is named (found by an adversarial review: "got 3 dimensions", or no "got")
    with pytest.raises(ValueError, match=rf"X: expected samples \[N, {x.shape[1]}\], got an array of shape \(20, {x.shape[1]}, 1\)$"):
        eomlab.Objective(model, x[:, :, None], y)
    with pytest.raises(ValueError, match=r"X: expected a float64 array \[N, \.\.\.\] of samples, got an array of shape \(5,\)$"):
        eomlab.Objective(model, x[0, :5], y)
    with pytest.raises(ValueError, match=r"y: expected float64 targets \[20, 3\] for mse \(one row per sample of X\), "
                                         r"got an array of shape \(20, 4\)$"):
        eomlab.Objective(eomlab.Model(layers=[x.shape[1], 3], loss="mse"), x, np.zeros((len(x), 4)))
    with pytest.raises(ValueError, match="X: expected finite values of magnitude at most 1e150, got NaN or Inf"):
        eomlab.Objective(model, np.where(x > 1, np.nan, x), y)  # value() was NaN, silently
    with pytest.raises(ValueError, match="y: expected targets of finite values of magnitude at most 1e150, got NaN or Inf"):
        eomlab.Objective(eomlab.Model(layers=[x.shape[1], 3], loss="mse"), x, np.full((len(x), 3), np.inf))
    # Beyond 1e150 squares overflow: a batchnorm's variance was inf and its HVP NaN while the loss, its
    # gradient and eom1's field were finite (an adversarial review); mse's loss was inf.
    big = x.copy()
    big[0, 0] = -1e160
    with pytest.raises(ValueError, match=r"X: expected finite values of magnitude at most 1e150, got values up to 1e\+160, whose"):
        eomlab.Objective(model, big, y)
    with pytest.raises(ValueError, match=r"y: expected targets of .*, got values up to 1e\+200, whose squares overflow"):
        eomlab.Objective(eomlab.Model(layers=[x.shape[1], 3], loss="mse"), x, np.full((len(x), 3), 1e200))
    eomlab.Objective(model, np.where(x > 1, 1e150, x), y)  # 1e150 itself is taken
    with pytest.raises(ValueError, match="flows.kinds"):
        f.field("eom3", LR, theta, method="adam")
    with pytest.raises(ValueError, match="optimizer.momentum"):
        f.field("eom1", LR, theta, method="heavy_ball", momentum=1.5)
    with pytest.raises(ValueError, match="optimizer.method"):
        f.field("eom1", LR, theta, method="newton")
    # Keywords other than hyperparameters, seed and epoch went into the stand-in config: horizon= named
    # steps ("got both"), steps= said "given more than once", record_every= was taken and ignored (a review).
    for keyword in ["horizon", "steps", "record_every", "divergence_factor"]:
        for call in [f.field, f.start_point]:
            with pytest.raises(ValueError, match=rf"^{call.__name__}: unknown keyword '{keyword}' \(expected hyperparameters "
                               r"of the method \(momentum, beta1, beta2, eps, batch_size, order\), seed or epoch\)$"):
                call("eom1", LR, theta, method="heavy_ball", **{keyword: 2})
    with pytest.raises(ValueError, match="Objective: unknown argument 'weightdecay'"):  # a TypeError dump before
        eomlab.Objective(model, x, y, weightdecay=0.1)
    with pytest.raises(ValueError, match="weight_decay: expected a number, got 'a'"):
        eomlab.Objective(model, x, y, weight_decay="a")
    # Lists are arrays too (θ was accepted as a list, X and y were not), and weight_decay may be positional.
    listed = eomlab.Objective(model, x.tolist(), y.tolist(), 0.1)
    assert listed.value(theta) == eomlab.Objective(model, x, y, weight_decay=0.1).value(theta)
    # None, strings and wrong shapes are named as such (None said "got shape 1 values in 0 dims")
    n = f.n_params
    with pytest.raises(ValueError, match=f"theta: expected {n} float64 values \\(the model's n_params\\), got None"):
        f.value(None)
    with pytest.raises(ValueError, match=f"theta: expected {n} .* got an array of shape \\(1, {n}\\)"):
        f.gradient(theta.reshape(1, -1))
    with pytest.raises(ValueError, match="v: expected .* got None"):
        f.hvp(theta, None)
    with pytest.raises(ValueError, match="u: expected .* got 'abc'"):  # a TypeError dump before
        f.third_order(theta, "abc", theta)
    with pytest.raises(ValueError, match="lr: expected a number, got 'a'"):  # a TypeError dump before
        f.field("eom1", "a", theta)
    with pytest.raises(ValueError, match="X: expected an array of numbers, got None"):
        eomlab.Objective(model, None, y)
    with pytest.raises(ValueError, match="y: expected an array of numbers, got None"):  # "whole-number labels, got nan"
        eomlab.Objective(model, x, None)
    # numpy would convert text and None entries and drop imaginary parts (found by a review): refused
    for bad_theta, dtype in [([str(t) for t in theta], "<U"), ([None] * n, "object"), (theta + 1j, "complex128")]:
        with pytest.raises(ValueError, match=f"theta: expected an array of numbers, got an array of dtype {dtype}"):
            f.value(bad_theta)
    with pytest.raises(ValueError, match="X: expected an array of numbers, got an array of dtype <U"):
        eomlab.Objective(model, x.astype(str), y)
    for text in ("0.1", b"0.1"):  # float() would parse it
        with pytest.raises(ValueError, match="lr: expected a number, got"):
            f.field("eom1", text, theta)
    assert f.value(np.zeros(n, dtype=np.int64)) == f.value(np.zeros(n))  # integers are numbers
    with pytest.raises(ValueError, match=f"y: expected {len(y)} int64 labels \\(one per sample of X\\), got an array of shape \\(2,\\)"):
        eomlab.Objective(model, x, y[:2])
    for seed in (-1, 1.5, 2**63, True):  # was pybind's TypeError dump
        with pytest.raises(ValueError, match="initial_parameters: seed: expected an integer seed"):
            model.initial_parameters(seed=seed)
    assert np.array_equal(model.initial_parameters(seed=np.int64(3)), model.initial_parameters(3))



def test_a_runs_recorded_peak_memory_is_its_own_in_a_python_process(tmp_path):
    """peak_rank_memory_bytes was the process's high-water mark since it started (VmHWM): from a notebook
    that had held and freed 512 MiB it recorded over 512 MiB for a study of about 30 (an adversarial
    review). Each run starts the mark again from the memory resident at its start."""
    held = np.ones(2**26)  # 512 MiB, touched, then returned to the system
    del held
    resident = int(re.search(r"VmRSS:\s+(\d+) kB", pathlib.Path("/proc/self/status").read_text())[1]) * 1024
    config = {"study": {"output": str(tmp_path / "out"), "seed": [1, 2]}, "data": {"n_samples": 32},
              "model": {"layers": [4, 8, 3]}, "optimizer": {"lr": 0.1, "steps": 10}, "flows": {"kinds": ["gf"]}}
    eomlab.run(config)
    for path in sorted((tmp_path / "out" / "runs").glob("*.h5")):
        with h5py.File(path, "r") as f:  # the process's resident memory at the start and the study's few MiB
            assert 0 < f.attrs["peak_rank_memory_bytes"] < resident + 128 * 2**20, (path.name, resident)


def test_run_a_study_from_a_dict(tmp_path):
    config = {"study": {"name": "py", "output": str(tmp_path / "out"), "seed": [1, 2]},
              "data": {"n_samples": 32},
              "model": {"layers": [4, 8, 3]},
              "optimizer": {"lr": 0.1, "steps": 10, "record_every": 5},
              "flows": {"kinds": ["gf", "eom1"]}}
    out = eomlab.run(config)
    assert pathlib.Path(out) == tmp_path / "out"
    runs = sorted((tmp_path / "out" / "runs").glob("*.h5"))
    assert [r.name for r in runs] == ["lr0.1_seed1_wd0.h5", "lr0.1_seed2_wd0.h5"]
    with h5py.File(runs[0], "r") as h:
        assert h.attrs["status"] == "complete"
        assert h["observables/eom1/distance_to_gd"].shape == (3,)
    with pytest.raises(ValueError, match="pass resume=True to continue the study or overwrite=True"):
        eomlab.run(config)  # the command line's flags are named as this function's arguments
    again = eomlab.run(config, overwrite=True)  # a second study in the same process
    assert again == out
    assert {"Model", "Objective", "Study", "run", "sgd_permutation"} <= set(dir(eomlab))  # Study was missing
    with eomlab.Study(out) as study:  # the analysis package's reader
        assert [r.run_id for r in study.runs] == ["lr0.1_seed1_wd0", "lr0.1_seed2_wd0"]
        run = study.runs[0]
        with h5py.File(runs[0], "r") as h:
            assert np.array_equal(run.series("eom1", "distance_to_gd"), h["observables/eom1/distance_to_gd"][()])
        # DESIGN.md §3.9 names a summary (a review: there was only catalog()): the catalog's rows
        # as the file holds them, its text as str (an adversarial review: bytes made summary["status"] ==
        # "complete" a scalar False and a filter on run_id silently empty)
        with h5py.File(tmp_path / "out" / "sweep.h5", "r") as h:
            stored = h["summary"][()]
        assert study.summary.dtype.names == stored.dtype.names
        for name in stored.dtype.names:
            column = stored[name]
            expected = np.char.decode(column, "utf-8") if column.dtype.kind == "S" else column
            assert np.array_equal(study.summary[name], expected), name
        assert [row["run_id"] for row in study.summary] == ["lr0.1_seed1_wd0", "lr0.1_seed2_wd0"]
        assert list(study.summary["status"] == "complete") == [True, True]
    with pytest.raises(ValueError, match="config: unknown key 'optimizer.speed'"):
        eomlab.run({"optimizer": {"speed": 1}})
    with pytest.raises(ValueError, match="config: expected a path without NUL characters"):  # opened 'a'
        eomlab.run("a\0b")
    with pytest.raises(ValueError, match="^config: cannot open file '/nonexistent/study.ini'"):  # named --config
        eomlab.run("/nonexistent/study.ini")
    for config in (42, None):  # said "--config: cannot open file '42'"
        with pytest.raises(ValueError, match=f"config: expected an INI file's path or a dict of sections, got {config}"):
            eomlab.run(config)
    ini = tmp_path / "study.ini"  # a pathlib.Path is a path
    ini.write_text("[study]\nname = py\noutput = " + str(tmp_path / "from_path") + "\n[data]\nn_samples = 32\n"
                   "[model]\nlayers = 4,8,3\n[optimizer]\nlr = 0.1\nsteps = 2\n")
    assert pathlib.Path(eomlab.run(ini)) == tmp_path / "from_path"


def test_sgd_permutation_is_the_documented_order():
    for seed, epoch, n in [(1, 0, 8), (1, 3, 100), (12345678901, 7, 37), (2**63 - 1, 2, 5), (3, 0, 1), (3, 0, 0)]:
        p = eomlab.sgd_permutation(seed, epoch, n)
        assert p.dtype == np.int64
        assert p.tolist() == sgd_orders.permutation(seed, epoch, n)
    assert eomlab.sgd_permutation(np.int64(1), np.uint8(0), np.int32(8)).tolist() == [7, 5, 3, 2, 1, 6, 4, 0]
    for args, message in [((1, -1, 5), r"epoch: expected an integer epoch >= 0, got -1"),
                          ((1, 2**63, 5), r"epoch: expected an integer epoch >= 0, got 9223372036854775808"),
                          ((1, 0, -2), r"n: expected an integer number of samples in \[0, 2147483647\], got -2"),
                          # a study's limit (data.n_samples): 2**40 was MemoryError from std::bad_alloc
                          ((1, 0, 2**40), r"n: expected an integer number of samples in \[0, 2147483647\], got 1099511627776"),
                          ((-1, 0, 5), r"seed: expected an integer seed in \[0, 2\*\*63\), got -1"),
                          # a run's seed is at most 2**63 - 1 (study.seed, the run file's attribute)
                          ((2**63, 0, 5), r"seed: expected an integer seed in \[0, 2\*\*63\), got 9223372036854775808"),
                          ((1.5, 0, 5), r"seed: expected an integer seed in \[0, 2\*\*63\), got 1.5"),
                          ((True, 0, 5), r"seed: expected an integer seed in \[0, 2\*\*63\), got True"),
                          ((1, 0, "8"), r"n: expected an integer number of samples in \[0, 2147483647\], got '8'")]:
        with pytest.raises(ValueError, match="sgd_permutation: " + message):
            eomlab.sgd_permutation(*args)


def test_a_runs_sgd_batches_are_its_seeds_permutations(tmp_path):
    """A reshuffled sgd study run by the module: its trajectory is the steps over the batches that
    sgd_permutation gives for the run file's seed (each step's gradient from an Objective on the batch)."""
    n, d, b, lr, wd, epochs = 24, 4, 6, 0.3, 0.01, 2
    m = n // b
    rs = np.random.RandomState(5)
    x, y = rs.normal(size=(n, d)), (np.arange(n) % 3).astype(np.int64)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["X"], f["y"] = x, y
    architecture = "dense(6), tanh, dense(3)"
    out = eomlab.run({"study": {"name": "order", "output": str(tmp_path / "out"), "seed": 11},
                      "data": {"source": f"hdf5:{tmp_path / 'data.h5'}"},
                      "model": {"architecture": architecture, "weight_decay": wd},
                      "optimizer": {"method": "sgd", "batch_size": b, "order": "reshuffle", "lr": lr,
                                    "steps": epochs * m, "record_every": m},
                      "flows": {"kinds": ["gf"]}})
    (run,) = (pathlib.Path(out) / "runs").glob("*.h5")
    with h5py.File(run, "r") as f:
        seed = int(f.attrs["seed"])
        recorded = f["trajectories/sgd/theta"][()]
    model = eomlab.Model(architecture=architecture, input_shape=(d,), loss="cross_entropy")
    theta = recorded[0].copy()
    for e in range(epochs):
        p = eomlab.sgd_permutation(seed, e, n)
        for j in range(m):
            batch = p[j * b:(j + 1) * b]
            theta = theta - lr * eomlab.Objective(model, x[batch], y[batch], weight_decay=wd).gradient(theta)
        assert np.max(np.abs(theta - recorded[e + 1])) < 1e-13
    assert np.max(np.abs(recorded[-1] - recorded[0])) > 1e-2  # it moved


def test_one_objective_shared_by_two_threads_gives_every_thread_the_single_threaded_bits():
    """Evaluations release the GIL and share the objective's buffers: they take turns (two threads
    crashed the interpreter or returned wrong bits)."""
    import threading
    net, x, y, theta, model, f = problem("mlp")
    v = np.random.default_rng(3).normal(size=theta.size)
    expected = (f.hvp(theta, v), f.gradient(theta), f.field("eom1", LR, theta))
    results = []

    def work():
        results.append(all(np.array_equal(f.hvp(theta, v), expected[0]) and np.array_equal(f.gradient(theta), expected[1])
                           and np.array_equal(f.field("eom1", LR, theta), expected[2]) for _ in range(100)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, True, True]


def test_bytes_are_refused_not_read_as_their_codes(tmp_path):
    """Found by a review: layers=b"3,4,2" built 51 -> dense(44), ... from the byte codes, and a dict's
    lr = b"0.1" ran a sweep at lr 49, 48, 46."""
    for layers in (b"3,4,2", [b"3", 4, 2], bytearray(b"3,4,2")):
        with pytest.raises(ValueError, match=r"layers: expected text \(str\), got (b|bytearray\(b)'3"):
            eomlab.Model(layers=layers)
    with pytest.raises(ValueError, match=r"optimizer.lr: expected text \(str\), got b'0.1'"):
        eomlab.run({"study": {"output": str(tmp_path / "out")}, "model": {"layers": [4, 3]},
                    "optimizer": {"lr": b"0.1", "steps": 1}})
    assert not (tmp_path / "out").exists()
    net, x, y, theta, model, f = problem("mlp")
    with pytest.raises(ValueError, match=r"optimizer.momentum: expected text \(str\), got b'0.5'"):
        f.field("eom1", LR, theta, method="heavy_ball", momentum=b"0.5")
    # found by an adversarial review: the flow's kind and the method were read from bytes
    for call in (lambda: f.field(b"eom1", LR, theta), lambda: f.start_point(b"eom1", LR, theta)):
        with pytest.raises(ValueError, match=r"kind: expected text \(str\), got b'eom1'"):
            call()
    for call in (lambda: f.field("eom1", LR, theta, method=b"gd"), lambda: f.start_point("eom1", LR, theta, method=b"gd")):
        with pytest.raises(ValueError, match=r"method: expected text \(str\), got b'gd'"):
            call()
    assert np.array_equal(f.field("eom1", LR, theta, method="gd"), f.field("eom1", LR, theta))


def test_a_line_break_in_a_value_is_refused_not_read_as_further_keys(tmp_path):
    """Found by an adversarial review: study.name = "x\\n[data]\\nnoise = 2.0" ran a study with data.noise 2, a key
    the user never set."""
    for name in ("x\n[data]\nnoise = 2.0", "x\r\nnoise = 2.0", "x\x00"):
        with pytest.raises(ValueError, match=r"study.name: expected a value without control characters, got 'x"):
            eomlab.run({"study": {"output": str(tmp_path / "out"), "name": name}, "model": {"layers": [4, 3]},
                        "optimizer": {"lr": 0.1, "steps": 1}})
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="layers: expected a value without control characters"):
        eomlab.Model(layers=["4\n", 3])


def test_section_and_key_names_of_a_dict_config_are_words(tmp_path):
    """Found by an adversarial review: names went into the INI text unchecked, so a key "classes=0,1\\nn_samples"
    set data.classes and data.n_samples, and a section "model]\\n[optimizer" moved its keys to another section."""
    def config(**sections):
        base = {"study": {"output": str(tmp_path / "out")}, "model": {"layers": [4, 3]}, "optimizer": {"steps": 1}}
        return {**base, **sections}
    for bad, name in [(config(data={"classes=0,1\nn_samples": 7}), r"'classes=0,1\\nn_samples'"),
                      ({**config(), "model]\n[optimizer": {"lr": 0.05}}, r"'model\]\\n\[optimizer'"),
                      (config(data={"n_samples = 5 ;": 3}), r"'n_samples = 5 ;'"),
                      (config(data={5: 3}), "5")]:
        with pytest.raises(ValueError, match=r"^config: expected section and key names of a letter, then letters, digits "
                                             r"and '_', got " + name + "$"):
            eomlab.run(bad)
    assert not (tmp_path / "out").exists()


def test_values_are_checked_as_a_config_file_checks_them(tmp_path):
    """One check for the module and the program (cli::check_value): a tab inside a value is whitespace in a
    config file and was refused by the module alone; a '#' starting a word is refused by both."""
    text = "dense(3),\ttanh,\tdense(2)"
    assert eomlab.Model(architecture=text, input_shape=(4,)).architecture == "dense(3), tanh, dense(2)"
    ini = tmp_path / "tab.ini"
    ini.write_text(f"[model]\narchitecture = {text}\n[data]\nn_features = 4\n[optimizer]\nsteps = 2\n"
                   f"[study]\noutput = {tmp_path / 'out'}\n")
    printed = subprocess.run([BINARY, "--config", str(ini), "--print-config"], capture_output=True, text=True, check=True)
    assert "architecture = dense(3), tanh, dense(2)" in printed.stdout
    with pytest.raises(ValueError, match=r"^architecture: expected a value without a comment"):
        eomlab.Model(architecture="dense(3) #x", input_shape=(4,))


def test_batchnorm_over_a_constant_channel_is_zero_over_zero_whatever_the_constant():
    """Found by an adversarial review: with eps 0 a constant channel is 0/0 (README: such a start is
    refused), but the loss came out NaN only for constants the rounded mean hit exactly (1.5, 0.1); for
    0.7, 1/3, 2.2, 1e-3 the rounding noise x - mean (about 1e-17) was scaled to ±1 and the loss was finite,
    with gradients of order 1e16. The mean's own rounding is now taken out (x - mean = 0 exactly)."""
    shape = (2, 3, 3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5,) + shape), np.arange(5) % 3
    for eps, check in [("", np.isnan), ("(eps=0.01)", np.isfinite)]:
        model = eomlab.Model(architecture=f"batchnorm{eps}, flatten, dense(3)", input_shape=shape)
        theta = model.initial_parameters(1)
        for c in [1.5, 0.1, 0.7, 1 / 3, 2.2, 1e-3, -5.25e7]:
            constant = x.copy()
            constant[:, 1] = c
            f = eomlab.Objective(model, constant, y)
            assert check(f.value(theta)), (eps, c, f.value(theta))
            if eps:  # the channel normalizes to 0 exactly: as if it held zeros
                zeros = x.copy()
                zeros[:, 1] = 0.0
                g = eomlab.Objective(model, zeros, y)
                assert f.value(theta) == g.value(theta) and np.array_equal(f.gradient(theta), g.gradient(theta)), c


def test_layernorm_over_a_sample_of_equal_features_is_zero_over_zero_whatever_the_value():
    """As batchnorm's constant channel: a sample whose features are all equal is 0/0 for layernorm, and gave
    a finite loss for values its rounded mean missed."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 5)), np.arange(4) % 3
    model = eomlab.Model(architecture="layernorm, dense(3)", input_shape=(5,))
    theta = model.initial_parameters(1)
    for c in [1.5, 0.1, 0.7, 1 / 3, 2.2, 1e-3, -5.25e7]:
        constant = x.copy()
        constant[2] = c
        assert np.isnan(eomlab.Objective(model, constant, y).value(theta)), c
    assert np.isfinite(eomlab.Objective(model, x, y).value(theta))
    # Over one feature every sample is 0/0: refused when the model is made, as by the command line.
    with pytest.raises(ValueError, match=r"^model.architecture: layer 2 'layernorm': expected an input of at least "
                                         r"2 features, got 1$"):
        eomlab.Model(architecture="dense(1), layernorm, dense(3)", input_shape=(5,))


def sgd_eom1(model, x, y, lr, theta, seed, epoch, b):
    """sgd's eom1 field of DESIGN.md §1.5 from the batches sgd_permutation gives: −ḡ + (η/m) Σ_j H_j u_j,
    u_j = Σ_{i<j} g_i − (m/2) ḡ, each batch's loss its mean."""
    n = len(x)
    m = n // b
    p = eomlab.sgd_permutation(seed, epoch, n)
    batches = [eomlab.Objective(model, x[p[j * b:(j + 1) * b]], y[p[j * b:(j + 1) * b]]) for j in range(m)]
    g = [f.gradient(theta) for f in batches]
    mean = sum(g) / m
    f1 = sum(f.hvp(theta, sum(g[:j], np.zeros_like(theta)) - m / 2 * mean) for j, f in enumerate(batches)) / m
    return -mean + lr * f1


def test_sgd_field_of_a_runs_seed_and_epoch():
    """Found by a review: f.field(..., method="sgd") always took seed 0's batch order (seed=... was refused),
    and a reshuffled order always epoch 0's, so the field of a run of another seed was silently another."""
    net, x, y, theta, model, f = problem("mlp", samples=24)
    b = 6
    for seed, epoch, order in [(0, 0, "fixed"), (7, 0, "fixed"), (7, 3, "fixed"), (12345, 2, "reshuffle"), (3, 1, "reshuffle")]:
        expected = sgd_eom1(model, x, y, LR, theta, seed, 0 if order == "fixed" else epoch, b)
        got = f.field("eom1", LR, theta, method="sgd", batch_size=b, order=order, seed=seed, epoch=epoch)
        assert rel(got, expected) < 1e-12, (seed, epoch, order)
    other = sgd_eom1(model, x, y, LR, theta, 0, 0, b)
    assert rel(f.field("eom1", LR, theta, method="sgd", batch_size=b, seed=7), other) > 1e-6  # the seed matters here
    assert np.array_equal(f.field("eom1", LR, theta, method="sgd", batch_size=b),  # seed 0, epoch 0 by default
                          f.field("eom1", LR, theta, method="sgd", batch_size=b, seed=0, epoch=0))
    for method in ("gd", "heavy_ball"):  # keys of another method are refused, as in a config (a review)
        with pytest.raises(ValueError, match=f"field: seed: a keyword of sgd only .*, got method '{method}'"):
            f.field("eom1", LR, theta, method=method, seed=1)
    with pytest.raises(ValueError, match="start_point: epoch: a keyword of sgd only"):
        f.start_point("eom1", LR, theta, epoch=2)
    for key, value, message in [("seed", -1, r"field: seed: expected an integer seed in \[0, 2\*\*63\), got -1"),
                                ("epoch", 1.5, r"field: epoch: expected an integer epoch >= 0, got 1.5")]:
        with pytest.raises(ValueError, match=message):
            f.field("eom1", LR, theta, method="sgd", batch_size=b, **{key: value})


def test_sgd_models_of_a_batchnorm_net_follow_the_batches_statistics():
    """Each batch is normalized with its own statistics (torch's training mode), so the batch losses do not
    average to L. sgd's eom0 is −(1/m) Σ_j g_j and eom1's ḡ and H̄ are the batches' too (an adversarial
    review: eom0 was gf, −∇L with the whole data's statistics); gf stays −∇L. Oracle: PyTorch float64
    autograd on each batch of sgd_permutation's order."""
    torch = pytest.importorskip("torch")
    architecture, shape, b, seed = "conv(2,3,pad=1), batchnorm, tanh, avgpool(2), flatten, dense(3)", (1, 6, 6), 4, 5
    net = compare_torch.Network(architecture, shape)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12,) + shape), np.arange(12) % 3
    theta = net.initial_parameters(rng)
    f = eomlab.Objective(eomlab.Model(architecture=architecture, input_shape=shape), x, y)
    p = eomlab.sgd_permutation(seed, 0, len(x))
    m = len(x) // b

    def grad(loss, t):
        t = torch.tensor(t, requires_grad=True)
        return torch.autograd.grad(loss(t), t)[0].numpy()
    losses = [net.loss(x[p[j * b:(j + 1) * b]], y[p[j * b:(j + 1) * b]], "cross_entropy") for j in range(m)]
    g = [grad(loss, theta) for loss in losses]
    mean = sum(g) / m
    whole = grad(net.loss(x, y, "cross_entropy"), theta)
    assert rel(mean, whole) > 1e-3  # the batches' statistics matter here
    eom0 = f.field("eom0", LR, theta, method="sgd", batch_size=b, seed=seed)
    assert rel(eom0, -mean) < 1e-12
    assert rel(f.field("gf", LR, theta, method="sgd", batch_size=b, seed=seed), -whole) < 1e-12

    def hvp(loss, t, v):
        t = torch.tensor(t, requires_grad=True)
        (gt,) = torch.autograd.grad(loss(t), t, create_graph=True)
        return torch.autograd.grad(gt @ torch.tensor(v), t)[0].numpy()
    f1 = sum(hvp(loss, theta, sum(g[:j], np.zeros_like(theta)) - m / 2 * mean) for j, loss in enumerate(losses)) / m
    assert rel(f.field("eom1", LR, theta, method="sgd", batch_size=b, seed=seed), -mean + LR * f1) < 1e-12


def test_field_arguments_are_read_as_the_config_reads_them():
    """Found by a review: "eom1 " raised RuntimeError (the parser trims, the flow's name was not), "gf,eom1"
    too; an infinite weight decay or lr was accepted; a label of 2**64 was named as -2**63."""
    net, x, y, theta, model, f = problem("mlp")
    assert np.array_equal(f.field("eom1 ", LR, theta, method=" gd"), f.field("eom1", LR, theta))
    with pytest.raises(ValueError, match="kind: expected one flow kind, got 'gf,eom1'"):
        f.field("gf,eom1", LR, theta)
    with pytest.raises(ValueError, match="weight_decay: expected a finite number >= 0, got inf"):
        eomlab.Objective(model, x, y, weight_decay=np.inf)
    with pytest.raises(ValueError, match="lr: expected a finite learning rate > 0, got inf"):
        f.field("eom1", np.inf, theta)
    with pytest.raises(ValueError, match=r"y: expected labels in 0..2 \(the model's outputs\), got 1.8446744073709552e\+19"):
        eomlab.Objective(model, x, np.where(np.arange(len(y)) == 3, 2.0**64, y))
    # Found by a review: integer targets of a one-output mse model were one-hot, so zeros became the target 1.
    with pytest.raises(ValueError, match=r"y: expected float64 targets \[N, 1\] for mse with one output"):
        eomlab.Objective(eomlab.Model(layers=[x.shape[1], 1], loss="mse"), x, np.zeros(len(x), dtype=np.int64))
    with pytest.raises(ValueError, match="run: expected at most one of resume=True and overwrite=True, got both"):
        eomlab.run({"model": {"layers": [4, 3]}}, overwrite=True, resume=True)


def test_labels_targets_and_names_are_told_apart_by_kind_not_width():
    """An adversarial review: under mse, y was labels only as int64 (int32 labels were refused as targets, int64
    one-hot targets as labels); a list as a flow's kind said "got '['eom1']'"; lr=np.array([0.1]) ran."""
    net, x, y, theta, model, f = problem("mlp")
    mse = eomlab.Model(layers=[x.shape[1], 3], loss="mse")
    theta_mse, onehot = mse.initial_parameters(1), np.eye(3)[y]
    expected = eomlab.Objective(mse, x, onehot).value(theta_mse)
    for given in (y.astype(np.int32), y.astype(np.uint8), y.tolist(), onehot.astype(np.int64), onehot.astype(np.int32)):
        assert eomlab.Objective(mse, x, given).value(theta_mse) == expected
    for kind in (["eom1"], ("eom1",), ["gf", "eom1"]):
        with pytest.raises(ValueError, match=r"kind: expected text \(str\), got"):
            f.field(kind, LR, theta)
    with pytest.raises(ValueError, match=r"method: expected text \(str\), got \['gd'\]"):
        f.start_point("eom1", LR, theta, method=["gd"])
    with pytest.raises(ValueError, match=r"lr: expected a number, got array\(\[0.1\]\)"):
        f.field("eom1", np.array([0.1]), theta)
    assert np.array_equal(f.field("eom1", np.array(0.1), theta), f.field("eom1", 0.1, theta))  # a 0-d array is a number


def test_fields_of_an_lr_scan_keep_a_bounded_memory():
    """Found by a review: every new (kind, lr, method, hyperparameters) kept its flow, with sgd's batches, for
    the objective's life: 19 MiB per lr on 8 MiB of data."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2048, 64)), np.arange(2048) % 3
    model = eomlab.Model(layers=[64, 8, 3])
    f = eomlab.Objective(model, x, y)
    theta = model.initial_parameters(1)

    def resident_mib():
        return int(pathlib.Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def scan(lrs):
        for lr in lrs:
            f.field("eom1", lr, theta, method="sgd", batch_size=64)

    scan(np.linspace(0.01, 0.02, 8))
    before = resident_mib()
    scan(np.linspace(0.03, 0.04, 40))
    assert resident_mib() - before < 25  # 40 flows of ~1 MiB of batches each, and more, before


RUN_SCRIPT = """
import signal, sys
sys.path.insert(0, {build!r})
import eomlab
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive Python (a background job ignores it)
config = {{"study": {{"name": "s", "output": sys.argv[1]}}, "data": {{"n_samples": 32}},
           "model": {{"layers": [4, 8, 3]}},
           "optimizer": {{"lr": 0.1, "steps": int(sys.argv[2]), "record_every": 1000}}, "flows": {{"kinds": ["gf"]}}}}
"""


def python_study(tmp_path, body, *args, **popen):
    script = tmp_path / "study.py"
    script.write_text(RUN_SCRIPT.format(build=str(BUILD)) + body)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_checkpoints_a_study_run_from_python(tmp_path, signal_name):
    """Found by a review: Ctrl-C let run() go on to the end and raised KeyboardInterrupt only then; SIGTERM
    (a batch system's) killed the process with the run file 'running' and nothing to resume from. Now
    the study checkpoints and stops as on the command line, then the signal has its effect in Python."""
    import signal
    import time
    out = tmp_path / "out"
    proc = python_study(tmp_path, "eomlab.run(config, resume=len(sys.argv) > 3)\nprint('done')\n", out, 3_000_000,
                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # were pytest run by nohup
    run_file = out / "runs" / "lr0.1_seed0_wd0.h5"
    deadline = time.time() + 60
    while not run_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(getattr(signal, signal_name))
    out_text, err = proc.communicate(timeout=120)
    # The summary says how to continue in Python's terms (found by a review: it said "rerun with --resume").
    assert "checkpointed; run(config, resume=True) continues them\n" in out_text and "--resume" not in out_text
    if signal_name == "SIGINT":
        assert "KeyboardInterrupt" in err, (proc.returncode, out_text, err)
    else:
        assert proc.returncode == -getattr(signal, signal_name), (proc.returncode, err)
    with h5py.File(run_file, "r") as h:
        assert h.attrs["status"] == "interrupted"
    assert list((out / "checkpoints").glob("lr0.1_seed0_wd0*"))
    resumed = python_study(tmp_path, "eomlab.run(config, resume=True)\nprint('done')\n", out, 3_000_000)
    output, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "done" in output, err
    with h5py.File(run_file, "r") as h:
        assert h.attrs["status"] == "complete"


def test_an_exception_of_a_signal_while_run_waits_for_its_turn_is_raised(tmp_path):
    """A review: a signal handler's exception (or Ctrl-C's KeyboardInterrupt) pending when run() got its turn
    became pybind11's "Internal error: error_already_set called while Python error indicator not set",
    as the redirection of the study's lines, made then, cleared it."""
    import signal
    import time
    body = """
import threading
class Boom(Exception):
    pass
def boom(*_):
    raise Boom()
signal.signal(signal.SIGUSR2, boom)
signal.signal(signal.SIGUSR1, lambda *_: None)  # after the first study's stop, to Python: nothing
first = threading.Thread(target=eomlab.run, args=(config,))
first.start()
while first.is_alive() and not __import__("os").path.exists(sys.argv[1] + "/runs/lr0.1_seed0_wd0.h5"):
    time.sleep(0.05)
print("waiting", flush=True)
try:
    eomlab.run(dict(config, study={"name": "s", "output": sys.argv[1] + "_second"}))
except Boom:
    print("Boom")
first.join()
"""
    proc = python_study(tmp_path, "import time\n" + body, tmp_path / "out", 3_000_000)
    assert "waiting\n" in iter(proc.stdout.readline, "")  # after the first study's lines
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR2)  # its handler runs when the second run() gets its turn
    time.sleep(0.3)
    proc.send_signal(signal.SIGUSR1)  # stops the first study
    out, err = proc.communicate(timeout=120)
    assert "Boom" in out.split() and "Internal error" not in err, (out, err)


def test_the_studys_lines_reach_python_whole(tmp_path, monkeypatch):
    """A review: std::cerr flushes at every <<, and each piece of a warning was a write of its own (9 for one
    line), so another thread's print could land inside it."""
    class Writes(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass
    config = {"study": {"output": str(tmp_path / "out")}, "data": {"n_samples": 32}, "model": {"layers": [4, 8, 3]},
              "optimizer": {"lr": 0.1, "steps": 2}}
    eomlab.run(config)
    (tmp_path / "out" / "study.ini").write_text("")  # resumed with a warning
    errors, lines = Writes(), Writes()
    monkeypatch.setattr(sys, "stderr", errors)
    monkeypatch.setattr(sys, "stdout", lines)
    eomlab.run(config, resume=True)
    assert any("warning" in w for w in errors) and lines, (errors, lines)
    assert all(w.endswith("\n") and w.count("\n") >= 1 for w in errors + lines), errors


def test_two_threads_running_studies_take_turns(tmp_path):
    """Found by a review: two threads each calling run() crashed the interpreter (parallel HDF5 and MPI in
    two threads at once). Now the studies run one after the other, each with the data it has alone."""
    body = """
import threading, h5py, numpy as np
threads = [threading.Thread(target=eomlab.run, args=(dict(config, study={"name": "s", "output": sys.argv[1] + str(i)}),))
           for i in range(2)]
for t in threads: t.start()
for t in threads: t.join()
eomlab.run(dict(config, study={"name": "s", "output": sys.argv[1] + "alone"}))
read = lambda d: h5py.File(d + "/runs/lr0.1_seed0_wd0.h5", "r")["trajectories/gd/theta"][()]
assert all(np.array_equal(read(sys.argv[1] + str(i)), read(sys.argv[1] + "alone")) for i in range(2))
print("same")
"""
    proc = python_study(tmp_path, body, tmp_path / "out", 20_000)
    output, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "same" in output, err


def test_numbers_paths_and_lines_reach_the_study_as_they_are(tmp_path, capsys):
    """Found by reviews, low: a numpy float32 lr ran as 0.1 in run() (its str) and as 0.10000000149011612 in
    field(); True was 1 to some arguments and refused by others; seeds went to 2**64 here and to 2**63 - 1 in
    a config; a path that is not UTF-8 was pybind's "Unable to cast"; the study's lines went past
    sys.stdout (a notebook's cell stayed empty)."""
    lr32 = np.float32(0.1)
    out = tmp_path / os.fsdecode(b"caf\xe9")  # a directory name of Latin-1 bytes
    config = {"study": {"name": "py", "output": out}, "data": {"n_samples": 32}, "model": {"layers": [4, 8, 3]},
              "optimizer": {"lr": [lr32], "steps": 4, "method": "heavy_ball", "momentum": np.float32(0.9)},
              "flows": {"kinds": ["eom1"]}}
    assert eomlab.run(config) == str(out)
    lines = capsys.readouterr()
    assert "eomlab" in lines.out and "study 'py'" in lines.out, lines
    (path,) = (out / "runs").glob("*.h5")
    with h5py.File(path, "r") as h:
        assert h.attrs["lr"] == float(lr32) != 0.1
        assert "momentum = 0.8999999761581421" in h.attrs["config"]  # float(np.float32(0.9))
    ini = tmp_path / os.fsdecode(b"\xff.ini")
    ini.write_text("[study]\nname = py\noutput = " + str(tmp_path / "ini") + "\n[data]\nn_samples = 32\n"
                   "[model]\nlayers = 4,8,3\n[optimizer]\nlr = 0.1\nsteps = 2\n")
    assert eomlab.run(ini) == str(tmp_path / "ini")
    net, x, y, theta, model, f = problem("mlp")
    assert np.array_equal(f.field("eom1", lr32, theta, method="heavy_ball", momentum=np.float32(0.9)),
                          f.field("eom1", float(lr32), theta, method="heavy_ball", momentum=float(np.float32(0.9))))
    for true in (True, np.True_, np.array(True)):
        got = re.escape(repr(true))
        with pytest.raises(ValueError, match="lr: expected a number, got " + got):
            f.field("eom1", true, theta)
        with pytest.raises(ValueError, match="weight_decay: expected a number, got " + got):
            eomlab.Objective(model, x, y, weight_decay=true)
        with pytest.raises(ValueError, match=r"initial_parameters: seed: expected an integer seed in \[0, 2\*\*63\), got " + got):
            model.initial_parameters(seed=true)
    # a second review: a message naming a path of such bytes was an empty ValueError; a lone surrogate was
    # UnicodeEncodeError; a float32 2 was an integer where 2.0 is none
    with pytest.raises(ValueError, match=r"config: cannot open file '.*/nope\\xff.ini'"):
        eomlab.run(tmp_path / os.fsdecode(b"nope\xff.ini"))
    with pytest.raises(ValueError, match="study.output: expected text the file system can take"):
        eomlab.run({"study": {"output": "/tmp/x\ud800y"}})
    with pytest.raises(ValueError, match="optimizer.steps: expected an integer, got '2.0'"):
        eomlab.run({"study": {"output": str(tmp_path / "steps")}, "optimizer": {"steps": np.float32(2)}})
    with pytest.raises(ValueError, match=r"study.seed: expected an integer in \[0, 9223372036854775807\]"):
        eomlab.run({"study": {"output": str(tmp_path / "big"), "seed": 2**63}, "model": {"layers": [4, 3]}})
