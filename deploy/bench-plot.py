"""Draws the growth curves of a sweep's results file into a PNG.

Usage: python bench-plot.py RESULTS.jsonl OUT.png

RESULTS.jsonl holds one `tally bench --results` report a line; its first
line is the base run. As `tally bench-table` does, each knob the sweep
varied gets the runs that differ from the base in that knob only (and the
base), and each figure is drawn against the knob: one column per knob,
one row per figure. Run by deploy/bench-sweep.sh with the matplotlib that
deploy/install-matplotlib.sh installs (it brings its own fonts).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The knobs a sweep varies (tally::bench::table::SWEPT), and whether to
# draw them on a log scale.
SWEPT = [
    ("accounts", True),
    ("skus", True),
    ("history_months", False),
    ("contracts_percent", False),
    ("zipf", False),
    ("lines", False),
    ("grants", False),
]
# Besides the swept knobs, what must equal the base's for a run to count.
FIXED = ["events", "commitment", "history_events", "providers"]
# The instances that served a run, as a line without them reads (one of each, no churn).
INSTANCES = {"rating_instances": 1, "invoicing_instances": 1, "churn": False}

SERVICES = ["collector", "rating", "invoicing", "api"]

# (title, [(label, getter)])
FIGURES = [
    ("ingest, events/s", [("ingest", lambda r: r.get("ingest_events_per_s"))]),
    ("end to end, events/s", [("end to end", lambda r: r.get("end_to_end_events_per_s"))]),
    (
        "ratio to ceiling",
        [
            ("ingest / produce", lambda r: r.get("ingest_to_produce_ratio")),
            ("end to end / consume", lambda r: r.get("end_to_end_to_consume_ratio")),
            ("end to end / COPY", lambda r: r.get("end_to_end_to_copy_ratio")),
        ],
    ),
    (
        "freshness, ms",
        [
            ("p50", lambda r: r.get("freshness_p50_ms")),
            ("p99", lambda r: r.get("freshness_p99_ms")),
        ],
    ),
    (
        "CPU µs per event",
        [(s, (lambda s: lambda r: r.get("cpu_us_per_event", {}).get(s))(s)) for s in SERVICES[:3]],
    ),
    (
        "statement bytes per event",
        [("statements", lambda r: r.get("statement_bytes_per_event"))],
    ),
    (
        "database MiB per million events",
        [("database", lambda r: r.get("database_mib_per_million_events"))],
    ),
    (
        "peak RSS, MiB",
        [(s, (lambda s: lambda r: r.get("peak_rss_mib", {}).get(s))(s)) for s in SERVICES],
    ),
]


def series(runs, knob):
    base = runs[0]["knobs"]
    others = [k for k, _ in SWEPT if k != knob] + FIXED
    chosen = {}
    for r in runs:
        k = r["knobs"]
        if all(k.get(o) == base.get(o) for o in others) and all(
            k.get(o, d) == base.get(o, d) for o, d in INSTANCES.items()
        ):
            chosen.setdefault(k[knob], r)
    return sorted(chosen.items(), key=lambda kv: kv[0])


def main(results, out):
    with open(results) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    if not runs:
        sys.exit(f"{results}: no runs")
    columns = [(k, log, series(runs, k)) for k, log in SWEPT]
    columns = [c for c in columns if len(c[2]) >= 2]
    if not columns:
        sys.exit(f"{results}: no knob varies from the first run's in two runs or more")
    fig, axes = plt.subplots(
        len(FIGURES),
        len(columns),
        figsize=(4.2 * len(columns), 2.6 * len(FIGURES)),
        squeeze=False,
    )
    for col, (knob, log, points) in enumerate(columns):
        xs = [x for x, _ in points]
        for row, (title, lines) in enumerate(FIGURES):
            ax = axes[row][col]
            for label, get in lines:
                ys = [get(r) for _, r in points]
                pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if pairs:
                    ax.plot(*zip(*pairs), marker="o", label=label)
            if log:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            if row == 0:
                ax.set_title(f"as {knob} grows")
            if row == len(FIGURES) - 1:
                ax.set_xlabel(knob)
            if col == 0:
                ax.set_ylabel(title)
            if len(lines) > 1:
                ax.legend(fontsize="x-small")
    base = runs[0]["knobs"]
    fig.suptitle(
        "tally bench: growth from the base "
        + ", ".join(f"{k} {base.get(k)}" for k, _ in SWEPT)
        + f" ({base.get('events')} events)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
