# eomlab from Python, as notebook cells ("# %%": Jupyter, VS Code and Spyder run them one by one).
#   PYTHONPATH=build/python /usr/bin/python3 examples/notebook.py [OUTPUT_DIR]
# Builds a small conv net, checks eomlab's exact HVP against a finite difference, integrates GD's eom1
# with SciPy on eomlab's field beside GD itself, runs a small lr sweep as a study and plots its orders.

# %% A model and data
import pathlib
import sys

import numpy as np
from scipy.integrate import solve_ivp

import eomlab

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/notebook")
model = eomlab.Model(architecture="conv(4, 3, pad=1), tanh, avgpool(2), flatten, dense(3)", input_shape=(1, 8, 8),
                     loss="cross_entropy")
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 1, 8, 8))
y = np.arange(60) % 3
X[y == 1, :, :4] += 1.0  # make the classes separable, a little
f = eomlab.Objective(model, X, y)
theta0 = model.initial_parameters(seed=1)
print(model, "P =", model.n_params, " L(θ0) =", f.value(theta0))

# %% The exact HVP against a central difference of exact gradients
v = rng.normal(size=model.n_params)
h = 1e-5
fd = (f.gradient(theta0 + h * v) - f.gradient(theta0 - h * v)) / (2 * h)
hv = f.hvp(theta0, v)
print(f"HVP vs central difference: relative gap {np.linalg.norm(hv - fd) / np.linalg.norm(hv):.1e} (the difference's own error)")

# %% GD beside gf and eom1, integrated by SciPy on eomlab's fields
lr, steps = 0.2, 20
theta = theta0.copy()
for _ in range(steps):
    theta -= lr * f.gradient(theta)
for kind in ["gf", "eom1"]:
    sol = solve_ivp(lambda t, th: f.field(kind, lr, th), (0, lr * steps), f.start_point(kind, lr, theta0),
                    method="DOP853", rtol=1e-10, atol=1e-12)
    print(f"{kind}: distance to GD at t = {lr * steps:g}: {np.linalg.norm(sol.y[:, -1] - theta):.3e}"
          f" ({sol.nfev} field evaluations)")

# %% A sweep over lr as a study (one process), then its orders from the run files
config = {"study": {"name": "notebook", "output": str(out)},
          "data": {"n_samples": 64},
          "model": {"layers": [6, 16, 3]},
          "optimizer": {"lr": [0.08, 0.04, 0.02], "horizon": 0.8, "record_every": 5},
          "flows": {"kinds": ["gf", "eom1", "eom2"], "rtol": 1e-12, "atol": 1e-14},
          "output": {"sharpness": "off"}}
eomlab.run(config, overwrite=True)
with eomlab.Study(out) as study:
    lrs = np.array([r.lr for r in study.runs])
    distances = {flow: np.array([r.distance(flow)[-1] for r in study.runs]) for flow in study.runs[0].flows}
slopes = {flow: np.polyfit(np.log(lrs), np.log(d), 1)[0] for flow, d in distances.items()}
print("slopes of the final distance to GD against lr:", {k: round(s, 3) for k, s in slopes.items()})

# %% Plot the orders (a figure of its own: no pyplot state, any backend)
from matplotlib.figure import Figure

fig = Figure(figsize=(4.5, 3.5))
ax = fig.subplots()
for flow, d in distances.items():
    ax.loglog(lrs, d, "o-", label=f"{flow}: slope {slopes[flow]:.2f}")
ax.set_xlabel("lr")
ax.set_ylabel("distance to GD at t = 0.8")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(out / "orders.png", dpi=110)
print("figure:", out / "orders.png")
