"""analysis/report OUTPUT_DIR [--out DIR]: a Markdown report with CSV tables and PNG plots of a study.

Tables (each also a CSV file):
  runs.csv           one row per run: status, final loss and distance to GD of every trajectory, lr·λ_max
  orders.csv         per (seed, weight_decay) and flow: slope of the final-time distance to GD against lr
                     on log-log axes, beside the expected order p + 1 (DESIGN.md §1.3)
  translation.csv    runs with weight decay under cross-entropy: the rate of the output bias class-sum,
                     measured on GD and on each flow, beside the predictions log(1-ηλ)/η (GD), -λ (gf),
                     -λ - ηλ²/2 - ... (eomP) (DESIGN.md §1.4) and the differences
  scale.csv          runs with normalized layers: the mean rate of change of each scale-invariant block's
                     squared norm, on GD and each flow, and each flow's difference from GD
Plots: distance to GD against time, final distance against lr, loss curves, sharpness against 2/lr,
and the translation component against time."""
import argparse
import csv
import math
import pathlib
import sys

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .load import FLOW_ORDER, Study, fit_slope  # noqa: E402

ORDER_TOLERANCE = 0.25
STYLE = {"gd": "-", "gf": "--", "eom1": "-.", "eom2": ":", "eom3": (0, (1, 3))}


def fmt(x):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "nan" if isinstance(x, float) and math.isnan(x) else str(x)
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.6g}"


def write_table(out, name, header, rows):
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([fmt(v) for v in r])
    md = "| " + " | ".join(header) + " |\n| " + " | ".join("---" for _ in header) + " |\n"
    for r in rows:
        md += "| " + " | ".join(fmt(v) for v in r) + " |\n"
    return md


def eom_rate(order, lr, wd):
    """Truncated series of log(1 - ηλ)/η: the rate of a translation component under eom`order`."""
    return -sum(lr ** (j - 1) * wd ** j / j for j in range(1, order + 2))


def runs_table(study):
    flows = sorted({t for r in study.runs for t in r.flows}, key=FLOW_ORDER.get)
    header = ["run_id", "lr", "seed", "weight_decay", "status", "final_step", "final_loss_gd"]
    header += [f"final_loss_{t}" for t in flows] + [f"final_distance_{t}" for t in flows] + ["max_lr_sharpness"]
    rows = []
    for r in study.runs:
        row = [r.run_id, r.lr, r.seed, r.weight_decay, r.status, int(r.step[-1]) if r.records else -1,
               float(r.series("gd", "loss")[-1]) if r.records else float("nan")]
        row += [float(r.series(t, "loss")[-1]) if t in r.flows and r.records else float("nan") for t in flows]
        row += [float(r.series(t, "distance_to_gd")[-1]) if t in r.flows and r.records else float("nan") for t in flows]
        row.append(float(r.attrs.get("max_lr_sharpness", float("nan"))))
        rows.append(row)
    return header, rows


def common_final_distance(runs, flow):
    """Distance to GD at the latest time every run recorded; (lrs, distances, time)."""
    t_end = min(float(r.time[-1]) for r in runs)
    lrs, dist = [], []
    for r in runs:
        t = r.time
        i = int(np.argmin(np.abs(t - t_end)))
        if abs(t[i] - t_end) <= 1e-9 * max(1.0, t_end) and flow in r.flows:
            lrs.append(r.lr)
            dist.append(float(r.series(flow, "distance_to_gd")[i]))
    return lrs, dist, t_end


def groups(study):
    out = {}
    for r in study.runs:
        if r.records > 1:
            out.setdefault((r.seed, r.weight_decay), []).append(r)
    return out


def orders_table(study):
    header = ["seed", "weight_decay", "flow", "time", "lrs", "slope", "expected", "within_0.25"]
    rows = []
    for (seed, wd), runs in sorted(groups(study).items()):
        if len({r.lr for r in runs}) < 2:
            continue
        for flow in sorted({t for r in runs for t in r.flows}, key=FLOW_ORDER.get):
            lrs, dist, t_end = common_final_distance(runs, flow)
            slope = fit_slope(lrs, dist)
            expected = FLOW_ORDER[flow] + 1
            rows.append([seed, wd, flow, t_end, len(lrs), slope, expected,
                         "yes" if abs(slope - expected) <= ORDER_TOLERANCE else "no"])
    return header, rows


def translation_table(study):
    flows = sorted({t for r in study.runs for t in r.flows}, key=FLOW_ORDER.get)
    header = ["run_id", "lr", "weight_decay", "measured_gd", "predicted_gd"]
    for t in flows:
        header += [f"measured_{t}", f"predicted_{t}", f"gd_minus_{t}_prediction"]
    rows = []
    for r in study.runs:
        if r.weight_decay <= 0 or not r.has("gd", "translation_components") or r.records < 2:
            continue
        time = r.time
        row = [r.run_id, r.lr, r.weight_decay]
        s = r.series("gd", "translation_components")[:, -1]
        measured_gd = math.log(s[-1] / s[0]) / time[-1] if s[0] != 0 and s[-1] / s[0] > 0 else float("nan")
        row += [measured_gd, math.log(1 - r.lr * r.weight_decay) / r.lr if r.lr * r.weight_decay < 1 else float("nan")]
        for t in flows:
            if t not in r.flows:
                row += [float("nan")] * 3
                continue
            st = r.series(t, "translation_components")[:, -1]
            measured = math.log(st[-1] / st[0]) / time[-1] if st[0] != 0 and st[-1] / st[0] > 0 else float("nan")
            predicted = eom_rate(FLOW_ORDER[t], r.lr, r.weight_decay)
            row += [measured, predicted, measured_gd - predicted]
        rows.append(row)
    return header, rows


def scale_table(study):
    flows = sorted({t for r in study.runs for t in r.flows}, key=FLOW_ORDER.get)
    header = ["run_id", "lr", "weight_decay", "block", "rate_gd"] + [f"rate_{t}" for t in flows]
    header += [f"{t}_minus_gd" for t in flows]
    rows = []
    for r in study.runs:
        if not r.has("gd", "scale_invariant_norms") or r.records < 2:
            continue
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in r.tables["scale_invariant_blocks"]["name"]]
        time = r.time
        per_traj = {t: r.series(t, "scale_invariant_norms") for t in r.trajectories}
        for b, name in enumerate(names[:8]):  # the first blocks (weight normalization has one per neuron)
            rate = {t: (v[-1, b] - v[0, b]) / time[-1] for t, v in per_traj.items()}
            rows.append([r.run_id, r.lr, r.weight_decay, name, rate["gd"]]
                        + [rate.get(t, float("nan")) for t in flows]
                        + [rate.get(t, float("nan")) - rate["gd"] for t in flows])
    return header, rows


def save(fig, out, name, title):
    """Writes a finished figure; returns its (title, file name) for the report."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return title, name


def plots(study, out):
    made = []
    first = min(groups(study).items(), default=(None, []))[1]
    if not first:
        return made
    lrs = sorted({r.lr for r in first}, reverse=True)
    colors = {lr: plt.cm.viridis(i / max(1, len(lrs) - 1)) for i, lr in enumerate(lrs)}
    flows = sorted({t for r in first for t in r.flows}, key=FLOW_ORDER.get)
    label = f"seed {first[0].seed}, weight decay {first[0].weight_decay:g}"

    if flows:
        fig, axes = plt.subplots(1, len(flows), figsize=(4.2 * len(flows), 3.6), squeeze=False, sharey=True)
        for ax, flow in zip(axes[0], flows):
            for r in first:
                d = r.series(flow, "distance_to_gd")
                ax.semilogy(r.time[1:], d[1:], ".-", markersize=4, color=colors[r.lr], label=f"lr = {r.lr:g}")
            ax.set_title(f"{flow}: distance to GD")
            ax.set_xlabel("time t = k·lr")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("‖θ_flow(t) − θ_GD(k)‖")
        axes[0][-1].legend(fontsize=8)
        fig.suptitle(f"Distance between each flow and GD ({label})", fontsize=10)
        made.append(save(fig, out, "distance_vs_time.png", "Distance to GD against time"))

        if len(lrs) >= 2:
            fig, ax = plt.subplots(figsize=(5.2, 4.2))
            for flow in flows:
                x, y, t_end = common_final_distance(first, flow)
                slope = fit_slope(x, y)
                line, = ax.loglog(x, y, "o", label=f"{flow}: slope {slope:.2f} (expected {FLOW_ORDER[flow] + 1})")
                xs = np.array([min(x), max(x)])
                if math.isfinite(slope):
                    c = np.exp(np.mean(np.log(y)) - slope * np.mean(np.log(x)))
                    ax.loglog(xs, c * xs ** slope, "-", color=line.get_color(), alpha=0.6)
            ax.set_xlabel("learning rate lr")
            ax.set_ylabel(f"distance to GD at t = {t_end:g}")
            ax.set_title(f"Discretization error against lr ({label})", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
            made.append(save(fig, out, "orders.png", "Final distance to GD against lr"))

    fig, axes = plt.subplots(1, len(lrs), figsize=(4.0 * len(lrs), 3.4), squeeze=False, sharey=True)
    for ax, lr in zip(axes[0], lrs):
        r = next(r for r in first if r.lr == lr)
        for t in r.trajectories:
            ax.plot(r.time, r.series(t, "loss"), linestyle=STYLE.get(t, "-"), label=t)
        ax.set_title(f"lr = {lr:g}")
        ax.set_xlabel("time t = k·lr")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss L(θ)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Loss curves ({label})", fontsize=10)
    made.append(save(fig, out, "loss.png", "Loss curves"))

    if all(r.has("gd", "sharpness") for r in first):
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        for r in first:
            ax.semilogy(r.time, r.series("gd", "sharpness"), color=colors[r.lr], label=f"λ_max, lr = {r.lr:g}")
            ax.axhline(2 / r.lr, color=colors[r.lr], linestyle="--", linewidth=0.8, label=f"2/lr = {2 / r.lr:g}")
        ax.set_xlabel("time t = k·lr")
        ax.set_ylabel("sharpness λ_max(H)")
        ax.set_title(f"Sharpness along GD and the limit 2/lr\n({label})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        made.append(save(fig, out, "sharpness.png", "Sharpness against 2/lr"))

    with_wd = [r for r in study.runs if r.weight_decay > 0 and r.has("gd", "translation_components") and r.records > 1]
    if with_wd:
        r = with_wd[0]
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        gd = r.series("gd", "translation_components")[:, -1]
        for t in r.flows:
            s = r.series(t, "translation_components")[:, -1]
            ax.semilogy(r.time[1:], np.abs(s - gd)[1:] / abs(gd[0]), linestyle=STYLE.get(t, "-"), label=t)
        ax.set_xlabel("time t = k·lr")
        ax.set_ylabel("|s_flow(t) − s_GD(t)| / |s(0)|")
        ax.set_title(f"Output-bias class-sum s: each flow's deviation from GD\n(lr {r.lr:g}, weight decay {r.weight_decay:g})",
                     fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        made.append(save(fig, out, "translation.png", "Translation component against time"))
    return made


def flags(study):
    notes = []
    for r in study.runs:
        if r.status != "complete":
            notes.append(f"- `{r.run_id}`: status **{r.status}**" + (f" ({r.records} records readable)" if r.records else ""))
        eos = r.attrs.get("edge_of_stability", "no")
        if eos != "no":
            notes.append(f"- `{r.run_id}`: past the edge of stability: {eos}")
        for t in r.flows:
            s = r.flow_status(t)
            if s != "ok":
                notes.append(f"- `{r.run_id}`: {t} {s}")
    return notes


def build(output_dir, out_dir):
    study = Study(output_dir)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# eomlab report: study '{study.name}'\n", f"Output directory: `{study.dir}`, {len(study.runs)} run files.\n"]
    if study.runs:
        a = study.runs[0].attrs
        md.append("## Provenance\n")
        for key in ["eomlab_version", "git_sha", "compiler", "mpi_library", "host", "created", "SLURM_JOB_ID"]:
            if key in a:
                md.append(f"- {key}: `{a[key]}`")
        md.append("")
    md.append("## Configuration\n\n```ini\n" + (study.dir / "study.ini").read_text().strip() + "\n```\n"
              if (study.dir / "study.ini").exists() else "")
    notes = flags(study)
    md.append("## Flags\n\n" + ("\n".join(notes) if notes else "No run diverged, failed or crossed the stability limit.") + "\n")
    header, rows = runs_table(study)
    md.append("## Runs\n\n" + write_table(out, "runs", header, rows))
    header, rows = orders_table(study)
    if rows:
        md.append("## Orders\n\nSlope of the distance to GD at a common final time against lr (log-log); "
                  "the EoM of order p should give p + 1 (gf: 1).\n\n" + write_table(out, "orders", header, rows))
    header, rows = translation_table(study)
    if rows:
        md.append("## Invariant layers: translation components\n\nRate of the output bias class-sum "
                  "(1/t)·log(s(t)/s(0)): measured on GD and each flow, beside the predictions "
                  "log(1−ηλ)/η (GD), −λ (gf) and −λ − ηλ²/2 − η²λ³/3 − … (eomP).\n\n"
                  + write_table(out, "translation", header, rows))
    header, rows = scale_table(study)
    if rows:
        md.append("## Invariant layers: scale-invariant blocks\n\nMean rate of change of ‖θ_A‖² over the run, "
                  "on GD and on each flow, and each flow's difference from GD.\n\n" + write_table(out, "scale", header, rows))
    figures = plots(study, out)
    if figures:
        md.append("## Figures\n")
        for title, name in figures:
            md.append(f"### {title}\n\n![{title}]({name})\n")
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"


def main(argv=None):
    p = argparse.ArgumentParser(prog="analysis/report", description=__doc__.splitlines()[0])
    p.add_argument("output_dir", help="a study's output directory (study.output)")
    p.add_argument("--out", help="where to write the report (default OUTPUT_DIR/report)")
    args = p.parse_args(argv)
    try:
        path = build(args.output_dir, args.out or pathlib.Path(args.output_dir) / "report")
    except FileNotFoundError as e:
        print(f"analysis/report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
