"""Lazy access to a study's output directory (DESIGN.md §3.4).

    study = Study("results/quickstart")
    for run in study.runs:
        run.lr, run.status, run.time, run.series("eom1", "distance_to_gd")

Run files are opened only when read. A run that is still going or was killed is read up to the
records completely written: every series is cut to the shortest record axis."""
import configparser
import pathlib

import h5py
import numpy as np

FLOW_ORDER = {"gf": 0, "eom1": 1, "eom2": 2, "eom3": 3}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


class Run:
    def __init__(self, path):
        self.path = pathlib.Path(path)
        with h5py.File(self.path, "r") as f:
            self.attrs = {k: (_text(v) if isinstance(v, (bytes, str)) else v) for k, v in f.attrs.items()}
            self.trajectories = [t for t in ["gd", "gf", "eom1", "eom2", "eom3"] if t in f.get("observables", {})]
            lengths = [f["step"].shape[0], f["time"].shape[0]]
            for t in self.trajectories:
                lengths += [ds.shape[0] for ds in f[f"observables/{t}"].values() if isinstance(ds, h5py.Dataset)]
            self.records = min(lengths)
            self.tables = {name: f[f"model/{name}"][:] for name in f.get("model", {})}

    @property
    def run_id(self):
        return self.attrs["run_id"]

    @property
    def lr(self):
        return float(self.attrs["lr"])

    @property
    def seed(self):
        return int(self.attrs["seed"])

    @property
    def weight_decay(self):
        return float(self.attrs["weight_decay"])

    @property
    def status(self):
        return self.attrs.get("status", "unknown")

    @property
    def flows(self):
        return [t for t in self.trajectories if t != "gd"]

    def read(self, name):
        """A dataset along the record axis, cut to the complete records."""
        with h5py.File(self.path, "r") as f:
            return f[name][: self.records]

    @property
    def step(self):
        return self.read("step")

    @property
    def time(self):
        return self.read("time")

    def series(self, trajectory, observable):
        return self.read(f"observables/{trajectory}/{observable}")

    def has(self, trajectory, observable):
        with h5py.File(self.path, "r") as f:
            return f"observables/{trajectory}/{observable}" in f

    def flow_status(self, trajectory):
        with h5py.File(self.path, "r") as f:
            return _text(f[f"observables/{trajectory}"].attrs.get("status", "ok"))


class Study:
    def __init__(self, output):
        self.dir = pathlib.Path(output)
        if not (self.dir / "runs").is_dir():
            raise FileNotFoundError(f"{self.dir} has no runs/ directory: not an eomlab study output")
        self.config = configparser.ConfigParser()
        if (self.dir / "study.ini").exists():
            self.config.read(self.dir / "study.ini")
        self._runs = None

    @property
    def name(self):
        return self.config.get("study", "name", fallback=self.dir.name)

    @property
    def runs(self):
        if self._runs is None:
            runs = []
            for path in sorted((self.dir / "runs").glob("*.h5")):
                try:
                    runs.append(Run(path))
                except (OSError, KeyError):
                    pass  # unreadable: reported by the catalog as such
            self._runs = sorted(runs, key=lambda r: (r.seed, r.weight_decay, -r.lr))
        return self._runs

    def catalog(self):
        path = self.dir / "sweep.h5"
        if not path.exists():
            return None
        with h5py.File(path, "r") as f:
            return f["summary"][:]


def fit_slope(x, y):
    """Least-squares slope of log y against log x (NaN with fewer than two usable points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])
