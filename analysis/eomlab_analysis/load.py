"""Lazy access to a study's output directory (DESIGN.md §3.4).

    study = Study("results/quickstart")
    for run in study.runs:
        run.lr, run.status, run.time, run.series(run.discrete, "loss"), run.distance("eom1")
    study.stale    # (file, run id, why) of the files in runs/ that are not runs of study.ini

Run files are opened only when read. A run that is still going or was killed is read up to the
records completely written: every series is cut to the shortest record axis.

`Study.runs` holds only the runs of the study in `<output>/study.ini`: a run file belongs to it when
its `config` attribute has the same values as study.ini (keys that do not change results aside, list
items and numbers compared by value, so `0.1,0.05` = `0.1, 0.05` and `60` = `60.0`), its (lr, seed,
weight_decay) is a point of the study's grid and its file is named after its run_id. Other files, left by an earlier config (`--overwrite`
replaces only the runs of the invocation), are `Study.stale`, each with the reason.

Trajectory names are read, not assumed: the discrete trajectory (`gd`, or the method's name) and the
flows in the order requested come from the root attributes `discrete_trajectory` and `flows` (or
`trajectories`, discrete first); a file written before them has `gd` and, as flows, the other
/observables groups (gf, eom1, eom2, ... by their order, then any other name)."""
import collections
import functools
import math
import pathlib
import re
import threading
import weakref

import h5py
import numpy as np

# Keys that name or place a study or pace its output without changing any result.
IGNORED_KEYS = {"study.name", "study.output", "output.checkpoint_every", "output.progress_every"}
# Defaults of the grid lists (README "Config keys"), for a study.ini that leaves one out.
GRID_DEFAULTS = {"study.seed": "0", "optimizer.lr": "0.05", "model.weight_decay": "0"}
# Attributes naming what a run was computed from besides its config (the data set, model.init's parameters).
INPUT_FINGERPRINTS = ("data_fingerprint", "init_fingerprint")
# Keys added by later versions of eomlab, with their defaults: a config written before a key existed
# (an older study.ini or run file) has the default, as eomlab itself reads it on --resume.
LATER_KEY_DEFAULTS = {"optimizer.divergence_factor": "1e6", "optimizer.method": "gd", "flows.max_steps": "100000",
                      "flows.start_correction": "on", "output.sharpness": "on", "output.rates": "off"}


def text(value):
    """Text of a string however h5py returns it (str, bytes, numpy.bytes_/str_; h5py hands undecodable
    UTF-8 back as surrogate escapes); bytes that are not UTF-8 become U+FFFD."""
    if isinstance(value, str):
        try:
            value = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogatepass")
    return bytes(value).decode("utf-8", "replace")


def plain(value):
    """A value read from HDF5 as plain Python: text for strings, int/float for numpy scalars, the item
    of a one-element array, a list for a longer one."""
    if isinstance(value, (str, bytes)):
        return text(value)
    if isinstance(value, np.ndarray):
        return plain(value.reshape(-1)[0]) if value.size == 1 else [plain(v) for v in value.reshape(-1)]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def attribute(attrs, name, default=None):
    """The one way every attribute is read (`attrs`: an h5py AttributeManager); `default` when it is
    absent, empty or of a type h5py cannot read."""
    try:
        value = attrs[name]
    except (KeyError, OSError, TypeError, ValueError):
        return default
    return default if isinstance(value, h5py.Empty) else plain(value)


def flow_order(name):
    """The order of a flow, from its name: gf 0, eom<P> P; None for any other name (no order to fit)."""
    if name == "gf":
        return 0
    match = re.fullmatch(r"eom(\d+)", name)
    return int(match.group(1)) if match else None


def names(value):
    """The items of a comma-separated list attribute (None when absent)."""
    return None if value is None else [n.strip() for n in str(value).split(",") if n.strip()]


def trajectory_names(f):
    """(discrete, flows) of an open run file: from the root attributes when present, else (files written
    before them) gd and the other /observables groups, gf and eomP by order, then the rest by name."""
    listed = names(attribute(f.attrs, "trajectories")) or []
    discrete = attribute(f.attrs, "discrete_trajectory") or (listed[0] if listed else "gd")
    flows = names(attribute(f.attrs, "flows"))
    if flows is None and listed:
        flows = [t for t in listed if t != discrete]
    groups = list(f.get("observables", {}))
    if flows is None:
        order = {t: flow_order(t) for t in groups}
        flows = sorted((t for t in groups if t != discrete), key=lambda t: (order[t] is None, order[t] or 0, t))
    return discrete, [t for t in flows if t in groups]


def record_lengths(group):
    """Lengths along the record axis of every dataset in `group`, subgroups included."""
    lengths = []
    group.visititems(lambda _, obj: lengths.append(obj.shape[0]) if isinstance(obj, h5py.Dataset) else None)
    return lengths


def intact_study_ini(source):
    """Whether study.ini was written whole, as eomlab checks it: [study] first, an [output] section, a last
    newline."""
    return source.startswith("[study]\n") and "\n[output]\n" in source and source.endswith("\n")


def parse_ini(source):
    """`section.key` -> value of INI text (eomlab's resolved config); lines that are not `key = value`
    (comments, a value's stray continuation) are skipped rather than fatal."""
    values, section = {}, ""
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            values[f"{section}.{key.strip()}"] = value.strip()
    return values


def number(item):
    """An integer exactly (seeds go up to 2^63 - 1, beyond a float's 53 bits), else a float, else None."""
    try:
        return int(item, 10)
    except ValueError:
        pass
    try:
        return float(item)
    except ValueError:
        return None


def normalized(value):
    """A config value compared by what it means: list items stripped, numbers as floats."""
    items = [v.strip() for v in value.split(",")]
    return tuple(item if number(item) is None else number(item) for item in items)


SYNTHETIC_SOURCES = ("gaussian_mixture", "teacher")


def canonical(config):
    """A parsed config as eomlab reads it back (its canonical_config_text): the later keys at their defaults,
    and without the keys an older eomlab accepted and ignored (data.noise and data.seed with a file source,
    data.n_samples, n_features and n_classes with an hdf5 file, model.layers, activation and normalize
    beside model.architecture), which now keep their defaults or are left out."""
    out = {**LATER_KEY_DEFAULTS, **config}
    source = out.get("data.source", "gaussian_mixture")
    if source not in SYNTHETIC_SOURCES:
        out.pop("data.noise", None)
        out.pop("data.seed", None)
    if source.startswith("hdf5:"):
        for key in ("data.n_samples", "data.n_features", "data.n_classes"):
            out.pop(key, None)
    if out.get("model.architecture"):
        for key in ("model.layers", "model.activation", "model.normalize"):
            out.pop(key, None)
    return out


def config_differences(ours, theirs):
    """Keys (result-changing ones only) whose values differ: [(key, ours, theirs)], None for unset. The grid's
    lists are not compared: a run is one point of them (checked against grid()), and --resume may extend
    them (a run of the first lrs is one of the extended study)."""
    ours, theirs = canonical(ours), canonical(theirs)
    keys = sorted((set(ours) | set(theirs)) - IGNORED_KEYS - set(GRID_DEFAULTS))
    return [(k, ours.get(k), theirs.get(k)) for k in keys
            if normalized(ours.get(k, "")) != normalized(theirs.get(k, "")) or (k in ours) != (k in theirs)]


def grid(config):
    """The study's grid as a set of (seed, lr, weight_decay)."""
    lists = [normalized(config.get(k, GRID_DEFAULTS[k])) for k in ["study.seed", "optimizer.lr", "model.weight_decay"]]
    return {(s, lr, wd) for s in lists[0] for lr in lists[1] for wd in lists[2]}


class NotARunFile(ValueError):
    """An HDF5 file (or a directory) in runs/ that holds no run."""


class OpenRunFiles:
    """The run files kept open, at most `limit`, the least recently used closed first (it reopens on use):
    a study of 1100 runs held a descriptor per run, so under the usual limit of 1024 the last 81 were
    filed as unreadable stale runs without a word (an adversarial review). `lock` is held by each read from
    a run file (Run.read, has, flow_status), so that no thread closes a file another is reading; h5py
    serializes its calls anyway. Objects a caller takes from Run.file itself may be closed by reads of 128
    other runs."""
    limit = 128

    def __init__(self):
        self._runs = collections.OrderedDict()  # id(run) -> weak reference, most recently used last
        self.lock = threading.RLock()

    def use(self, run):
        with self.lock:
            self._runs[id(run)] = weakref.ref(run)
            self._runs.move_to_end(id(run))
            while len(self._runs) > self.limit:
                oldest = self._runs.popitem(last=False)[1]()
                if oldest is not None and oldest is not run:
                    oldest.close(forget=False)

    def forget(self, run):
        with self.lock:
            self._runs.pop(id(run), None)


OPEN_RUN_FILES = OpenRunFiles()


class Run:
    """One run file, opened (read-only) on use and kept open until close() or until OPEN_RUN_FILES closes
    it for others; what it reads is cut to the records complete when it was first opened."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._file = None
        self.config_index = 0  # which of its Study's configs (Study.configs) the run has
        try:
            with OPEN_RUN_FILES.lock:
                self._read_header(self.file)
        except Exception:
            self.close()
            raise

    def _read_header(self, f):
        self.attrs = {k: attribute(f.attrs, k) for k in f.attrs}
        if not {"run_id", "config"} & self.attrs.keys() and "step" not in f:
            raise NotARunFile("no run_id, config or step: not written by eomlab as a run, or cut short before its header")
        self.discrete, flows = trajectory_names(f)
        self.trajectories = [t for t in [self.discrete, *flows] if t in f.get("observables", {})]
        lengths = [f["step"].shape[0], f["time"].shape[0]]
        for t in self.trajectories:
            lengths += record_lengths(f[f"observables/{t}"])
        self.records = min(lengths)
        self.tables = {name: f[f"model/{name}"][:] for name in f.get("model", {})}
        # the layers its model made, as eomlab spells them whatever the config's spelling (conv(8, 3) for
        # conv(8,3,stride=1)); None in a file without them
        self.layers = attribute(f["model"].attrs, "architecture") if "model" in f else None
        # whether a batch's loss depends on its other samples (batchnorm); None in a file without it
        coupled = f["model"].attrs.get("couples_samples") if "model" in f else None
        self.couples_samples = None if coupled is None else bool(coupled)

    @property
    def run_id(self):
        return str(self.attrs.get("run_id", self.path.stem))

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
        return str(self.attrs.get("status", "unknown"))

    @property
    def method(self):
        return str(self.attrs.get("method", "gd"))

    @property
    def rates(self):
        """The run recorded rates at the iterates (`rates` = on, DESIGN.md §3.8) and some are readable."""
        return self.attrs.get("rates") == "on" and self.has(self.discrete, "measured_block_rates")

    @property
    def grid_point(self):
        return (self.seed, self.lr, self.weight_decay)

    @functools.cached_property
    def spelled_config(self):
        """The run's config (`config` attribute) by key as written, later keys at their defaults."""
        return canonical(parse_ini(str(self.attrs.get("config", ""))))

    @functools.cached_property
    def config(self):
        """spelled_config with model.architecture as the layers the model made (Run.layers), so that
        respellings that make the same layers (which --resume and --shard accept) are one config."""
        config = dict(self.spelled_config)
        if config.get("model.architecture") and self.layers:
            config["model.architecture"] = self.layers
        return config

    @functools.cached_property
    def variant(self):
        """What the run's config sets besides its grid point and the keys that change no result: runs of
        one study share it (a folder without study.ini may hold several)."""
        return tuple(sorted((k, normalized(v)) for k, v in self.config.items()
                            if k not in IGNORED_KEYS and k not in GRID_DEFAULTS))

    @functools.cached_property
    def diverged(self):
        """Recorded as diverged, or the discrete loss is no longer finite in the records read."""
        return self.status == "diverged" or (self.records > 0 and not math.isfinite(self.series(self.discrete, "loss")[-1]))

    @functools.cached_property
    def max_lr_sharpness(self):
        """max lr·λ_max along the discrete trajectory: the run's attribute, else from the sharpness series
        read (unfinished run)."""
        if "max_lr_sharpness" in self.attrs:
            return float(self.attrs["max_lr_sharpness"])
        if self.records and self.has(self.discrete, "sharpness"):
            return self.lr * float(np.max(self.series(self.discrete, "sharpness")))
        return float("nan")

    @functools.cached_property
    def max_lr_preconditioned_sharpness(self):
        """max lr·λ_max(P⁻¹H) along RMSProp or Adam (nan for the other methods): the run's attribute, else
        from the series read."""
        if "max_lr_preconditioned_sharpness" in self.attrs:
            return float(self.attrs["max_lr_preconditioned_sharpness"])
        if self.records and self.has(self.discrete, "preconditioned_sharpness"):
            return self.lr * float(np.max(self.series(self.discrete, "preconditioned_sharpness")))
        return float("nan")

    @property
    def stability(self):
        """(what, max value, limit): what the method's edge of stability is judged by, "lr·λ_max" or for
        RMSProp and Adam "lr·λ_max(P⁻¹H)", its largest value and the method's limit (2 for GD)."""
        limit = float(self.attrs.get("stable_lr_sharpness", 2.0))
        if "max_lr_preconditioned_sharpness" in self.attrs or (
                self.records and self.has(self.discrete, "preconditioned_sharpness")):
            return "lr·λ_max(P⁻¹H)", self.max_lr_preconditioned_sharpness, limit
        return "lr·λ_max", self.max_lr_sharpness, limit

    @property
    def edge_of_stability(self):
        """Why the method is past its edge of stability (GD: lr·λ_max > 2), or None."""
        note = str(self.attrs.get("edge_of_stability", "no"))
        if note != "no":
            return note
        what, value, limit = self.stability
        return f"{what} = {value:.4g} > {limit:.4g}" if value > limit else None

    @property
    def flows(self):
        return [t for t in self.trajectories if t != self.discrete]

    def names_of(self, table):
        """The `name` column of a /model table (layout, scale_invariant_blocks, translation_components)."""
        return [plain(n) for n in self.tables[table]["name"]]

    def __getstate__(self):
        """Pickled without its open file, which reopens on use: the report's figures are drawn in other
        processes."""
        return {**self.__dict__, "_file": None}

    @property
    def file(self):
        if self._file is None or not self._file.id.valid:
            self._file = h5py.File(self.path, "r")
        OPEN_RUN_FILES.use(self)
        return self._file

    def close(self, forget=True):
        if forget:
            OPEN_RUN_FILES.forget(self)
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, name):
        """A dataset along the record axis, cut to the complete records."""
        with OPEN_RUN_FILES.lock:
            return self.file[name][: self.records]

    @property
    def step(self):
        return self.read("step")

    @functools.cached_property
    def time(self):
        """The record times (read once; read-only)."""
        t = self.read("time")
        t.setflags(write=False)
        return t

    def series(self, trajectory, observable):
        """An observable of a trajectory along the records; a KeyError names what the run has instead (h5py's
        said "component not found")."""
        if not self.has(trajectory, observable):
            if trajectory not in self.trajectories:
                raise KeyError(f"{self.path.name}: no trajectory '{trajectory}' (it has {', '.join(self.trajectories)})")
            with OPEN_RUN_FILES.lock:
                held = ", ".join(sorted(self.file[f"observables/{trajectory}"]))
            raise KeyError(f"{self.path.name}: {trajectory} has no observable '{observable}' (it has {held})")
        return self.read(f"observables/{trajectory}/{observable}")

    def distance(self, flow):
        """‖θ_flow(t_k) − θ_discrete(k)‖: `distance_to_discrete` (DESIGN.md §3.7), else `distance_to_gd`."""
        if flow == self.discrete:
            raise KeyError(f"{self.path.name}: '{flow}' is the discrete trajectory the distances are measured to; "
                           f"a flow's distance is one of {', '.join(self.flows)}")
        return self.series(flow, "distance_to_discrete" if self.has(flow, "distance_to_discrete") else "distance_to_gd")

    def has(self, trajectory, observable):
        with OPEN_RUN_FILES.lock:
            return f"observables/{trajectory}/{observable}" in self.file

    def flow_status(self, trajectory):
        with OPEN_RUN_FILES.lock:
            return attribute(self.file[f"observables/{trajectory}"].attrs, "status", "ok")


class Study:
    def __init__(self, output):
        self.dir = pathlib.Path(output)
        if not (self.dir / "runs").is_dir():
            if (self.dir / "study.ini").is_file():
                raise FileNotFoundError(f"{self.dir} has no runs/ directory yet: its study has written no run")
            raise FileNotFoundError(f"{self.dir} has no runs/ directory: not an eomlab study output")
        ini = self.dir / "study.ini"
        self.config_text = text(ini.read_bytes()) if ini.is_file() else None
        self.config_note = None  # how the config was found, when not in an intact study.ini
        if self.config_text is not None and not intact_study_ini(self.config_text):
            self._recover_config("empty" if not self.config_text else "cut short")
        self.config = parse_ini(self.config_text or "")
        self._runs = self._stale = None

    def _recover_config(self, damage):
        """A study.ini left empty or cut short (by an older eomlab, a full disk): the config recorded in the
        first readable run file stands in for it, as eomlab itself does on --resume and --catalog."""
        for path in sorted((self.dir / "runs").glob("*.h5")):
            try:
                with h5py.File(path, "r") as f:
                    recorded = text(f.attrs["config"])
            except (OSError, KeyError, ValueError, TypeError):
                continue
            self.config_text = recorded
            self.config_note = f"study.ini is {damage}; the config recorded in runs/{path.name} is used"
            return
        self.config_text = None
        self.config_note = f"study.ini is {damage} and no run file records a config"

    @property
    def name(self):
        return self.config.get("study.name", self.dir.name)

    @property
    def runs(self):
        """The runs of the study in study.ini (every readable run file when there is no study.ini)."""
        if self._runs is None:
            self._load()
        return self._runs

    @property
    def configs(self):
        """The runs' distinct configs (Run.variant as a dict; one for a study.ini), in the order of their
        first run: run.config_index indexes it."""
        if self._runs is None:
            self._load()
        return self._configs

    @property
    def stale(self):
        """[(file name, run id, reason)] of the files in runs/ that are not runs of this study."""
        if self._stale is None:
            self._load()
        return self._stale

    @property
    def mixed_inputs(self):
        """[(config index, attribute, {fingerprint: [run ids]})] where runs of one config (Study.configs) hold
        several values of one of the INPUT_FINGERPRINTS: computed from other data (a data file changed between
        shards) or other initial parameters, as eomlab --catalog warns; or begun by an eomlab from 168ee9b to
        aaa2e9b, whose image fingerprints were of the labels only and which later versions resume."""
        mixed = []
        for index in range(len(self.configs)):
            runs = [r for r in self.runs if r.config_index == index]
            for name in INPUT_FINGERPRINTS:
                ids = {}
                for r in runs:
                    if name in r.attrs:
                        ids.setdefault(str(r.attrs[name]), []).append(r.run_id)
                if len(ids) > 1:
                    mixed.append((index, name, ids))
        return mixed

    def _load(self):
        runs, self._stale, readable = [], [], []
        for path in sorted((self.dir / "runs").glob("*.h5")):
            try:
                if path.is_dir():
                    raise NotARunFile("a directory, not a file")
                readable.append((path, Run(path), None))
            except NotARunFile as e:
                readable.append((path, None, f"not a run file: {e}"))
            except (OSError, KeyError, ValueError, TypeError) as e:
                readable.append((path, None, f"unreadable: {e}"))
        self._spell_architecture_as_made([run for _, run, _ in readable if run])
        for path, run, reason in readable:
            try:
                reason = reason or self.not_a_run_of_this_study(run)
            except (OSError, KeyError, ValueError, TypeError) as e:
                reason = f"unreadable: {e}"
            if reason:
                self._stale.append((path.name, run.run_id if run else "", reason))
                if run:
                    run.close()
            else:
                runs.append(run)
        runs = self._drop_duplicates(runs)
        self._runs = sorted(runs, key=lambda r: (r.seed, r.weight_decay, -r.lr))
        variants = {}
        for run in self._runs:
            run.config_index = variants.setdefault(run.variant, len(variants))
        self._configs = [dict(v) for v in variants]

    def close(self):
        """Closes every run file read so far (each stays readable: it reopens on use)."""
        for run in self._runs or []:
            run.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spell_architecture_as_made(self, runs):
        """study.ini's model.architecture as the layers it made in a run written with the same spelling
        (Run.config), where one is."""
        spelled = self.config.get("model.architecture")
        for run in runs:
            if spelled and run.layers and run.spelled_config.get("model.architecture") == spelled:
                self.config = {**self.config, "model.architecture": run.layers}
                return

    def not_a_run_of_this_study(self, run):
        """Why `run` is not one of the study in study.ini, or None when it is."""
        if self.config_text is None:
            return None
        differences = config_differences(self.config, run.config)
        if differences:
            shown = "; ".join(f"{k} = {theirs if theirs is not None else '(unset)'} "
                              f"(study.ini: {ours if ours is not None else '(unset)'})" for k, ours, theirs in differences[:4])
            more = f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
            return f"written with another config: {shown}{more}"
        if run.grid_point not in grid(self.config):
            return (f"(seed, lr, weight_decay) = ({run.seed}, {run.lr!r}, {run.weight_decay!r}) "
                    "is not a point of the study's grid")
        if "run_id" in run.attrs and run.run_id != run.path.stem:
            return f"holds run '{run.run_id}', whose file is {run.run_id}.h5, not '{run.path.stem}' (copied or renamed by hand)"
        return None

    def _drop_duplicates(self, runs):
        """One run per config and grid point: the file named after its run_id if one is (a copy under another
        name, however new, does not take its place), else the most recently written; the others are stale."""
        newest = {}
        for run in sorted(runs, key=lambda r: (r.path.stem == r.run_id, r.path.stat().st_mtime_ns), reverse=True):
            point = (run.method, run.variant) + run.grid_point
            if point in newest:
                kept = newest[point]
                why = "the file named after its run" if kept.path.stem == kept.run_id != run.path.stem else "which is newer"
                self._stale.append((run.path.name, run.run_id, f"same grid point as {kept.path.name}, {why}"))
            else:
                newest[point] = run
        return list(newest.values())

    def catalog(self):
        """The catalog's /summary rows (sweep.h5, DESIGN.md §3.4) as a numpy structured array, or None
        before there is a catalog. Its text columns are str, as Run's (the file's fixed-length bytes made
        `summary["status"] == "diverged"` a scalar False and a filter on run_id silently empty)."""
        path = self.dir / "sweep.h5"
        if not path.exists():
            return None
        with h5py.File(path, "r") as f:
            rows = f["summary"][:]
        fields = rows.dtype.names
        kinds = [(n, f"U{rows.dtype[n].itemsize}" if rows.dtype[n].kind == "S" else rows.dtype[n]) for n in fields]
        out = np.empty(rows.shape, dtype=kinds)
        for n in fields:
            out[n] = np.char.decode(rows[n], "utf-8", "replace") if rows.dtype[n].kind == "S" else rows[n]
        return out

    @property
    def summary(self):
        """DESIGN.md §3.9's name for the catalog's summary rows (catalog())."""
        return self.catalog()


def fit_slope(x, y):
    """Least-squares slope of log y against log x (NaN with fewer than two usable points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])
