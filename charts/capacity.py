"""Charts of a medical plan at work: how full each facility was against what it has, who waited and for what,
where patients were diverted (plain dicts for plotly, like charts.figures)."""
from __future__ import annotations

import re

import polars as pl

from charts.figures import COUNT, MARGIN, PALETTE, QUEUE_KIND_COLORS, ROLE_COLORS, layout, numbers, times
from core.explore import WAITING_FOR
from charts.labels import PLACE, TRIAGE, plotly_text

ROLE_ORDER = {"R1": 0, "R2": 1, "R3": 2, "R4": 3, "evacuation": 4}
QUEUE_COLOR = "#d98c4a"
# how full: empty is the page's background, half full muted blue, full red
FULL_SCALE = [[0, "#1b232c"], [0.5, "#5b9bd5"], [0.85, "#e3b448"], [1, "#b85450"]]


def _role_color(role: str) -> str:
    return ROLE_COLORS.get(role, "#8d99ae")


def facility_kind(name: str) -> str:
    """A facility's kind, without its front and number: "R2 Basic 2 (North)" -> "R2 Basic"."""
    base = re.sub(r"\s*\(.*\)$", "", name)
    return base if re.fullmatch(r"Role \d", base) else re.sub(r"\s+\d+$", "", base)


def peaks_spec(report: dict, title: str = "Peak occupancy against capacity", narrow: bool = False) -> dict:
    """Horizontal bars: each facility resource's peak as a share of what it has (100 % = full), coloured by
    role; the bar's text says "peak of capacity". Queues and vehicle pools without a capacity are left out.
    ``narrow``: each label on two lines (facility, resource), for a narrow column."""
    rows = [r for r in report.get("resources") or [] if r.get("capacity")]
    if narrow:  # one bar per kind of facility and resource: its busiest facility (of any front)
        busiest: dict = {}
        for r in rows:
            kind = facility_kind(r["facility"])
            key = (kind, r["resource"])
            if key not in busiest or r["peak"] / r["capacity"] > busiest[key]["peak"] / busiest[key]["capacity"]:
                busiest[key] = {**r, "facility": kind}
        rows = list(busiest.values())
        title = f"{title}<br>(the busiest facility of each kind)"  # two lines: a narrow column
    rows.sort(key=lambda r: (ROLE_ORDER.get(r["role"], 9), r["facility"], r["resource"]))
    names = [f"{plotly_text(r['facility'])}{'<br>' if narrow else ' · '}{r['resource']}" for r in rows]
    data = []
    for role in dict.fromkeys(r["role"] for r in rows):
        part = [(n, r) for n, r in zip(names, rows) if r["role"] == role]
        data.append({"type": "bar", "orientation": "h", "name": PLACE.get(role, "Evacuation"),
                     "y": [n for n, _ in part], "x": [r["peak"] / r["capacity"] for _, r in part],
                     "text": [f"{r['peak']:,} of {r['capacity']:,}" for _, r in part], "textposition": "auto",
                     "marker": {"color": _role_color(role)},
                     "customdata": [[r["hours_at_capacity"] or 0, r["longest_queue"]] for _, r in part],
                     "hovertemplate": "%{y}: peak %{text} (%{x:.0%}), full for %{customdata[0]:,.0f} h, "
                                      "longest queue %{customdata[1]:,}<extra></extra>"})
    height = 130 + (40 if narrow else 22) * len(rows)
    extra = {"margin": {**MARGIN, "t": 64}} if narrow else {}
    return {"data": data, "layout": layout(title, height, barmode="overlay", **extra,
                                           xaxis={"tickformat": ".0%", "range": [0, 1.05],
                                                  "title": {"text": "peak as a share of capacity"}},
                                           yaxis={"autorange": "reversed", "automargin": True,
                                                  "categoryorder": "array", "categoryarray": names},
                                           shapes=[{"type": "line", "x0": 1, "x1": 1, "xref": "x", "y0": 0,
                                                    "y1": 1, "yref": "paper",
                                                    "line": {"dash": "dot", "color": "#e3e7ec"}}])}


def fullness_spec(full: pl.DataFrame, unit: str = "day") -> dict:
    """A heat map: one row per facility resource, one column per time bin, coloured by its peak against its
    capacity (full is red)."""
    if full.is_empty():
        return {"data": [], "layout": layout("No facility resource in this run", 200)}
    rows = (full.select("facility", "resource", "role").unique(maintain_order=True)
            .with_columns(_o=pl.col("role").replace_strict(ROLE_ORDER, default=9)).sort("_o", "facility"))
    names = [f"{plotly_text(f)} · {r}" for f, r in rows.select("facility", "resource").iter_rows()]
    bins = full["time"].unique().sort()
    moments = bins.to_list()
    wide = {(f, r): g for (f, r), g in full.group_by("facility", "resource")}
    z, text = [], []
    for f, r in rows.select("facility", "resource").iter_rows():
        g = wide[(f, r)]
        by_time = dict(zip(g["time"].to_list(), zip(g["full"].to_list(), g["peak"].to_list(),
                                                     g["capacity"].to_list())))
        z.append([min(by_time.get(t, (None,))[0] or 0, 1) for t in moments])
        text.append([f"{by_time[t][1]:,} of {by_time[t][2]:,}" if t in by_time else "" for t in moments])
    data = [{"type": "heatmap", "x": times(bins), "y": names, "z": z, "text": text, "zmin": 0, "zmax": 1,
             "colorscale": FULL_SCALE, "xgap": 1, "ygap": 1,
             "colorbar": {"title": {"text": "peak"}, "tickformat": ".0%", "thickness": 12},
             "hovertemplate": "%{y}<br>%{x|%Y-%m-%d}: peak %{text} (%{z:.0%})<extra></extra>"}]
    return {"data": data, "layout": layout(f"How full each resource was (peak in each {unit} against capacity)",
                                           140 + 24 * len(names),
                                           yaxis={"autorange": "reversed", "automargin": True},
                                           xaxis={"type": "date"})}


def resource_spec(load: pl.DataFrame, facility: str) -> dict:
    """One facility over time: a row per resource with the most in use each hour against what it has (dashed;
    operating tables follow the surgical teams on shift), and a last row with the patients waiting for each."""
    part = load.filter(pl.col("facility") == facility)
    resources = list(dict.fromkeys(part["resource"].to_list()))
    held = [r for r in resources if part.filter(pl.col("resource") == r)["capacity"].null_count()
            < part.filter(pl.col("resource") == r).height]
    waited = [r for r in resources if part.filter(pl.col("resource") == r)["queue_peak"].max()]
    rows = held + (["waiting"] if waited else [])
    n = max(1, len(rows))
    gap = 0.05
    h = (1 - gap * (n - 1)) / n
    role = part["role"][0] if part.height else ""
    data, axes, notes = [], {}, []
    for i, row in enumerate(rows):
        ax = "" if i == 0 else str(i + 1)
        top = 1 - i * (h + gap)
        on = {"xaxis": f"x{ax}", "yaxis": f"y{ax}"}
        if row == "waiting":
            for res in waited:
                r = part.filter(pl.col("resource") == res)
                name = res if res.startswith("waiting for") else f"waiting for {res}"
                data.append({"type": "scatter", "mode": "lines", "name": name,
                             "x": times(r["time"]), "y": numbers(r["queue_peak"]),
                             "line": {"width": 1.2, "color": QUEUE_KIND_COLORS.get(WAITING_FOR.get(res), QUEUE_COLOR)},
                             "hovertemplate": f"{name}: %{{y:,}}<extra></extra>", **on})
            title = "Patients waiting (most in each hour)"
        else:
            r = part.filter(pl.col("resource") == row)
            stamps = times(r["time"])
            data.append({"type": "scatter", "mode": "lines", "name": "in use (most in each hour)", "x": stamps,
                         "y": numbers(r["occupancy_peak"]), "line": {"color": _role_color(role), "width": 1.2},
                         "showlegend": i == 0, "legendgroup": "use",
                         "hovertemplate": f"{row}: %{{y:,}} in use<extra></extra>", **on})
            data.append({"type": "scatter", "mode": "lines", "name": "capacity", "x": stamps,
                         "y": numbers(r["capacity"]), "showlegend": i == 0, "legendgroup": "capacity",
                         "line": {"color": "#e3e7ec", "dash": "dash", "width": 1, "shape": "hv"},
                         "hovertemplate": f"{row}: capacity %{{y:,}}<extra></extra>", **on})
            title = row[:1].upper() + row[1:]
        axes[f"xaxis{ax}"] = {"anchor": f"y{ax}", "type": "date", "showticklabels": i == n - 1,
                              **({} if i == 0 else {"matches": "x"})}
        axes[f"yaxis{ax}"] = {"domain": [max(0.0, top - h), top], "anchor": f"x{ax}", **COUNT}
        notes.append({"text": title, "x": 0, "xref": "paper", "y": top, "yref": "paper", "xanchor": "left",
                      "yanchor": "bottom", "showarrow": False, "font": {"size": 13}})
    height = 155 + 140 * n
    # the legend sits under the strip where plotly's tool buttons appear on hover (about 30 px), not behind them
    return {"data": data, "layout": layout(plotly_text(facility), height, annotations=notes,
                                           hovermode="x unified", margin={"l": 10, "r": 10, "t": 95, "b": 10},
                                           legend={"orientation": "h", "yref": "container", "y": 1 - 32 / height,
                                                   "yanchor": "top", "x": 1, "xanchor": "right"}, **axes)}


def queues_spec(queues: pl.DataFrame, title: str = "Patients waiting for each kind of resource") -> dict:
    kinds = [c for c in queues.columns if c != "time"]
    stamps = times(queues["time"])
    data = [{"type": "scatter", "mode": "lines", "name": k, "x": stamps, "y": numbers(queues[k]),
             "line": {"width": 1.2, "color": QUEUE_KIND_COLORS.get(k, QUEUE_COLOR)}, "hovertemplate": f"waiting for {k}: %{{y:,}}<extra></extra>"} for k in kinds]
    return {"data": data, "layout": layout(title, 340, hovermode="x unified",
                                           yaxis={"title": {"text": "patients waiting (most in each hour)"},
                                                  **COUNT})}


def waits_spec(waits: pl.DataFrame) -> dict:
    """Stacked bars: patients per length of their wait (first bin: no wait), by triage."""
    order = list(dict.fromkeys(waits["wait"].to_list()))
    data = []
    for t in TRIAGE:
        part = waits.filter(pl.col("triage") == t)
        if part.is_empty():
            continue
        data.append({"type": "bar", "orientation": "h", "name": TRIAGE[t], "y": part["wait"].to_list(),
                     "x": part["patients"].to_list(), "marker": {"color": PALETTE[t]},
                     "hovertemplate": f"{TRIAGE[t]}, %{{y}}: %{{x:,}} patients<extra></extra>"})
    return {"data": data, "layout": layout("How long patients waited in all (care, beds, transport)", 360,
                                           barmode="stack", yaxis={"categoryorder": "array", "categoryarray": order,
                                                                   "autorange": "reversed", "automargin": True},
                                           xaxis={"title": {"text": "patients"}, **COUNT})}


def diversions_spec(div: pl.DataFrame, unit: str = "day") -> dict:
    """Stacked bars per time bin: patients diverted past a saturated facility, by the role they went to."""
    data = []
    fronts = div["front"].unique().to_list() if div.height else []
    for role in ("R1", "R2", "R3"):
        part = div.filter(pl.col("facility") == role).group_by("time").agg(pl.col("patients").sum()).sort("time")
        if part.is_empty():
            continue
        data.append({"type": "bar", "name": f"taken to {PLACE[role]} instead",
                     "x": times(part["time"]), "y": numbers(part["patients"]),
                     "marker": {"color": _role_color(role)},
                     "hovertemplate": f"%{{x|%Y-%m-%d}}: %{{y:,}} diverted to {PLACE[role]}<extra></extra>"})
    where = f" ({plotly_text(fronts[0])})" if len(fronts) == 1 else ""
    return {"data": data, "layout": layout(f"Diverted past a full facility, per {unit}{where}", 360,
                                           barmode="stack", yaxis={"title": {"text": "patients"}, **COUNT})}
