"""analysis/report OUTPUT_DIR [--out DIR] [--jobs N]: a Markdown report with CSV tables and PNG plots of a study.

Only the runs of the study in study.ini are reported (load.Study); other files in runs/ are listed as
stale. Text from the files goes through md() into Markdown and csv_cell() into CSV.

Trajectory names come from the run files (load.Run): the discrete trajectory (gd, or the method's) and
the flows in the order requested; a flow's order comes from its name (gf 0, eomP P), and a flow with
another name is shown everywhere but in the order fits. Columns named after the discrete trajectory use
its name when the runs share one, else `discrete`.

Tables (each also a CSV file):
  runs.csv           one row per run: status, final loss and distance to the discrete trajectory (GD) of
                     every trajectory, lr·λ_max (and lr·λ_max(P⁻¹H) for RMSProp and Adam)
  stale.csv          files in runs/ that are not runs of the study, and why
  orders.csv         per (seed, weight_decay) and flow with an order: slope of the final-time distance to GD
                     against lr on log-log axes, beside the expected order p + 1 (DESIGN.md §1.3); runs
                     that diverged or are past the edge of stability are left out of the fit and named
  translation.csv    runs with weight decay and translation components (cross-entropy, or a layernorm at
                     the end): the rate of the output bias class-sum,
                     measured on GD and on each flow, beside the predictions log(1-ηλ)/η (GD), -λ (gf),
                     -λ - ηλ²/2 - ... (eomP) (DESIGN.md §1.4; for methods gd and sgd, gf alone otherwise) and the
                     differences; the same for the norm ‖Σ_c W_c‖ of the output weights' class-sum vector,
                     and, with rates at the iterates, its d‖s‖²/dt measured against each flow's prediction
  scale.csv          runs with normalized layers: the mean rate of change of each scale-invariant block's
                     squared norm, on GD and each flow, and each flow's difference from GD
  rates.csv          runs with `rates` on (DESIGN.md §3.8): per block, the rate of ‖θ_A‖² measured from the
                     method's next step and predicted by each flow's field at the discrete iterates, at the
                     first, middle and last record and summarized over all records (RATES_TEXT)
Plots: distance to GD against time, final distance against lr, loss curves, sharpness against the
method's limit (2/lr for GD; RMSProp and Adam: λ_max(P⁻¹H) against theirs), and the translation
component against time."""
import argparse
import collections
import concurrent.futures
import csv
import itertools
import math
import multiprocessing
import os
import pathlib
import re
import sys
import unicodedata

import numpy as np

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.lines
import matplotlib.ticker
from matplotlib.figure import Figure

from .load import Study, fit_slope, flow_order, grid, text

ORDER_TOLERANCE = 0.25
STYLE = {"gf": "--", "eom1": "-.", "eom2": ":", "eom3": (0, (1, 3))}
OTHER_FLOW_STYLE = (0, (5, 1, 1, 1, 1, 1))


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)")
MARKDOWN = {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~",
            "#": "\\#", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


class Gap(float):
    """A difference between two rates (measured minus predicted): written in scientific notation with
    six significant digits (as every other number of the tables), so that gaps of 1e-6, 1e-9 and 1e-12
    read apart at a glance."""


class Setting(float):
    """A run's lr or weight decay: written as the shortest text that reads back as the value, so that the
    tables tell apart what the run ids and the grid tell apart (0.1 and 0.1000001)."""


def fmt(x):
    if isinstance(x, Gap):
        return f"{x:.5e}"
    if isinstance(x, Setting):
        return number_text(x)
    return f"{x:.6g}" if isinstance(x, (float, np.floating)) else str(x)


def visible(s):
    """Control characters (newline, tab, NUL, ...) as escapes such as \\n, so a value stays on its line."""
    return "".join(c.encode("unicode_escape").decode() if unicodedata.category(c) == "Cc" else c for c in text(s))


def md(x):
    """A value as Markdown text that shows it literally: no line breaks, tables, code, links or HTML."""
    return "".join(MARKDOWN.get(c, c) for c in visible(fmt(x)))


def csv_cell(x):
    """A value for a CSV cell; text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets
    a leading ' (OWASP CSV injection); numbers such as -0.5 stay numbers."""
    s = text(fmt(x))
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") and not NUMBER.fullmatch(s) else s


def write_table(out, name, header, rows, shown=None):
    """Writes every row to <name>.csv; returns the Markdown table of the rows `shown` (default all)."""
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_cell(h) for h in header])
        for r in rows:
            w.writerow([csv_cell(v) for v in r])
    lines = [header, ["---"] * len(header)] + [[md(v) for v in r] for r in (rows if shown is None else shown)]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def style(run, trajectory):
    """Line style of a trajectory: solid for the discrete one, one per known flow, a shared one for others."""
    return "-" if trajectory == run.discrete else STYLE.get(trajectory, OTHER_FLOW_STYLE)


def flows_of(runs):
    """Every flow of the runs, in the order the runs name them."""
    return list(dict.fromkeys(t for r in runs for t in r.flows))


def discrete_name(runs):
    """The discrete trajectory's name in headers and text: the runs' own when they share one."""
    found = {r.discrete for r in runs}
    return found.pop() if len(found) == 1 else "discrete"


def eom_rate(order, lr, wd):
    """Truncated series of log(1 - ηλ)/η: the rate of a translation component under GD's eom`order`."""
    return -sum(lr ** (j - 1) * wd ** j / j for j in range(1, order + 2))


def predicted_translation_rate(run, trajectory):
    """Predicted log-rate of a translation component (DESIGN.md §1.4): log(1 − ηλ)/η on GD, −λ on gf (plain
    gradient flow for every method), GD's eomP series; the same for sgd, whose every minibatch step scales
    the component by 1 − ηλ as GD's step does (each batch's loss has the symmetry); NaN where no prediction
    is known (methods with memory)."""
    lr, wd, order = run.lr, run.weight_decay, flow_order(trajectory)
    if trajectory == "gf":
        return -wd
    if run.method not in ("gd", "sgd") or (trajectory != run.discrete and order is None):
        return float("nan")
    if trajectory == run.discrete:
        return math.log(1 - lr * wd) / lr if lr * wd < 1 else float("nan")
    return eom_rate(order, lr, wd)


def runs_table(study):
    flows, d = flows_of(study.runs), discrete_name(study.runs)
    header = ["run_id", "lr", "seed", "weight_decay", "status", "final_step", f"final_loss_{d}"]
    header += [f"final_loss_{t}" for t in flows] + [f"final_distance_{t}" for t in flows] + ["max_lr_sharpness"]
    preconditioned = any(r.has(r.discrete, "preconditioned_sharpness") for r in study.runs if r.records)
    if preconditioned:
        header.append("max_lr_preconditioned_sharpness")
    configs = len(study.configs) > 1
    if configs:
        header.append("config")
    rows = []
    for r in study.runs:
        row = [r.run_id, Setting(r.lr), r.seed, Setting(r.weight_decay), r.status, int(r.step[-1]) if r.records else -1,
               float(r.series(r.discrete, "loss")[-1]) if r.records else float("nan")]
        row += [float(r.series(t, "loss")[-1]) if t in r.flows and r.records else float("nan") for t in flows]
        row += [float(r.distance(t)[-1]) if t in r.flows and r.records else float("nan") for t in flows]
        row.append(r.max_lr_sharpness)
        if preconditioned:
            row.append(r.max_lr_preconditioned_sharpness)
        if configs:
            row.append(r.config_index + 1)
        rows.append(row)
    return header, rows


def left_out_of_fits(run):
    """Why a run's distances cannot measure an order (it diverged, did not finish, or the discrete
    trajectory is past the edge of stability where no flow describes it), or None."""
    if run.diverged:
        return f"status {run.status}" if run.status == "diverged" else f"{run.discrete} loss not finite"
    if run.status != "complete":
        last = f"its last record is at t = {float(run.time[-1]):g}" if run.records else "no record yet"
        return f"status {run.status} (unfinished: {last})"
    if run.records < 2:  # a complete run whose file was cut short or damaged
        return f"status complete, but {run.records} record(s) readable"
    if not run.edge_of_stability:
        return None
    what, value, _ = run.stability
    return f"past the edge of stability (max {what} = {value:.4g})"


def indices_of_times(times, t):
    """For each of the times t, the index of the record of `times` (increasing) at that time to rounding,
    or -1."""
    t = np.asarray(t, float)
    if len(times) == 0:
        return np.full(t.shape, -1)
    right = np.clip(np.searchsorted(times, t), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.where(np.abs(times[left] - t) < np.abs(times[right] - t), left, right)
    close = np.abs(times[nearest] - t) <= 1e-9 * np.maximum(1.0, np.abs(t))
    return np.where(close, nearest, -1)


def index_of_time(times, t):
    """The index of the record at time t (to rounding), or None."""
    i = int(indices_of_times(times, [t])[0])
    return i if i >= 0 else None


def common_time(runs):
    """The latest time after 0 at which every run has a record, or None (runs of optimizer.steps at
    several lrs end at different times and may share no record; so do no runs)."""
    if not runs:
        return None
    candidates = runs[0].time[runs[0].time > 0]
    shared = np.ones(len(candidates), bool)
    for r in runs[1:]:
        shared &= indices_of_times(r.time, candidates) >= 0
    return float(candidates[shared].max()) if shared.any() else None


def common_final_distance(runs, flow):
    """Distance to the discrete trajectory at the latest time every run recorded: (lrs, distances, time,
    [(run, why it gives no point)]); time None when the runs share no record after t = 0."""
    t_end = common_time(runs)
    lrs, dist, missing = [], [], []
    for r in runs:
        if t_end is None:
            continue
        if flow not in r.flows:
            missing.append((r, f"no {flow} trajectory"))
            continue
        d = float(r.distance(flow)[index_of_time(r.time, t_end)])
        if math.isfinite(d) and d > 0:
            lrs.append(r.lr)
            dist.append(d)
        else:
            status = r.flow_status(flow)
            missing.append((r, f"{flow} distance {d:g} at t = {t_end:g}" + ("" if status == "ok" else f" ({flow} {status})")))
    return lrs, dist, t_end, missing


def no_common_time(runs):
    ends = ", ".join(number_text(t) for t in sorted({float(r.time[-1]) for r in runs}))
    return (f"no record time after t = 0 is common to the runs (they end at t = {ends}; optimizer.horizon gives a "
            "sweep one final time)")


def groups(runs, min_records=2):
    """Runs with at least `min_records` records by (method, seed, weight_decay, config): a folder without
    study.ini may hold runs of several methods or configs (another network, momentum, horizon), which are
    never fitted or drawn together."""
    out = {}
    for r in runs:
        if r.records >= min_records:
            out.setdefault((r.method, r.seed, r.weight_decay, r.config_index), []).append(r)
    return out


def number_text(x):
    """x as %g where that reads back as x, else in full (file names and labels must tell values apart)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def several_methods(every):
    return len({key[0] for key, _ in every}) > 1


def several_configs(every):
    """Whether a method has runs of several configs (methods tell their own runs apart already)."""
    return len({(key[0], key[3]) for key, _ in every}) > len({key[0] for key, _ in every})


def group_suffix(key, every):
    """The file-name suffix of a group's figures: none for a single group, else _seed<S>_wd<W>, preceded
    by _<method> when the groups have several methods and followed by _config<C> when several configs."""
    method, seed, wd, config = key
    if len(every) == 1:
        return ""
    return ((f"_{method}" if several_methods(every) else "") + f"_seed{seed}_wd{number_text(wd)}"
            + (f"_config{config + 1}" if several_configs(every) else ""))


def group_label(key, every):
    method, seed, wd, config = key
    return ((f"{method}, " if several_methods(every) else "") + f"seed {seed}, weight decay {number_text(wd)}"
            + (f", config {config + 1}" if several_configs(every) else ""))


def plotted(study):
    """The runs the plots show: diverged ones would only stretch the axes."""
    return [r for r in study.runs if not r.diverged]


def order_fits(study):
    """Per (seed, weight_decay, config) sweeping two lrs or more: (seed, wd, config index, fitted runs,
    [(run, why left out)]). Runs of fewer than two records are left out with the reason, not dropped (a
    seed whose other runs were stopped at their first record vanished from the fits without a word)."""
    fits = []
    for (_, seed, wd, config), runs in sorted(groups(study.runs, min_records=0).items()):
        if len({r.lr for r in runs}) >= 2:
            why = {r: left_out_of_fits(r) for r in runs}
            fits.append((seed, wd, config, [r for r in runs if not why[r]], [(r, why[r]) for r in runs if why[r]]))
    return fits


def ordered(flows):
    """The flows whose name gives an order (gf, eomP): the ones an order fit measures."""
    return [t for t in flows if flow_order(t) is not None]


def gf_is_eom0(run):
    """Whether gradient flow θ' = −∇L is the run's method's eom0 (DESIGN.md §1.5): GD's, and sgd's (−ḡ at
    epoch boundaries) unless a batch's loss depends on its other samples (the run file's /model
    couples_samples: batchnorm, whose batches have their own statistics; files before it: batchnorm among
    the run's layers), whose mean gradient is then not ∇L. gf models no other method (heavy ball's eom0 is
    −g/(1−β), the adaptive methods' are preconditioned)."""
    coupled = run.couples_samples if run.couples_samples is not None else "batchnorm" in (run.layers or "")
    return run.method == "gd" or (run.method == "sgd" and not coupled)


def expected_order(flow, run):
    """The slope a flow's distance to the run's method should have against lr (DESIGN.md §1.3, §1.5): P + 1
    for the method's eomP, 1 for gf where it is the method's eom0 (None: nothing expected)."""
    order = flow_order(flow)
    if order is None or (flow == "gf" and not gf_is_eom0(run)):
        return None
    return order + 1


def outside_regime(points, flow, run):
    """The lrs at which a model is no closer to the method than the model one order below it (DESIGN.md
    §1.5: the series in ηλ/(1−β)² does not converge there, whatever the slope): [(lr, its distance, the
    lower model, that one's distance)], the method's own eomP before gf. `points`: {flow:
    common_final_distance(...)} of the group's flows."""
    expected = expected_order(flow, run)
    lower = sorted((t for t in points if expected is not None and expected_order(t, run) == expected - 1),
                   key=lambda t: t == "gf")
    if not lower:
        return []
    below = dict(zip(*points[lower[0]][:2]))
    return [(lr, d, lower[0], below[lr]) for lr, d in zip(*points[flow][:2]) if lr in below and d >= below[lr]]


def orders_table(fits, configs=False):
    """The order fits' rows; with `configs` (a folder of several), a last column names each row's config."""
    header = ["seed", "weight_decay", "flow", "time", "lrs", "slope", "expected", "within_0.25", "fitted_lrs",
              "left_out", "method", "outside_regime"] + (["config"] if configs else [])
    rows = []
    for seed, wd, config, runs, left_out in fits:
        excluded = "; ".join(f"lr {r.lr!r}: {why}" for r, why in left_out)
        every = runs + [r for r, _ in left_out]  # a group whose runs are all left out still gets its rows
        method = every[0].method
        points = {flow: common_final_distance(runs, flow) for flow in ordered(flows_of(every))}
        for flow, (lrs, dist, t_end, missing) in points.items():
            slope = fit_slope(lrs, dist)
            expected = expected_order(flow, every[0])
            outside = outside_regime(points, flow, every[0])
            within = ("n/a" if expected is None or not math.isfinite(slope)  # no slope from fewer than two lrs
                      else "outside its regime" if outside
                      else "yes" if abs(slope - expected) <= ORDER_TOLERANCE else "no")
            why = [excluded] if excluded else []
            if t_end is not None:
                why += [f"lr {r.lr!r}: {w}" for r, w in missing]
            elif runs:
                why.append(no_common_time(runs))
            rows.append([seed, Setting(wd), flow, float("nan") if t_end is None else t_end, len(lrs), slope,
                         "" if expected is None else expected, within, " ".join(repr(lr) for lr in lrs),
                         "; ".join(why), method,
                         "; ".join(f"lr {lr!r}: {d:.3g} >= {lower} {e:.3g}" for lr, d, lower, e in outside)]
                        + ([config + 1] if configs else []))
    return header, rows


def log_rate(s, time):
    """(1/t)·log(s(t)/s(0)) over the records of a series s (NaN when s changes sign or starts at 0)."""
    return math.log(s[-1] / s[0]) / time[-1] if s[0] != 0 and s[-1] / s[0] > 0 else float("nan")


def relative_error(predicted, measured):
    """‖predicted − measured‖ / ‖measured‖ over the records given (NaN when every measured rate is 0)."""
    scale = np.linalg.norm(measured)
    return float(np.linalg.norm(predicted - measured) / scale) if scale > 0 else float("nan")


def rate_columns(flows, prefix=""):
    return [f"{prefix}measured"] + [c for t in flows for c in (f"{prefix}predicted_{t}", f"{prefix}rel_error_{t}")]


ROUNDING_RATE = 1e-12  # a block's measured rate this far below the record's largest is rounding, not a rate


def rate_cells(measured, predicted, flows, which, rounding=None):
    """Cells of rate_columns over the records `which` of the series [R]: the mean measured rate, then per
    flow the mean predicted rate and relative_error (NaN for a flow without predictions, and where every
    measured rate is at most its record's `rounding` [R]: an error relative to rounding noise means nothing)."""
    cells = [float(np.mean(measured[which]))]
    noise = rounding is not None and bool(np.all(np.abs(measured[which]) <= rounding[which]))
    for t in flows:
        p = predicted.get(t)
        error = math.nan if noise or p is None else relative_error(p[which], measured[which])
        cells += [float(np.mean(p[which])), error] if p is not None else [math.nan] * 2
    return cells


def predicted_rates(run, group):
    """{flow: predictions [R, ...]} of /observables/<discrete>/<group>/<flow> (DESIGN.md §3.8)."""
    return {t: run.series(run.discrete, f"{group}/{t}") for t in run.flows if run.has(run.discrete, f"{group}/{t}")}


def shown_records(run):
    """(record, step, time, records) of a block's rows in the rate table: the first, middle and last
    record one by one, then `all` of them."""
    step, time = run.step, run.time
    return ([(k, int(step[k]), float(time[k]), slice(k, k + 1)) for k in sorted({0, (run.records - 1) // 2, run.records - 1})]
            + [("all", "", "", slice(None))])


def rates_table(runs):
    flows = flows_of(runs)
    header = ["run_id", "lr", "weight_decay", "block", "record", "step", "time"] + rate_columns(flows) + ["lr_grad_norm_sq"]
    rows = []
    for r in runs:
        measured = r.series(r.discrete, "measured_block_rates")
        predicted = predicted_rates(r, "predicted_block_rates")
        gap = (r.lr * r.series(r.discrete, "block_grad_norms") if r.has(r.discrete, "block_grad_norms")
               else np.full_like(measured, math.nan))
        # Per record (a diverging run's last rates would set the scale of every earlier record).
        rounding = ROUNDING_RATE * np.max(np.where(np.isfinite(measured), np.abs(measured), 0.0), axis=1)
        for b, block in enumerate(r.names_of("layout")):
            for record, step, time, which in shown_records(r):
                rows.append([r.run_id, Setting(r.lr), Setting(r.weight_decay), block, record, step, time]
                            + rate_cells(measured[:, b], {t: p[:, b] for t, p in predicted.items()}, flows, which, rounding)
                            + [float(np.mean(gap[which, b]))])
    return header, rows


def weight_sum(components):
    """The output layer's weight class-sum vector s_j = Σ_c W[c, j]: every translation component [R, C]
    but the last (the bias class-sum)."""
    return components[..., :-1]


def weight_sum_rates(run):
    """d‖s‖²/dt of the weight class-sum vector at the discrete iterates: the measured one [R], that of the
    exponential through ‖s_k‖² and ‖s_{k+1}‖² (s_{k+1} = s_k + η·Δs from the method's next step):
    ‖s_k‖²·log(‖s_{k+1}‖²/‖s_k‖²)/η, GD's exact rate since its s decays geometrically (2⟨s, Δs⟩/η would be
    gf's field by construction); and {flow: [R]} each flow's 2⟨s, ds/dt⟩ with ds/dt from its field."""
    s = weight_sum(run.series(run.discrete, "translation_components"))
    if s.shape[-1] == 0:  # no weight class-sums (a weight-normalized output layer): nothing to measure
        nan = np.full(s.shape[0], np.nan)
        return nan, {t: nan for t in predicted_rates(run, "predicted_translation_rates")}
    now = np.einsum("kj,kj->k", s, s)
    after = s + run.lr * weight_sum(run.series(run.discrete, "measured_translation_rates"))
    later = np.einsum("kj,kj->k", after, after)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = np.where((now > 0) & (later > 0), now * np.log(later / now) / run.lr, np.nan)
    predicted = predicted_rates(run, "predicted_translation_rates")
    return measured, {t: 2 * np.einsum("kj,kj->k", s, weight_sum(p)) for t, p in predicted.items()}


def translation_log_rates(run, trajectory, time):
    """(1/t)·log(x(t)/x(0)) on a trajectory of the bias class-sum and of ‖s‖, s the weight class-sums."""
    if trajectory not in run.trajectories:
        return math.nan, math.nan
    c = run.series(trajectory, "translation_components")
    return log_rate(c[:, -1], time), log_rate(np.linalg.norm(weight_sum(c), axis=1), time)


def translation_row(run, flows, with_rates):
    bias, weights = translation_log_rates(run, run.discrete, run.time)
    row, weight_cells = [run.run_id, Setting(run.lr), Setting(run.weight_decay), bias, predicted_translation_rate(run, run.discrete)], [weights]
    for t in flows:
        predicted = predicted_translation_rate(run, t) if t in run.flows else math.nan
        flow_bias, flow_weights = translation_log_rates(run, t, run.time)
        row += [flow_bias, predicted, Gap(bias - predicted)]
        weight_cells += [flow_weights, Gap(weights - predicted)]
    if with_rates:
        weight_cells += (rate_cells(*weight_sum_rates(run), flows, slice(None))
                         if run.has(run.discrete, "measured_translation_rates") else [math.nan] * (1 + 2 * len(flows)))
    return row + weight_cells


def translation_table(study):
    runs = [r for r in study.runs if r.weight_decay > 0 and r.has(r.discrete, "translation_components") and r.records > 1]
    flows, d = flows_of(runs), discrete_name(runs)
    with_rates = any(r.has(r.discrete, "measured_translation_rates") for r in runs)
    header = ["run_id", "lr", "weight_decay", f"measured_{d}", f"predicted_{d}"]
    for t in flows:
        header += [f"measured_{t}", f"predicted_{t}", f"{d}_minus_{t}_prediction"]
    header += [f"weight_sum_measured_{d}"] + [c for t in flows for c in (f"weight_sum_measured_{t}",
                                                                          f"weight_sum_{d}_minus_{t}_prediction")]
    header += rate_columns(flows, "weight_sum_sq_rate_") if with_rates else []
    return header, [translation_row(r, flows, with_rates) for r in runs]


SCALE_BLOCKS_SHOWN = 8  # per run in report.md


def scale_table(study):
    flows, d = flows_of(study.runs), discrete_name(study.runs)
    header = ["run_id", "lr", "weight_decay", "block", f"rate_{d}"] + [f"rate_{t}" for t in flows]
    header += [f"{t}_minus_{d}" for t in flows]
    rows = []
    for r in study.runs:
        if not r.has(r.discrete, "scale_invariant_norms") or r.records < 2:
            continue
        time = r.time
        per_traj = {t: r.series(t, "scale_invariant_norms") for t in r.trajectories}
        for b, name in enumerate(r.names_of("scale_invariant_blocks")):
            rate = {t: (v[-1, b] - v[0, b]) / time[-1] for t, v in per_traj.items()}
            rows.append([r.run_id, Setting(r.lr), Setting(r.weight_decay), name, rate[r.discrete]]
                        + [rate.get(t, float("nan")) for t in flows]
                        + [Gap(rate.get(t, float("nan")) - rate[r.discrete]) for t in flows])
    return header, rows


LOSS_PANELS_PER_ROW = 5
LOSS_PANELS = 10  # a sweep of more lrs shows the loss curves of this many, spread over it
LEGEND_LRS = 8  # more lrs than this are told apart by a colorbar, not a legend entry each


def spread(values, k):
    """k of the values, evenly spaced over their order, the first and the last included."""
    if len(values) <= k:
        return list(values)
    return [values[round(i * (len(values) - 1) / (k - 1))] for i in range(k)]


def lr_key(ax, lrs, legend, styles=()):
    """What tells the lrs' lines apart, beside ax: legend() of an entry each, or for more than LEGEND_LRS a
    colorbar of their colors (viridis by position from the largest lr), labelled with some of them, and a
    legend of the line styles (Line2D handles) if any."""
    if len(lrs) <= LEGEND_LRS:
        legend()
        return
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, len(lrs) - 1), matplotlib.colormaps["viridis"])
    bar = ax.figure.colorbar(mappable, cax=ax.inset_axes([1.04, 0.0, 0.04, 1.0]))
    ticks = spread(list(range(len(lrs))), 6)
    bar.set_ticks(ticks, labels=[number_text(lrs[i]) for i in ticks])
    bar.set_label(f"lr ({len(lrs)} values)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.ax.invert_yaxis()
    if styles:
        ax.legend(handles=list(styles), fontsize=8)


def subplots(*args, figsize=None, **kw):
    """A figure of its own and its axes, outside pyplot: importing or running the report selects no
    backend and leaves no global state (a notebook's plots are untouched)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kw)


FIGURE_FORMATS = ("png", "pdf", "svg")  # PNG for the Markdown report, PDF and SVG for papers
# No creation date, and SVG ids from a fixed salt: a figure's bytes depend on its data alone (a report
# written again, or by other processes, is byte for byte the same).
FIGURE_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def label_log_axes(fig):
    """Labels a logarithmic axis between its powers of ten when it spans less than two decades (a
    sharpness from 2.5 to 40 showed the one label 10¹, lrs of one decade one label too), as matplotlib
    does by default below one."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(matplotlib.ticker.LogFormatterSciNotation(labelOnlyBase=False,
                                                                                 minor_thresholds=(2, 0.5)))


def save(fig, out, stem, title):
    """Writes a finished figure in every format; returns its (title, PNG file name) for the report."""
    label_log_axes(fig)
    fig.tight_layout()
    with matplotlib.rc_context({"svg.hashsalt": "eomlab"}):
        for ext in FIGURE_FORMATS:
            fig.savefig(out / f"{stem}.{ext}", dpi=110, metadata=FIGURE_METADATA[ext])
    return title, f"{stem}.png"


def outside_legend(ax, **kw):
    """A legend beside the axes, where it cannot cover data."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


def plots(study, out, jobs=1):
    """The figures of every (seed, weight decay) group of runs (file names get _seed<S>_wd<W> when
    there are several groups), then the translation component of each group with weight decay. The groups
    are drawn by up to `jobs` processes at once; the figures are the same for any number."""
    every = sorted(groups(plotted(study)).items())
    calls = [(out.path, runs, group_suffix(key, every), group_label(key, every), len(every) > 1) for key, runs in every]
    made = []
    for group_made, written in in_processes(draw_group, calls, jobs):
        made += group_made
        out.written |= written
    return made + translation_plots(every, out)


def draw_group(path, runs, suffix, label, several):
    """group_plots into a Folder of its own, as a worker process must: its figures and the names it wrote."""
    folder = Folder(path)
    return group_plots(runs, folder, suffix, label, several), folder.written


def in_processes(function, calls, jobs):
    """[function(*call) for call in calls], by up to `jobs` processes. They are spawned, not forked: a
    notebook's threads and state stay out of them."""
    if jobs < 2 or len(calls) < 2:
        return [function(*call) for call in calls]
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(calls)),
                                                mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, *zip(*calls)))


def group_plots(first, out, suffix, label, several):
    """The figures of one group of runs (one seed and weight decay, the lrs of the sweep)."""
    made = []
    named = (lambda title: f"{title} ({label})") if several else (lambda title: title)
    lrs = sorted({r.lr for r in first}, reverse=True)
    colors = {lr: matplotlib.colormaps["viridis"](i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    flows, d = flows_of(first), discrete_name(first)

    if flows:
        fig, axes = subplots(1, len(flows), figsize=(4.2 * len(flows), 3.6), squeeze=False, sharey=True)
        for ax, flow in zip(axes[0], flows):
            for r in (r for r in first if flow in r.flows):
                ax.semilogy(r.time[1:], r.distance(flow)[1:], ".-", markersize=4, color=colors[r.lr], label=f"lr = {number_text(r.lr)}")
            ax.set_title(f"{flow}: distance to {d}")
            ax.set_xlabel("time t = k·lr")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(f"‖θ_flow(t) − θ_{d}(k)‖")
        lr_key(axes[0][-1], lrs, lambda: axes[0][-1].legend(fontsize=8))
        fig.suptitle(f"Distance between each flow and {d} ({label})", fontsize=10)
        made.append(save(fig, out, "distance_vs_time" + suffix, named(f"Distance to {d} against time")))

        fitted = [r for r in first if not left_out_of_fits(r)]
        t_end = common_time(fitted) if len({r.lr for r in fitted}) >= 2 else None
        points = {flow: common_final_distance(fitted, flow)[:2] for flow in ordered(flows)} if t_end is not None else {}
        points = {flow: xy for flow, xy in points.items() if xy[0]}
        if points:  # no figure without a point to draw
            fig, ax = subplots(figsize=(5.2, 4.2))
            for flow, (x, y) in points.items():
                slope = fit_slope(x, y)
                expected = expected_order(flow, fitted[0])
                line, = ax.loglog(x, y, "o", label=f"{flow}: slope {slope:.2f}" +
                                  (f" (expected {expected})" if expected is not None else " (not a model of it)"))
                xs = np.array([min(x), max(x)])
                if math.isfinite(slope):
                    c = np.exp(np.mean(np.log(y)) - slope * np.mean(np.log(x)))
                    ax.loglog(xs, c * xs ** slope, "-", color=line.get_color(), alpha=0.6)
            ax.set_xlabel("learning rate lr")
            ax.set_ylabel(f"distance to {d} at t = {t_end:g}")
            ax.set_title(f"Discretization error against lr ({label})", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            outside_legend(ax)
            fig.set_size_inches(7.6, 4.2)
            made.append(save(fig, out, "orders" + suffix, named(f"Final distance to {d} against lr")))

    shown = spread(lrs, LOSS_PANELS)
    columns = min(len(shown), LOSS_PANELS_PER_ROW)  # a sweep of many lrs wraps onto rows
    rows = -(-len(shown) // columns)
    fig, axes = subplots(rows, columns, figsize=(4.0 * columns, 3.4 * rows), squeeze=False, sharey=True)
    for ax, lr in zip(axes.flat, shown):
        r = next(r for r in first if r.lr == lr)
        for t in r.trajectories:
            ax.plot(r.time, r.series(t, "loss"), linestyle=style(r, t), label=t)
        ax.set_title(f"lr = {number_text(lr)}")
        ax.set_xlabel("time t = k·lr")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("loss L(θ)")
    axes[0][-1].legend(fontsize=8)
    some = "" if len(shown) == len(lrs) else f" of {len(shown)} of the {len(lrs)} lrs, spread over the sweep"
    fig.suptitle(f"Loss curves{some} ({label})", fontsize=10)
    made.append(save(fig, out, "loss" + suffix, named("Loss curves")))

    if all(r.has(r.discrete, "sharpness") for r in first):
        # The measure the method's stability is judged by (RMSProp, Adam: λ_max(P⁻¹H)) against its limit.
        preconditioned = all(r.has(r.discrete, "preconditioned_sharpness") for r in first)
        series, what = ("preconditioned_sharpness", "λ_max(P⁻¹H)") if preconditioned else ("sharpness", "λ_max")
        fig, ax = subplots(figsize=(5.2, 3.8))
        for r in first:
            limit = r.stability[2]
            ax.semilogy(r.time, r.series(r.discrete, series), color=colors[r.lr], label=f"{what}, lr = {number_text(r.lr)}")
            ax.axhline(limit / r.lr, color=colors[r.lr], linestyle="--", linewidth=0.8,
                       label=f"{limit:.4g}/lr = {limit / r.lr:.4g}")
        ax.set_xlabel("time t = k·lr")
        ax.set_ylabel("preconditioned sharpness λ_max(P⁻¹H)" if preconditioned else "sharpness λ_max(H)")
        ax.set_title(f"{'Preconditioned sharpness' if preconditioned else 'Sharpness'} along {d} and its "
                     f"stability limit\n({label})", fontsize=9)
        ax.grid(alpha=0.3)
        lr_key(ax, lrs, lambda: outside_legend(ax),
               styles=[matplotlib.lines.Line2D([], [], color="0.4", label=what),
                       matplotlib.lines.Line2D([], [], color="0.4", linestyle="--", label=f"its limit {first[0].stability[2]:.4g}/lr")])
        fig.set_size_inches(7.4, 3.8)
        made.append(save(fig, out, "sharpness" + suffix, named(f"Sharpness against the limit of {d}")))

    scaled = [r for r in first if r.has(r.discrete, "scale_invariant_norms")]
    if scaled:
        r = min(scaled, key=lambda run: run.lr)
        names = r.names_of("scale_invariant_blocks")[:4]
        fig, axes = subplots(1, len(names), figsize=(max(6.8, 3.6 * len(names) + 1.6), 3.6), squeeze=False)
        for ax, (b, block) in zip(axes[0], enumerate(names)):
            for t in r.trajectories:
                ax.plot(r.time, r.series(t, "scale_invariant_norms")[:, b], linestyle=style(r, t), label=t)
            ax.set_title(block, fontsize=9)
            ax.set_xlabel("time t = k·lr")
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="y", useOffset=False)
        axes[0][0].set_ylabel("‖θ_A‖²")
        outside_legend(axes[0][-1])
        fig.suptitle(f"‖θ_A‖² of scale-invariant blocks\n(lr {number_text(r.lr)}, {label})", fontsize=9)
        made.append(save(fig, out, "scale_invariant" + suffix, named("Scale-invariant norms against time")))

    with_wd = [r for r in first if r.weight_decay > 0 and r.has(r.discrete, "translation_components") and r.records > 1]
    if len({r.lr for r in with_wd}) >= 2:
        flows = [t for t in flows_of(with_wd) if math.isfinite(predicted_translation_rate(with_wd[0], t))]
        if flows:
            fig, ax = subplots(figsize=(5.2, 4.0))
            lrs_wd = np.array([r.lr for r in with_wd])
            measured = np.array([translation_log_rates(r, r.discrete, r.time)[0] for r in with_wd])
            for t in flows:
                gaps = np.abs(measured - np.array([predicted_translation_rate(r, t) for r in with_wd]))
                ax.loglog(lrs_wd, gaps, "o-", label=t)
            ax.set_xlabel("learning rate lr")
            ax.set_ylabel("|measured rate − predicted rate|")
            ax.set_title(f"Output-bias class-sum: {d}'s rate against each flow's prediction\n({label})", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            outside_legend(ax)
            fig.set_size_inches(7.2, 4.0)
            made.append(save(fig, out, "translation_rates" + suffix, named("Translation rate: gap to each prediction against lr")))
    return made


def translation_plots(every, out):
    """Each flow's deviation from the discrete trajectory in the output-bias class-sum, for the smallest
    lr of each group with weight decay."""
    made = []
    with_wd = [(key, [r for r in runs if r.has(r.discrete, "translation_components")]) for key, runs in every if key[2] > 0]
    with_wd = [(key, runs) for key, runs in with_wd if runs]
    for key, runs in with_wd:
        r = min(runs, key=lambda run: run.lr)
        suffix = group_suffix(key, with_wd)
        fig, ax = subplots(figsize=(5.2, 3.8))
        s0 = r.series(r.discrete, "translation_components")[:, -1]
        for t in r.flows:
            s = r.series(t, "translation_components")[:, -1]
            ax.semilogy(r.time[1:], np.abs(s - s0)[1:] / abs(s0[0]), linestyle=style(r, t), label=t)
        ax.set_xlabel("time t = k·lr")
        ax.set_ylabel(f"|s_flow(t) − s_{r.discrete}(t)| / |s(0)|")
        ax.set_title(f"Output-bias class-sum s: each flow's deviation from {r.discrete}\n"
                     f"(lr {number_text(r.lr)}, weight decay {number_text(r.weight_decay)})",
                     fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        title = "Translation component against time" + ("" if len(with_wd) == 1 else f" ({group_label(key, with_wd)})")
        made.append(save(fig, out, "translation" + suffix, title))
    return made


def mixed_inputs_note(study):
    """The flags of runs of one config computed from different data or initial parameters (as eomlab --catalog
    warns): they stay in the fits, which the flag says may mix them."""
    notes = []
    for index, name, ids in study.mixed_inputs:
        what = "data" if name == "data_fingerprint" else "initial parameters"
        which = "; ".join(f"{md(fp)}: {', '.join(md(i) for i in runs)}" for fp, runs in sorted(ids.items()))
        config = f" of config {index + 1}" if len(study.configs) > 1 else ""
        old = (", unless some were begun by an eomlab from 168ee9b to aaa2e9b (whose image fingerprints were of the "
               "labels only)" if what == "data" else "")
        notes.append(f"- the runs{config} were computed from **different {what}** ({name} {which}): their fits and "
                     f"plots mix them, and their results are not of one study{old}")
    return notes


def flags(study):
    notes = mixed_inputs_note(study)
    for r in study.runs:
        if r.status != "complete":
            readable = f" ({r.records} records readable)" if r.records else ""
            notes.append(f"- {md(r.run_id)}: status **{md(r.status)}**{readable}")
        if r.edge_of_stability:
            notes.append(f"- {md(r.run_id)}: past the edge of stability: {md(r.edge_of_stability)}")
        for t in r.flows:
            s = r.flow_status(t)
            if s != "ok":
                notes.append(f"- {md(r.run_id)}: {md(t)} {md(s)}")
    unchecked = [md(r.run_id) for r in study.runs if r.records and not math.isfinite(r.stability[1])]
    if unchecked:
        notes.append(f"- the stability limit was **not checked** for {len(unchecked)} run(s), which record no sharpness "
                     "(`output.sharpness = off`); the order fits cannot leave them out if they crossed it: "
                     + ", ".join(unchecked))
    return notes


def unreadable(study):
    """The stale entries of run files that could not be read at all."""
    return [entry for entry in study.stale if entry[2].startswith("unreadable")]


def stale_section(study, out):
    if not study.stale:
        return []
    damaged = unreadable(study)
    no_run = [entry for entry in study.stale if entry[2].startswith("not a run file")]
    others = len(study.stale) - len(damaged) - len(no_run)
    of = "the study in study.ini (left by an earlier config or copied in)" if study.config_text is not None else \
        "the study (duplicates of a grid point)"
    parts = [f"{others} file(s) in runs/ are not runs of {of}"] if others else []
    if no_run:
        parts.append(f"{len(no_run)} hold no run")
    if damaged:
        parts.append(f"{len(damaged)} cannot be read (damaged or cut short: a run killed while its file was extended, "
                     "a full disk, a copy in progress)")
    return ["## Stale run files\n\n" + "; ".join(parts) + ": every table, fit and plot leaves them out.\n\n"
            + write_table(out, "stale", ["file", "run_id", "reason"], study.stale)]


RATES_TEXT = """## Rates of ‖θ_A‖² at the iterates

At each record k of the discrete trajectory ({d}), for each parameter block A of /model/layout: `measured`
= (‖θ_A(k+1)‖² − ‖θ_A(k)‖²)/η, from the method's own next step; `predicted_`*flow* = 2⟨θ_A, F_A(θ_k)⟩,
the rate that the flow's vector field F gives at the same iterate θ_k; `rel_error_`*flow* = |predicted −
measured| / |measured|; `lr_grad_norm_sq` = η‖g_A‖² (for gd exactly measured − predicted_gf). Per run and
block, the first, middle and last record, then a row `all` over every record: the mean measured and
predicted rates and rel_error = ‖predicted − measured‖ / ‖measured‖, the norms taken over the records
(rates.csv). rel_error is left empty (nan) where every measured rate is at most 1e-12 of its record's largest:
a block whose rate is 0 up to rounding (a bias before batchnorm has no gradient).

How to read them: `measured` is a one-step difference, so on a block whose ‖θ_A‖² changes it differs from
any flow's instantaneous rate by about ½η·d²‖θ_A‖²/dt², whatever the flow; the errors rank the models
where that term is small (scale-invariant blocks). A method with memory (heavy ball, Nesterov, RMSProp,
Adam) starts off its flows' slow manifold, so its first records carry the start transient: compare the
middle and last rows. For sgd one step is one minibatch's, while the flows describe whole epochs: there
the errors measure the batches' spread, not the models."""


def rates_section(study, out):
    runs = [r for r in study.runs if r.rates and r.records]
    if not runs:
        return []
    without = [md(r.run_id) for r in study.runs if r not in runs]
    note = ("\n\nRuns without rates (`output.rates = off`, or an older eomlab): " + ", ".join(without) if without else "")
    return [RATES_TEXT.format(d=md(discrete_name(runs))) + note + "\n\n" + write_table(out, "rates", *rates_table(runs))]


def orders_note(study, fits):
    """What the order fits and the plots leave out, for report.md."""
    left = [f"- {md(r.run_id)} (seed {r.seed}, weight decay {r.weight_decay!r}, lr {r.lr!r}): {md(why)}"
            for *_, left_out in fits for r, why in left_out]
    note = ("\n\nLeft out of the fits (`left_out` in orders.csv):\n\n" + "\n".join(left) if left else "")
    unordered = [md(t) for t in flows_of(study.runs) if flow_order(t) is None]
    note += ("\n\nFlows whose name gives no order (not gf or eomP) are not fitted, only shown in the other tables "
             "and plots: " + ", ".join(unordered) if unordered else "")
    diverged = [md(r.run_id) for r in study.runs if r.diverged]
    return note + ("\n\nThe plots leave out the diverged runs: " + ", ".join(diverged) if diverged else "")


def configs_note(study):
    """The configs of a folder's run files when they are several: the keys that tell them apart."""
    if len(study.configs) < 2:
        return ""
    keys = sorted({k for c in study.configs for k in c if len({c.get(k) for c in study.configs}) > 1})
    lines = [f"- config {i + 1}: " + ", ".join(f"{md(k)} = {md(','.join(map(str, c[k])) if k in c else '(unset)')}" for k in keys)
             for i, c in enumerate(study.configs)]
    return (f"\nThe run files hold {len(study.configs)} configs, which are fitted and drawn apart (`config` in runs.csv "
            "and orders.csv):\n\n" + "\n".join(lines) + "\n")


def recorded_config(study):
    """Without a study.ini (run files gathered by hand): the config the first run file in name order records
    (as for a damaged study.ini), so the report still says what ran; configs_note names what other runs
    changed."""
    if not study.runs:
        return ""
    first = min(study.runs, key=lambda run: run.path.name)
    return (f"\nThe config recorded in runs/{md(first.path.name)} (its grid lists, study.seed, optimizer.lr and "
            "model.weight_decay, are those of the study that run was part of):\n\n"
            + fenced(str(first.attrs.get("config", "")).strip()))


def fenced(body):
    """`body` in a fenced code block whose fence is longer than any run of backticks in it."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", body)), default=0))
    return f"{fence}ini\n{body}\n{fence}\n"


def build(output_dir, out_dir, jobs=1):
    """Writes the report of the study in output_dir into out_dir; its figures by up to `jobs` processes (a
    script calling it with more than one needs the `if __name__ == "__main__":` guard that spawned processes
    need). Returns the path of report.md."""
    with Study(output_dir) as study:
        return write(study, out_dir, jobs)


def runs_line(study):
    """How many runs the report has, and of the study in study.ini how many have no run file yet (a study
    stopped before them)."""
    found = len(study.runs)
    if study.config_text is None:
        return f"{found} run file{'' if found == 1 else 's'}"
    total = len(grid(study.config))
    damaged = min(len(unreadable(study)), total - found)
    notes = ([f"{damaged} with a run file that cannot be read"] if damaged else []) + \
        ([f"{total - found - damaged} without a run file yet"] if total - found - damaged > 0 else [])
    return f"{found} of the study's {total} run{'' if total == 1 else 's'}" + (f" ({', '.join(notes)})" if notes else "")


MANIFEST = ".report_files"  # the files the last report wrote in its folder, one name per line


class Folder:
    """The report's folder: `folder / name` is the path of a file written there, and names it as written."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.written = set()

    def __truediv__(self, name):
        self.written.add(name)
        return self.path / name


def write(study, out_dir, jobs=1):
    folder = Folder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    write_files(study, folder, jobs)
    # What an earlier report wrote and this one did not (a table or figure the study no longer has) goes,
    # so no old slope stands beside the new report; nothing else in the folder is touched.
    manifest = folder.path / MANIFEST
    before = set(manifest.read_text(encoding="utf-8").split("\n")) if manifest.is_file() else set()
    for name in sorted(before - folder.written):
        if name and "/" not in name and name not in (".", ".."):
            (folder.path / name).unlink(missing_ok=True)
    manifest.write_text("".join(f"{name}\n" for name in sorted(folder.written)), encoding="utf-8")
    return folder.path / "report.md"


PROVENANCE_KEYS = ["eomlab_version", "git_sha", "compiler", "mpi_library", "blas", "host", "SLURM_JOB_ID", "created"]


def resumed_by(run):
    """The provenance of each invocation that resumed the run: [{key: value}] from resume_provenance's lines
    ("<time>: key=value; key=value; ...")."""
    fields = [line.partition(": ")[2] for line in str(run.attrs.get("resume_provenance", "")).splitlines()]
    return [dict(re.findall(r"(?:^| )(\w+)=(.*?);(?= \w+=|$)", f)) for f in fields if f]


def provenance_lines(runs):
    """report.md's provenance: every value of each key with its number of runs (a run resumed by another
    build, host or job counts for each; only the first run's host, created time and SLURM job were shown, and
    no resume), and the span of the runs' created times."""
    lines = []
    resumes = [resumed_by(r) for r in runs]
    for key in PROVENANCE_KEYS:
        counts = collections.Counter()  # in the order of the runs
        for r, resumed in zip(runs, resumes):
            own = [str(r.attrs[key])] if key in r.attrs else []
            counts.update(list(dict.fromkeys(own + [p[key] for p in resumed if key in p])))
        if not counts:
            continue
        if key == "created" and len(counts) > 1:
            lines.append(f"- created: {md(min(counts))} to {md(max(counts))}")
        elif len(counts) == 1:
            lines.append(f"- {key}: {md(next(iter(counts)))}")
        else:
            shown = [f"{md(v)} ({n} run{'' if n == 1 else 's'})" for v, n in list(counts.items())[:8]]
            lines.append(f"- {key}: " + ", ".join(shown) + (f", and {len(counts) - 8} more" if len(counts) > 8 else ""))
    resumed = sum(1 for r in runs if "resume_provenance" in r.attrs)
    if resumed:
        lines.append(f"- resumed: {resumed} run{'' if resumed == 1 else 's'} (each resume's provenance is counted above)")
    return lines


def write_files(study, out, jobs=1):
    """Writes report.md, its tables and figures (by up to `jobs` processes) into the Folder `out`."""
    parts = [f"# eomlab report: study '{md(study.name)}'\n",
             f"Output directory: {md(str(study.dir))}, {runs_line(study)}"
             + (f", {len(study.stale)} stale run files.\n" if study.stale else ".\n")]
    if study.runs:
        parts.append("## Provenance\n")
        parts += provenance_lines(study.runs)
        parts.append("")
    damaged = f"{study.config_note[0].upper()}{study.config_note[1:]}.\n\n" if study.config_note else ""
    parts.append("## Configuration\n\n" + damaged + fenced(study.config_text.strip()) if study.config_text is not None
                 else "## Configuration\n\n" + (damaged + "Every" if damaged else "No study.ini: every")
                 + " run file in runs/ is reported.\n" + recorded_config(study) + configs_note(study))
    parts += stale_section(study, out)
    notes = flags(study)
    parts.append("## Flags\n\n" + ("\n".join(notes) if notes else "No run diverged, failed or crossed the stability limit "
                                    "(judged from the sharpness at its records)." if study.runs else
                                    "No run file of the study to report yet.") + "\n")
    header, rows = runs_table(study)
    parts.append("## Runs\n\n" + write_table(out, "runs", header, rows))
    fits = order_fits(study)
    header, rows = orders_table(fits, len(study.configs) > 1)
    if fits:
        parts.append(f"## Orders\n\nSlope of the distance to {md(discrete_name(study.runs))} at a common final time "
                     "against lr (log-log); the EoM of order p should give p + 1 (gf: 1 where it is the method's eom0). A model that is no closer "
                     "to the method than the model one order below it, at some lr of the fit, is outside its regime "
                     "there (the expansion in lr·λ/(1−β)² does not converge): its slope is no evidence and "
                     "`within_0.25` says `outside its regime`; `outside_regime` names those lrs."
                     + orders_note(study, fits) + "\n\n"
                     + write_table(out, "orders", header, rows))
    header, rows = translation_table(study)
    if rows:
        parts.append("## Invariant layers: translation components\n\nRate of the output bias class-sum "
                     "(1/t)·log(s(t)/s(0)): measured on the discrete trajectory and each flow, beside the "
                     "predictions log(1−ηλ)/η (GD), −λ (gf) and −λ − ηλ²/2 − η²λ³/3 − … (GD's eomP; sgd's are the "
                     "same, its every step scaling s by 1 − ηλ as GD's does; other methods: gf only). `weight_sum_*`: "
                     "the same for ‖s‖, the norm of the output layer's weight class-sums s_j = Σ_c W[c, j], whose "
                     "components all decay alike, so the predictions are the same (nan for a weight-normalized "
                     "output layer, whose class-sums are no symmetry)." + (" With rates at the iterates, `weight_sum_sq_rate_*`: d‖s‖²/dt "
                     "at every record: measured, that of the exponential through ‖s_k‖² and ‖s_{k+1}‖² (the method's "
                     "next step), ‖s_k‖²·log(‖s_{k+1}‖²/‖s_k‖²)/η, which is GD's exact rate (its s decays "
                     "geometrically); predicted, 2⟨s, ⟨v, F(θ_k)⟩⟩ from each flow's field; summarized as the `all` "
                     "rows of the rate table (means over the records, rel_error = ‖predicted − measured‖ / "
                     "‖measured‖: for GD about ηλ/2 for gf and η²λ²/3 for eom1)." if "weight_sum_sq_rate_measured" in header else "")
                     + "\n\n" + write_table(out, "translation", header, rows))
    header, rows = scale_table(study)
    if rows:
        # Every block in scale.csv; the report shows each run's first (weight normalization has one per neuron).
        shown = [row for _, run_rows in itertools.groupby(rows, key=lambda row: row[0])
                 for row in list(run_rows)[:SCALE_BLOCKS_SHOWN]]
        more = (f" The first {SCALE_BLOCKS_SHOWN} blocks of each run are shown; all {len(rows)} rows are in "
                "`scale.csv`." if len(shown) < len(rows) else "")
        parts.append("## Invariant layers: scale-invariant blocks\n\nMean rate of change of ‖θ_A‖² over the run, "
                     "on the discrete trajectory and on each flow, and each flow's difference from it." + more +
                     "\n\n" + write_table(out, "scale", header, rows, shown))
    parts += rates_section(study, out)
    figures = plots(study, out, jobs)
    if figures:
        parts.append("## Figures\n")
        for title, name in figures:
            parts.append(f"### {title}\n\n![{title}]({name})\n")
    (out / "report.md").write_text("\n".join(parts), encoding="utf-8")


def default_jobs():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cpus)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes >= 1, got '{text}'")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(prog="analysis/report", description=__doc__.splitlines()[0])
    p.add_argument("output_dir", help="a study's output directory (study.output)")
    p.add_argument("--out", help="where to write the report (default OUTPUT_DIR/report)")
    p.add_argument("--jobs", type=positive_int, default=default_jobs(),
                   help="processes drawing the figures, one group of runs each (default: the CPUs this process "
                        "may use, at most 8)")
    args = p.parse_args(argv)
    try:
        path = build(args.output_dir, args.out or pathlib.Path(args.output_dir) / "report", args.jobs)
    except OSError as e:  # no such study, or a --out that cannot be a folder
        print(f"analysis/report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
