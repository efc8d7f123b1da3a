"""`t2mpi report`: a job folder's data operations as one self-contained HTML page (inline SVG, no
script, no network): a Gantt timeline with one lane per worker and a bar per operation_end event, the
bytes moved and spilled per operation, the job's state, and for a stream (ctx.stream) its
throughput and watermark lag over time, per worker. `render` is pure: data in, text out."""

from __future__ import annotations

from html import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# one colour per operation name, in order of first appearance (lanes are rows, colours are operations)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
LANE_HEIGHT, LANE_GAP, LABEL_WIDTH, PLOT_WIDTH = 28, 8, 70, 900


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _fit(label: str, width: float) -> str:
    """As much of `label` as fits `width` pixels at 11 px (about 6.5 px a character), or nothing."""
    chars = int(width / 6.5)
    if chars >= len(label):
        return label
    return label[: chars - 1] + "…" if chars >= 4 else ""


def colours(ops: list[dict[str, Any]]) -> dict[str, str]:
    """Each operation name's bar colour."""
    out: dict[str, str] = {}
    for e in ops:
        out.setdefault(e["operation"], PALETTE[len(out) % len(PALETTE)])
    return out


def render(state: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The report page of a job: its state (state.json) and events (events.jsonl)."""
    ops = [e for e in events if e.get("event") == "operation_end"]
    workers = state.get("num_workers") or (1 + max((e["worker"] for e in ops), default=-1))
    colour = colours(ops)
    t0 = min((e["start"] for e in ops), default=0.0)  # the timeline spans the operations
    t1 = max((e["end"] for e in ops), default=0.0)
    span = max(t1 - t0, 1e-6)
    height = workers * (LANE_HEIGHT + LANE_GAP) + 30
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + PLOT_WIDTH + 40}" height="{height}" '
        f'role="img" aria-label="operations per worker">'
    ]
    for w in range(workers):
        y = w * (LANE_HEIGHT + LANE_GAP)
        svg.append(
            f'<rect class="lane" x="{LABEL_WIDTH}" y="{y}" width="{PLOT_WIDTH}" height="{LANE_HEIGHT}" fill="#eeeeee"/>'
        )
        svg.append(f'<text x="4" y="{y + LANE_HEIGHT * 0.65:.0f}" font-size="13">worker {w}</text>')
    drawn_to: dict[int, float] = {}  # per lane, where its last bar ends
    for e in sorted(ops, key=lambda e: (e["worker"], e["start"])):
        # an operation too short to see gets 2 px, and starts after the lane's last bar (never
        # under it), so every operation shows at least one whole pixel of its colour
        x = max(LABEL_WIDTH + (e["start"] - t0) / span * PLOT_WIDTH, drawn_to.get(e["worker"], 0.0))
        width = max((e["end"] - e["start"]) / span * PLOT_WIDTH, 2.0)
        drawn_to[e["worker"]] = x + width
        y = e["worker"] * (LANE_HEIGHT + LANE_GAP)
        title = (
            f"worker {e['worker']}: {e['operation']} at {e['site']}, {e['end'] - e['start']:.3f} s; "
            f"rows in {e['rows_in']}, out {e['rows_out']}; shuffled {_bytes(e['bytes_shuffled'])}, "
            f"spilled {_bytes(e['bytes_spilled'])}"
        )
        svg.append(
            f'<g class="bar"><title>{escape(title)}</title><rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" '
            f'height="{LANE_HEIGHT - 6}" fill="{colour[e["operation"]]}"/>'
        )
        label = _fit(f"{e['operation']} {e['site']}", width - 6)
        if label:
            svg.append(
                f'<text x="{x + 3:.1f}" y="{y + LANE_HEIGHT * 0.65:.0f}" font-size="11" fill="#fff">'
                f"{escape(label)}</text>"
            )
        svg.append("</g>")
    axis_y = workers * (LANE_HEIGHT + LANE_GAP) + 14
    for i in range(6):
        x = LABEL_WIDTH + i * PLOT_WIDTH / 5
        svg.append(f'<text x="{x:.0f}" y="{axis_y}" font-size="11" text-anchor="middle">{span * i / 5:.2f} s</text>')
    svg.append("</svg>")
    return _page(state, ops, colour, "\n".join(svg), stream_charts(events))


CHART_HEIGHT = 140


def stream_charts(events: list[dict[str, Any]]) -> str:
    """Line charts of a stream's live-status samples: events/s in, and the watermark's lag behind
    the newest event, one line per worker (colour per worker); "" when the job ran no stream."""
    from .stream.engine import status_figures

    samples: dict[int, list[tuple[float, dict[str, float]]]] = {}
    for e in events:
        if e.get("event") == "progress":
            figures = status_figures(str(e.get("message", "")))
            if figures is not None:
                samples.setdefault(e["worker"], []).append((e["t"], figures))
    if not samples:
        return ""
    t0 = min(t for points in samples.values() for t, _ in points)
    t1 = max(t for points in samples.values() for t, _ in points)
    charts = []
    for key, title in (("in", "events/s in"), ("lag", "watermark lag (s)")):
        values = [f[key] for points in samples.values() for _, f in points if key in f and f[key] == f[key]]
        values = [v for v in values if v != float("inf")]
        if not values:
            continue
        top = max(max(values), 1e-9)
        svg = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + PLOT_WIDTH + 40}" '
            f'height="{CHART_HEIGHT + 30}" role="img" aria-label="{title} per worker">',
            f'<text x="4" y="14" font-size="12">{escape(title)}, up to {top:.4g}</text>',
            f'<rect x="{LABEL_WIDTH}" y="20" width="{PLOT_WIDTH}" height="{CHART_HEIGHT}" fill="#f4f4f4"/>',
        ]
        for n, (worker, points) in enumerate(sorted(samples.items())):
            xy = [
                f"{LABEL_WIDTH + (t - t0) / max(t1 - t0, 1e-6) * PLOT_WIDTH:.1f},"
                f"{20 + CHART_HEIGHT * (1 - f[key] / top):.1f}"
                for t, f in points
                if key in f and f[key] != float("inf")
            ]
            colour = PALETTE[n % len(PALETTE)]
            svg.append(
                f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(xy)}">'
            )
            svg.append(f"<title>worker {worker}</title></polyline>")
            svg.append(f'<text x="4" y="{40 + 14 * n}" font-size="11" fill="{colour}">worker {worker}</text>')
        svg.append(
            f'<text x="{LABEL_WIDTH + PLOT_WIDTH}" y="{CHART_HEIGHT + 34}" font-size="11" text-anchor="end">{t1 - t0:.1f} s</text>'
        )
        svg.append("</svg>")
        charts.append("\n".join(svg))
    return "<h2>Stream</h2>\n" + "\n".join(charts)


def _page(state: dict[str, Any], ops: list[dict[str, Any]], colour: dict[str, str], svg: str, stream: str) -> str:
    by_op: dict[tuple[str, str], list[float]] = {}
    for e in ops:
        row = by_op.setdefault((e["operation"], e["site"]), [0, 0, 0, 0, 0.0])
        row[0] += e["rows_in"]
        row[1] += e["rows_out"]
        row[2] += e["bytes_shuffled"]
        row[3] += e["bytes_spilled"]
        row[4] = max(row[4], e["end"] - e["start"])
    rows = "\n".join(
        f'<tr><td><span class="key" style="background:{colour[op]}"></span>{escape(op)}</td><td>{escape(site)}</td>'
        f"<td>{r[0]}</td><td>{r[1]}</td><td>{_bytes(r[2])}</td><td>{_bytes(r[3])}</td><td>{r[4]:.3f}</td></tr>"
        for (op, site), r in by_op.items()
    )
    started, ended = state.get("started"), state.get("ended")
    took = f"{ended - started:.2f} s" if started and ended else "running"
    job = escape(str(state.get("job_id", "?")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>t2mpi report: {job}</title>
<style>body{{font-family:sans-serif;margin:20px;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child,td:nth-child(2){{text-align:left}}
.key{{display:inline-block;width:10px;height:10px;margin-right:5px}}</style></head>
<body><h1>Job {job}</h1>
<p>{escape(str(state.get("name", "")))}: <b>{escape(str(state.get("state", "?")))}</b> —
{escape(str(state.get("reason", "")))}; {state.get("num_workers", "?")} workers; {took};
{len(ops)} data operations recorded.</p>
<h2>Operations per worker</h2>
{svg}
<h2>Per operation (all workers)</h2>
<table><tr><th>operation</th><th>site</th><th>rows in</th><th>rows out</th><th>shuffled</th><th>spilled</th>
<th>longest (s)</th></tr>
{rows}
</table>
{stream}
</body></html>
"""
