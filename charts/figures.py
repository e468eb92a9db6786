"""Plotly figures of the Scenario, Explore and Replay pages, as plain dicts built from core.explore's aggregates.

Plain dicts, so building them needs no plotly: resources.py turns each into a ``go.Figure`` once per key and shares
it with every session.
"""
from __future__ import annotations

from datetime import datetime

import polars as pl

from core.explore import OUTCOME_LABELS, PLACES, SANKEY_NODES, TRANSIT
from core.schema import FACILITIES


# --- replay figure -----------------------------------------------------------------------------------------
SO_FAR = (("total_injured", "Injured", "#c9a66b"), ("total_rtd", "Returned to duty", "#a3b18a"),
          ("total_died", "Died", "#b56576"), ("total_evacuated", "Out of theatre", "#6f8fb3"))
PLACE_COLORS = {"POI": "#b56576", TRANSIT: "#c9a66b", "R1": "#a9bfd6", "R2": "#8aa8c7", "R3": "#6f8fb3",
                "R4": "#53708f"}
SPEEDS = (("1×", 600), ("4×", 150), ("16×", 40))  # milliseconds per frame


def _frame_title(row: dict, start: datetime, every: str) -> str:
    t = row["time"]
    day = (t - start).days + 1
    return (f"Day {day}, {t:%H:%M} UTC ({t:%Y-%m-%d}) · in these {every}: {row['injured']:,} injured, "
            f"{row['arrived']:,} arrivals, {row['died']:,} died, {row['rtd']:,} returned to duty")


def replay_figure(frames: pl.DataFrame, start: datetime, every: str, first: int = 0) -> dict:
    """A plotly figure (as a plain dict) animating ``replay_frames``: left, patients at
    each place now; right, running totals. Play/pause at three speeds and a time slider are built in, so the
    browser animates without a round trip to the server; ``first`` is the frame shown before play."""
    rows = frames.to_dicts()
    if not rows:
        return {"data": [], "layout": {"title": {"text": "Nothing happened in this window"}}}
    first = min(max(first, 0), len(rows) - 1)
    places, so_far = list(PLACES), [s[1] for s in SO_FAR]
    top_now = max(1, max(max(r[p] for p in PLACES) for r in rows))
    top_total = max(1, max(rows[-1][s[0]] for s in SO_FAR))

    def traces(r: dict) -> list[dict]:
        return [{"type": "bar", "x": places, "y": [r[p] for p in PLACES], "text": [r[p] for p in PLACES],
                 "textposition": "outside", "marker": {"color": [PLACE_COLORS[p] for p in PLACES]},
                 "name": "now", "hovertemplate": "%{x}: %{y} patients<extra></extra>"},
                {"type": "bar", "x": so_far, "y": [r[s[0]] for s in SO_FAR], "text": [r[s[0]] for s in SO_FAR],
                 "textposition": "outside", "marker": {"color": [s[2] for s in SO_FAR]}, "xaxis": "x2",
                 "yaxis": "y2", "name": "so far", "hovertemplate": "%{x}: %{y} patients<extra></extra>"}]

    def values(r: dict) -> list[dict]:  # a frame carries only what changes: the bars' heights and labels
        now, total = [r[p] for p in PLACES], [r[s[0]] for s in SO_FAR]
        return [{"type": "bar", "y": now, "text": now}, {"type": "bar", "y": total, "text": total}]

    names = [f"{r['time']:%Y-%m-%d %H:%M}" for r in rows]
    fig_frames = [{"name": n, "data": values(r), "traces": [0, 1],
                   "layout": {"title": {"text": _frame_title(r, start, every)}}} for n, r in zip(names, rows)]

    def play(label: str, ms: int) -> dict:
        return {"args": [None, {"frame": {"duration": ms, "redraw": True}, "fromcurrent": True,
                                "transition": {"duration": min(ms // 2, 300), "easing": "linear"}}],
                "label": f"▶ {label}", "method": "animate"}

    layout = {
        "title": {"text": _frame_title(rows[first], start, every)},
        "height": 480, "showlegend": False, "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
        "xaxis": {"domain": [0, 0.58], "title": {"text": "where patients are now"}},
        "yaxis": {"range": [0, top_now * 1.15], "title": {"text": "patients"}},
        "xaxis2": {"domain": [0.66, 1], "anchor": "y2", "title": {"text": "so far"}},
        "yaxis2": {"range": [0, top_total * 1.15], "anchor": "x2"},
        "updatemenus": [{"type": "buttons", "direction": "left", "x": 0, "y": -0.12, "xanchor": "left",
                         "yanchor": "top", "showactive": False, "pad": {"t": 30}, "bgcolor": "#1b232c",
                         "bordercolor": "#6f8fb3", "font": {"color": "#e3e7ec"},
                         "buttons": [play(label, ms) for label, ms in SPEEDS] + [
                             {"args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                                "transition": {"duration": 0}}],
                              "label": "❚❚ Pause", "method": "animate"}]}],
        "sliders": [{"active": first, "x": 0.3, "len": 0.7, "y": -0.12, "yanchor": "top", "pad": {"t": 30},
                     "bgcolor": "#2c3642", "activebgcolor": "#6f8fb3", "bordercolor": "#2c3642",
                     "font": {"color": "#e3e7ec"}, "tickcolor": "#8d99ae",
                     "currentvalue": {"prefix": "", "visible": False},
                     "steps": [{"args": [[n], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                               "transition": {"duration": 0}}],
                                "label": n[5:] if i % 4 == 0 else "", "method": "animate"}
                               for i, n in enumerate(names)]}],
    }
    return {"data": traces(rows[first]), "layout": layout, "frames": fig_frames}


# --- Scenario preview and Explore charts ---------------------------------------------------------------------
# muted colours that stay tellable apart on the dashboard's dark theme
PALETTE = {"BI": "#b56576", "NBI": "#c9a66b", "DIS": "#6f8fb3", "BSI": "#7d6b91",
           "T1": "#b56576", "T2": "#c9a66b", "T3": "#a3b18a", "T4": "#8d99ae",
           "RTD": "#a3b18a", "KIA": "#b56576", "DOW": "#c9a66b", "ROLE4": "#6f8fb3", "IN_CARE": "#8d99ae"}
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
# the series colours of .streamlit/config.toml (chartCategoricalColors), for series without a colour of their own
COLORWAY = ["#6f8fb3", "#a3b18a", "#c9a66b", "#b56576", "#8d99ae", "#5c7457", "#d4d8dd", "#7d6b91"]


def bar_spec(df: pl.DataFrame, x: str, y: str = "patients", color: str | None = None, title: str = "", *,
             horizontal: bool = False, stacked: bool = True, height: int = 320) -> dict:
    """A (stacked) bar chart of an aggregate frame, one trace per value of ``color``."""
    groups = [(None, df)] if color is None else [(k[0], g) for k, g in df.group_by(color, maintain_order=True)]
    data = []
    for name, g in groups:
        xs, ys = g[x].to_list(), g[y].to_list()
        trace = {"type": "bar", "x": ys if horizontal else xs, "y": xs if horizontal else ys,
                 "name": str(name if name is not None else y), "orientation": "h" if horizontal else "v"}
        if name in PALETTE:
            trace["marker"] = {"color": PALETTE[name]}
        data.append(trace)
    layout = {"title": {"text": title}, "barmode": "stack" if stacked else "group", "height": height,
              "margin": MARGIN, "colorway": COLORWAY, "showlegend": color is not None and len(groups) > 1,
              "legend": {"orientation": "h", "y": -0.2}}
    if horizontal:
        layout["yaxis"] = {"autorange": "reversed"}
    return {"data": data, "layout": layout}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def sankey_spec(links: pl.DataFrame) -> dict:
    index = {n: i for i, n in enumerate(SANKEY_NODES)}
    node_colors = ["#6f8fb3"] * len(FACILITIES) + [PALETTE[k] for k in OUTCOME_LABELS]
    return {"data": [{"type": "sankey", "arrangement": "snap",
                      "node": {"label": list(SANKEY_NODES), "pad": 18, "thickness": 16, "color": node_colors},
                      "link": {"source": [index[s] for s in links["source"]],
                               "target": [index[t] for t in links["target"]],
                               "value": links["patients"].to_list(),
                               "color": [_rgba(node_colors[index[t]], 0.45) for t in links["target"]]}}],
            "layout": {"title": {"text": "Flow of patients: point of injury → Role 1 … Role 4 → outcome"},
                       "height": 460, "margin": MARGIN}}


def timings_spec(summary: pl.DataFrame, histogram: pl.DataFrame) -> dict:
    """Histograms of minutes to first treatment, a facility and surgery, with the 10, 60 and 120 min lines."""
    data, shapes, notes = [], [], []
    for color, (measure, line) in zip(("#a3b18a", "#6f8fb3", "#b56576"),
                                      summary.select("measure", "line_min").iter_rows()):
        part = histogram.filter(pl.col("measure") == measure)
        data.append({"type": "bar", "x": part["minutes"].to_list(), "y": part["patients"].to_list(),
                     "name": measure, "opacity": 0.75, "marker": {"color": color}})
        shapes.append({"type": "line", "x0": line, "x1": line, "xref": "x", "y0": 0, "y1": 1, "yref": "paper",
                       "line": {"dash": "dash", "color": color}})
        notes.append({"x": line, "y": 1, "xref": "x", "yref": "paper", "text": f"{line} min", "showarrow": False,
                      "yanchor": "bottom"})
    return {"data": data, "layout": {"barmode": "overlay", "height": 380, "margin": MARGIN, "shapes": shapes,
                                     "annotations": notes, "title": {"text": "Minutes from injury (capped at 6 h)"},
                                     "xaxis": {"title": {"text": "minutes after injury"}},
                                     "yaxis": {"title": {"text": "patients"}},
                                     "legend": {"orientation": "h", "y": -0.2}}}


def occupancy_spec(occ: pl.DataFrame, every: str) -> dict:
    data = []
    for place in PLACES:
        part = occ.filter(pl.col("facility") == place)
        data.append({"type": "scatter", "mode": "lines", "name": place, "x": part["time"].to_list(),
                     "y": part["patients"].to_list(), "line": {"color": PLACE_COLORS[place]}})
    return {"data": data, "layout": {"title": {"text": f"Patients present at each place (every {every})"},
                                     "height": 420, "margin": MARGIN, "yaxis": {"title": {"text": "patients"}}}}


def timeline_spec(frames: pl.DataFrame, marker: datetime | None = None) -> dict:
    """Patients at each place over the whole run, stacked, with a line at ``marker``."""
    times = frames["time"].to_list()
    data = [{"type": "scatter", "mode": "lines", "name": p, "x": times, "y": frames[p].to_list(),
             "stackgroup": "now", "line": {"color": PLACE_COLORS[p], "width": 0.5}} for p in PLACES]
    shapes = [] if marker is None else [{"type": "line", "x0": marker, "x1": marker, "xref": "x", "y0": 0, "y1": 1,
                                         "yref": "paper", "line": {"dash": "dot", "color": "#d4d8dd"}}]
    return {"data": data, "layout": {"title": {"text": "Patients in the chain of care over the whole run"},
                                     "height": 300, "margin": MARGIN, "shapes": shapes,
                                     "yaxis": {"title": {"text": "patients"}}}}


def preview_specs(summary: dict) -> dict[str, dict]:
    """The Scenario page's preview charts."""
    return {"day": bar_spec(summary["per_day"], "time", color="category", title="Casualties per day", height=260),
            "hour": bar_spec(summary["per_hour"], "hour", color="category",
                             title="Casualties by hour of day (UTC)", height=260),
            "triage": bar_spec(summary["triage"].sort("triage"), "triage", color="category", title="Triage",
                               height=260),
            "outcome": bar_spec(summary["outcome"], "outcome", color="category", title="Outcomes", height=260),
            "mechanism": bar_spec(summary["mechanism"], "mechanism", color="category", title="Mechanism",
                                  horizontal=True, height=320)}


def overview_specs(ov: dict) -> dict[str, dict]:
    """The Explore page's overview charts from ``resources.explore_overview``'s aggregates."""
    unit = {"1h": "hour", "6h": "6 hours", "1d": "day"}.get(ov["every"], ov["every"])
    return {"by_front": bar_spec(ov["by_front"], "time", color="front", title=f"Casualties per {unit} by front"),
            "by_warfare": bar_spec(ov["by_warfare"], "time", color="warfare_type",
                                   title=f"Casualties per {unit} by warfare type"),
            "category": bar_spec(ov["category"], "category", color="category", title="Category", stacked=False),
            "triage": bar_spec(ov["triage"].sort("triage"), "triage", color="category", title="Triage by category"),
            "mechanism": bar_spec(ov["mechanism"], "mechanism", color="category", title="Mechanism",
                                  horizontal=True, height=420),
            "body_region": bar_spec(ov["body_region"], "body_region", color="category",
                                    title="Body region (primary condition)", horizontal=True, height=420),
            "outcomes_by_facility": bar_spec(ov["outcomes_by_facility"], "last_facility", color="outcome",
                                             title="Outcomes by the last facility reached")}
