"""The optimizers of issue 14 through the real binary under mpirun: run files that name the method and
its hyperparameters, the same numbers on 1 and 2 ranks per run, bitwise reruns, bitwise resume after
SIGKILL for every method, and bad optimizer input refused before anything is written."""
import math
import random
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import REPO, datasets, kill_study, run_eomlab, start_study, wait_for_first_checkpoint, write_config

SETTINGS = {
    "heavy_ball": "momentum = 0.8",
    "nesterov": "momentum = 0.6",
    "rmsprop": "beta2 = 0.9\neps = 0.01",
    "adam": "beta1 = 0.8\nbeta2 = 0.9\neps = 0.01",
}
FLOWS = {"heavy_ball": "gf, eom1, eom2", "nesterov": "eom0, eom2", "rmsprop": "eom0, eom1", "adam": "eom1"}

STUDY = """
[study]
name = {method}
output = {output}
ranks_per_run = {ranks}
[data]
n_samples = {samples}
[model]
layers = 5,16,3
[optimizer]
method = {method}
{settings}
lr = 0.02
steps = {steps}
record_every = 5
[flows]
kinds = {flows}
[output]
checkpoint_every = {checkpoint_every}
"""


def study(tmp_path, method, ranks=1, steps=40, samples=48, checkpoint_every=0, name="study.ini", output="out"):
    text = STUDY.format(method=method, settings=SETTINGS[method], flows=FLOWS[method], ranks=ranks, steps=steps,
                        samples=samples, checkpoint_every=checkpoint_every, output=tmp_path / output)
    return write_config(tmp_path, text, name)


def run_file(out):
    (path,) = (out / "runs").glob("*.h5")
    return path


@pytest.mark.parametrize("method", SETTINGS)
def test_run_file_names_the_method_and_ranks_agree(tmp_path, method):
    one = study(tmp_path, method, ranks=1, name="one.ini", output="one")
    two = study(tmp_path, method, ranks=2, name="two.ini", output="two")
    for config, np_ in [(one, 1), (two, 2)]:
        proc = run_eomlab(["--config", config], np=np_)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"dist. to {method}" in proc.stdout
    flows = [f.strip() for f in FLOWS[method].split(",")]
    with h5py.File(run_file(tmp_path / "one"), "r") as a, h5py.File(run_file(tmp_path / "two"), "r") as b:
        assert a.attrs["method"] == method and a.attrs["run_id"].startswith(method + "_")
        for line in SETTINGS[method].splitlines():
            key, value = (s.strip() for s in line.split("="))
            assert a.attrs[key] == float(value), key
            assert np.issubdtype(type(a.attrs[key]), np.integer) == (key == "batch_size"), key  # a size is an integer
        assert a.attrs["discrete_trajectory"] == method
        for traj in [method, *flows]:
            x, y = a[f"trajectories/{traj}/theta"][()], b[f"trajectories/{traj}/theta"][()]
            # The adaptive methods' fields vary like 1/eps: rounding that differs with the rank count can
            # change the integrator's accepted steps, which moves their flows within its tolerance.
            tolerance = 1e-11 if traj == method or "momentum" in SETTINGS[method] else 1e-6
            assert np.abs(x - y).max() <= tolerance * np.abs(x).max(), (traj, np.abs(x - y).max())
        for flow in flows:
            d = a[f"observables/{flow}/distance_to_discrete"][()]
            assert np.all(np.isfinite(d)) and d[-1] > 0
            assert np.array_equal(d, a[f"observables/{flow}/distance_to_{method}"][()])
    again = study(tmp_path, method, ranks=2, name="again.ini", output="again")
    assert run_eomlab(["--config", again], np=2).returncode == 0
    assert datasets(tmp_path / "again") .keys() == datasets(tmp_path / "two").keys()
    with h5py.File(run_file(tmp_path / "two"), "r") as a, h5py.File(run_file(tmp_path / "again"), "r") as b:
        for traj in [method, *flows]:
            assert a[f"trajectories/{traj}/theta"][()].tobytes() == b[f"trajectories/{traj}/theta"][()].tobytes()


# adam's eom1 leaves its regime here (eps = 0.01 beside gradients of 1e-3) and turns stiff after about 150
# steps: 300 would cost 25 s a run instead of 2, with no more to check.
KILL_STEPS = {"adam": 150}


@pytest.mark.parametrize("method", SETTINGS)
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, method):
    steps = KILL_STEPS.get(method, 300)
    ref = study(tmp_path, method, ranks=2, steps=steps, samples=128, checkpoint_every=5, name="ref.ini", output="ref")
    assert run_eomlab(["--config", ref], np=2).returncode == 0
    config = study(tmp_path, method, ranks=2, steps=steps, samples=128, checkpoint_every=5)
    proc = start_study(config)
    wait_for_first_checkpoint(tmp_path / "out", proc)
    time.sleep(random.Random(method).uniform(0.0, 0.2))
    kill_study(proc)
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        assert f.attrs["status"] == "running"  # killed inside the run
    resumed = run_eomlab(["--config", config, "--resume"], np=2)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at step" in resumed.stdout
    assert datasets(tmp_path / "out") == datasets(tmp_path / "ref")


@pytest.mark.parametrize("change, key", [
    (("method = heavy_ball", "method = gd"), "optimizer.momentum"),
    (("momentum = 0.8", "momentum = 1"), "optimizer.momentum"),
    (("momentum = 0.8", "momentum = 0.8\nbeta1 = 0.9"), "optimizer.beta1"),
    (("kinds = gf, eom1, eom2", "kinds = eom3"), "flows.kinds"),
])
def test_bad_optimizer_input_exits_2_naming_the_key(tmp_path, change, key):
    config = study(tmp_path, "heavy_ball")
    config.write_text(config.read_text().replace(*change))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_order_adam_does_not_provide_names_method_and_order(tmp_path):
    config = study(tmp_path, "adam")
    config.write_text(config.read_text().replace("kinds = eom1", "kinds = eom1, eom2"))
    proc = run_eomlab(["--config", config])
    assert proc.returncode == 2
    assert "adam" in proc.stderr and "eom2" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# A linear model under mse on data of our own: g, H and the preconditioner P of RMSProp and Adam in
# closed form (numpy), against the sharpness and preconditioned sharpness the binary records.
LINEAR = """
[study]
name = {method}
output = {output}
[data]
source = hdf5:{data}
[model]
layers = 3,2
loss = mse
[optimizer]
method = {method}
{settings}
lr = {lr}
steps = 20
record_every = 5
[flows]
kinds = eom0
"""
ADAPTIVE = {"rmsprop": "beta2 = 0.9\neps = 0.01", "adam": "beta1 = 0.8\nbeta2 = 0.9\neps = 0.01"}


def linear_problem(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    path = tmp_path / "linear.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = x, y
    return path, x, y


def linear_gradient_and_hessian(theta, x, y):
    """L = (1/N) Σ ½‖W x + b − y‖², θ = (W row-major, b): g and H (block diagonal over the outputs)."""
    n, d = x.shape
    k = y.shape[1]
    w, b = theta[: k * d].reshape(k, d), theta[k * d:]
    r = x @ w.T + b - y
    g = np.concatenate([(r.T @ x).ravel() / n, r.sum(axis=0) / n])
    xa = np.hstack([x, np.ones((n, 1))])
    gram = xa.T @ xa / n
    h = np.zeros((k * (d + 1), k * (d + 1)))
    for j in range(k):
        rows = [j * d + i for i in range(d)] + [k * d + j]
        h[np.ix_(rows, rows)] = gram
    return g, h


def adaptive_run(method, theta0, x, y, lr, steps, settings):
    """torch.optim's RMSprop/Adam in numpy; at each iterate the P its next step divides by."""
    beta1, beta2, eps = settings.get("beta1", 0.0), settings["beta2"], settings["eps"]
    theta, m, s = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
    out = []
    for k in range(1, steps + 2):
        g, h = linear_gradient_and_hessian(theta, x, y)
        s_next = beta2 * s + (1 - beta2) * g * g
        if method == "rmsprop":
            p = np.sqrt(s_next) + eps
            m_next = g
        else:
            p = (1 - beta1**k) * (np.sqrt(s_next / (1 - beta2**k)) + eps)
            m_next = beta1 * m + (1 - beta1) * g
        out.append((theta.copy(), h, p))
        theta, m, s = theta - lr * m_next / p, m_next, s_next
    return out


def top_eigenvalue(a):
    return np.linalg.eigvalsh(0.5 * (a + a.T))[-1]


@pytest.mark.parametrize("method", ADAPTIVE)
def test_preconditioned_sharpness_is_the_closed_form_of_the_next_steps_preconditioner(tmp_path, method):
    data, x, y = linear_problem(tmp_path)
    settings = {k.strip(): float(v) for k, v in (line.split("=") for line in ADAPTIVE[method].splitlines())}
    lr = 0.01
    config = write_config(tmp_path, LINEAR.format(method=method, settings=ADAPTIVE[method], lr=lr, data=data,
                                                  output=tmp_path / "out"))
    proc = run_eomlab(["--config", config], np=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        thetas = f[f"trajectories/{method}/theta"][()]
        steps = f["step"][()]
        sharpness = f[f"observables/{method}/sharpness"][()]
        preconditioned = f[f"observables/{method}/preconditioned_sharpness"][()]
        assert f.attrs["max_lr_preconditioned_sharpness"] == pytest.approx(lr * preconditioned.max(), rel=1e-14)
        assert f.attrs["edge_of_stability"] == "no"
    expected = adaptive_run(method, thetas[0], x, y, lr, 20, settings)
    for r, k in enumerate(steps):
        theta, h, p = expected[k]
        assert np.abs(thetas[r] - theta).max() <= 1e-12 * np.abs(theta).max(), k
        scaled = h / np.sqrt(np.outer(p, p))  # P^(-1/2) H P^(-1/2): the spectrum of P⁻¹H
        assert sharpness[r] == pytest.approx(top_eigenvalue(h), rel=1e-9), k
        assert preconditioned[r] == pytest.approx(top_eigenvalue(scaled), rel=1e-9), k
    assert preconditioned.max() > 10 * sharpness.max()  # P < 1 here: the preconditioner matters


def rmsprop_start_sum(a, beta, eps, head=10**6):
    """S = Σ_{k≥1} [1/(√(1−β^k) a + ε) − 1/(a + ε)] per entry of a: the first `head` terms one by one (math.fsum),
    the rest by Euler–Maclaurin, ∫_M^∞ F dk + F(M)/2 − F′(M)/12 with the integral by scipy's quad in
    s = √(1−β^k) (error ~F‴(M)/720, F varying on the scale M = head)."""
    from scipy.integrate import quad
    log_beta = np.log1p(beta - 1)
    k = np.arange(1, head, dtype=float)
    out = []
    for ai in a:
        x, s = np.exp(k * log_beta), np.sqrt(-np.expm1(k * log_beta))
        body = math.fsum(ai * x / ((1 + s) * (ai * s + eps) * (ai + eps)))
        xm, sm = np.exp(head * log_beta), np.sqrt(-np.expm1(head * log_beta))
        f = 1 / (ai * sm + eps) - 1 / (ai + eps)
        df = ai / (2 * sm * (ai * sm + eps) ** 2) * xm * log_beta  # dF/dk = f′(x)·x·ln β
        integral = quad(lambda t: 2 * ai * t / ((1 + t) * (ai * t + eps) * (ai + eps)), sm, 1, epsabs=0, epsrel=1e-13)[0]
        out.append(body + integral / -log_beta + f / 2 - df / 12)
    return np.array(out)


@pytest.mark.parametrize("beta2", [0.9999, 1 - 1e-9])
def test_rmsprops_start_point_for_beta2_near_one(tmp_path, beta2):
    """RMSProp's eom1 starts from θ0* = θ0 − η g0 ⊙ S(|g0|). S has about ln(1000)/(1 − β2) terms: β2 above
    0.99999 was refused (at 1 − 1e-9 the sum ran for hours); now any β2 < 1 takes a moment."""
    data, x, y = linear_problem(tmp_path)
    lr, eps = 0.01, 0.01
    text = LINEAR.format(method="rmsprop", settings=f"beta2 = {beta2!r}\neps = {eps}", lr=lr, data=data,
                         output=tmp_path / "out")
    config = write_config(tmp_path, text.replace("kinds = eom0", "kinds = eom1"))
    proc = run_eomlab(["--config", config], np=1, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        theta0, start = f["trajectories/rmsprop/theta"][0], f["trajectories/eom1/theta"][0]
    g0, _ = linear_gradient_and_hessian(theta0, x, y)
    expected = theta0 - lr * g0 * rmsprop_start_sum(np.abs(g0), beta2, eps)
    assert np.abs(start - expected).max() <= 1e-14 * np.abs(expected - theta0).max()  # 3e-16 measured
    assert np.abs(expected - theta0).max() > 1e-3  # the shift is large here (lr·|g|/ε · ln(…)/(1 − β2))


def test_adam_past_its_edge_of_stability_is_flagged_by_the_preconditioned_sharpness(tmp_path):
    data, x, y = linear_problem(tmp_path)
    lr = 0.5  # lr·λ_max(P⁻¹H) passes 2(1 + β1)/(1 − β1) = 18 while lr·λ_max(H) stays below 2
    config = write_config(tmp_path, LINEAR.format(method="adam", settings=ADAPTIVE["adam"], lr=lr, data=data,
                                                  output=tmp_path / "out"))
    proc = run_eomlab(["--config", config], np=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        preconditioned = f["observables/adam/preconditioned_sharpness"][()]
        assert lr * f["observables/adam/sharpness"][()].max() < 2
        first = int(np.argmax(lr * preconditioned > 18))
        assert lr * preconditioned[first] > 18
        assert f.attrs["edge_of_stability"] == (
            f"lr*preconditioned_sharpness > 18 from step {5 * first}: the EoM cannot describe adam there")
    assert "warning: lr*preconditioned_sharpness" in proc.stderr and "> 18" in proc.stderr, proc.stderr
    # The analysis judges the run by the same measure (also from the series alone, as for an unfinished run).
    sys.path.insert(0, str(REPO / "analysis"))
    from eomlab_analysis.load import Run
    from eomlab_analysis.report import left_out_of_fits

    with Run(run_file(tmp_path / "out")) as run:
        what, value, limit = run.stability
        assert what == "lr·λ_max(P⁻¹H)" and limit == pytest.approx(18, rel=1e-15)
        assert value == pytest.approx(lr * preconditioned.max(), rel=1e-14)
        assert left_out_of_fits(run) == f"past the edge of stability (max lr·λ_max(P⁻¹H) = {value:.4g})"
    with h5py.File(run_file(tmp_path / "out"), "a") as f:
        for name in ["edge_of_stability", "max_lr_preconditioned_sharpness", "max_lr_sharpness", "status"]:
            del f.attrs[name]
    with Run(run_file(tmp_path / "out")) as run:
        assert run.edge_of_stability == f"lr·λ_max(P⁻¹H) = {value:.4g} > 18"


def test_methods_without_a_preconditioner_record_no_preconditioned_sharpness(tmp_path):
    config = study(tmp_path, "heavy_ball", steps=10)
    assert run_eomlab(["--config", config]).returncode == 0
    with h5py.File(run_file(tmp_path / "out"), "r") as f:
        assert "sharpness" in f["observables/heavy_ball"]
        assert "preconditioned_sharpness" not in f["observables/heavy_ball"]
        assert "max_lr_preconditioned_sharpness" not in f.attrs
