"""Plotly figures of the Scenario, Explore and Replay pages, as plain dicts built from core.explore's aggregates.

Plain dicts, so building them needs no plotly: resources.py turns each into a ``go.Figure`` once per key and shares
it with every session. Every label is in plain words (charts.labels) and every number has thousands separators;
each role of care has one colour, the same in every chart (ROLE_COLORS).
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from charts.labels import CATEGORY, OUTCOME, PLACE, TRIAGE, every as every_words, plain
from core.explore import OUTCOME_LABELS, PLACES, SANKEY_NODES, TRANSIT
from core.schema import FACILITIES

# one colour per place of care, the same in the Sankey, Occupancy, Replay and Capacity charts
ROLE_COLORS = {"POI": "#e0796b", TRANSIT: "#8d99ae", "R1": "#7fb77e", "R2": "#5b9bd5", "R3": "#e3b448",
               "R4": "#a98bd1"}
# Role 4 is out of theatre: a patient evacuated there leaves the run on arrival, so it never holds anyone
IN_THEATRE = tuple(p for p in PLACES if p != "R4")
R4_NOTE = ("Role 4 is not drawn: it is outside the theatre, and a patient evacuated there leaves the run on "
           "arrival (counted as 'out of theatre').")
# muted colours that stay tellable apart on the dashboard's dark theme; outcomes differ from every role but
# Role 4 (evacuated out of theatre means evacuated to Role 4)
PALETTE = {"BI": "#b56576", "NBI": "#c9a66b", "DIS": "#6f8fb3", "BSI": "#7d6b91",
           "T1": "#b85450", "T2": "#d9b44a", "T3": "#7fb77e", "T4": "#8d99ae",
           "RTD": "#76c7c0", "KIA": "#b85450", "DOW": "#d98c4a", "ROLE4": ROLE_COLORS["R4"], "IN_CARE": "#6c7a89"}
LABELS = {**CATEGORY, **TRIAGE, **OUTCOME}
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
# the series colours of .streamlit/config.toml (chartCategoricalColors), for series without a colour of their own
COLORWAY = ["#6f8fb3", "#a3b18a", "#c9a66b", "#b56576", "#8d99ae", "#5c7457", "#d4d8dd", "#7d6b91"]
# a numeric axis of counts: 12,000 rather than 12k (",d" would label the 0.5 steps of a small range 0, 1, 1, 2)
COUNT = {"tickformat": ",~f", "rangemode": "tozero"}
# at the foot of the figure (container coordinates), under tick labels and axis titles whatever their height
LEGEND_BELOW = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "title": {"text": ""},
                "traceorder": "normal"}


def times(values) -> np.ndarray:
    """Times as "YYYY-MM-DD HH:MM" text in a numpy array: plotly reads them as dates, and a script run encodes
    thousands of them in a few milliseconds (datetime objects cost ~20 µs each, on every run)."""
    series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.Datetime("us", "UTC"))
    return series.dt.strftime("%Y-%m-%d %H:%M").to_numpy()


def numbers(values) -> np.ndarray:
    """A numeric series as a numpy array (plotly sends it as one binary block, not a list of numbers)."""
    return (values if isinstance(values, pl.Series) else pl.Series(values)).to_numpy()


def layout(title: str, height: int, **more) -> dict:
    """The layout every chart shares: title, height, margins, colours, thousands separators."""
    return {"title": {"text": title}, "height": height, "margin": MARGIN, "colorway": COLORWAY,
            "separators": ".,", "legend": LEGEND_BELOW, **more}


def label(value) -> str:
    return LABELS.get(str(value)) or plain(value)


# --- replay figure -----------------------------------------------------------------------------------------
SO_FAR = (("total_injured", "Injured", "#c9a66b"), ("total_rtd", "Returned to duty", PALETTE["RTD"]),
          ("total_died", "Died", PALETTE["KIA"]), ("total_evacuated", "Out of theatre", ROLE_COLORS["R4"]))
SPEEDS = (("1×", 600), ("4×", 150), ("16×", 40))  # milliseconds per frame
# what patients wait for (core.explore.WAITING_FOR), one colour each, in the Replay and Capacity charts
QUEUE_KIND_COLORS = {"Role 1 team": "#7fb77e", "resuscitation bed": "#e0796b", "operating table": "#d9b44a",
                     "ICU bed": "#a98bd1", "holding bed": "#5b9bd5", "ambulance": "#d98c4a", "helicopter": "#76c7c0",
                     "strategic flight": "#8d99ae"}


def _frame_title(row: dict, start: datetime, every: str) -> str:
    t = row["time"]
    day = (t - start).days + 1
    return (f"Day {day:,}, {t:%H:%M} UTC ({t:%Y-%m-%d}) · in these {every_words(every)}: {row['injured']:,} injured, "
            f"{row['arrived']:,} arrivals, {row['died']:,} died, {row['rtd']:,} returned to duty")


def _step_label(t: datetime, start: datetime) -> str:
    return f"day {(t - start).days + 1:,} {t:%H:%M}"


def _wrap(text: str) -> str:
    """A bar's label on two lines ("Point<br>of injury"), so labels stay level and whole under narrow bars."""
    words = text.split(" ")
    if len(words) < 2 or len(text) <= 7:
        return text
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    return " ".join(words[:cut]) + "<br>" + " ".join(words[cut:])


def _stack(segments: list[tuple[str, int]]) -> tuple[dict[str, list[float]], int]:
    """Rows of a figure from their heights in pixels, top to bottom: each named row's [bottom, top] in paper
    fractions, and the plot height in pixels (gaps are rows named "")."""
    total = sum(px for _, px in segments)
    out, top = {}, total
    for name, px in segments:
        if name:
            out[name] = [(top - px) / total, top / total]
        top -= px
    return out, total


def replay_figure(frames: pl.DataFrame, start: datetime, every: str, first: int = 0,
                  queues: pl.DataFrame | None = None) -> dict:
    """A plotly figure (as a plain dict) animating ``replay_frames``: on top, patients at each place now, running
    totals and (with a medical plan) patients waiting now for each kind of resource; below, the whole run with a
    dotted marker at the step shown (and, with a plan, the queues over the whole run). Play/pause at three
    speeds and the time slider are built in, so the browser moves the bars, the title and the markers together,
    without a round trip to the server; ``first`` is the step shown before play.

    ``queues``: ``core.explore.queues`` on the frames' times (time, one column per kind of resource)."""
    rows = frames.to_dicts()
    if not rows:
        return {"data": [], "layout": {"title": {"text": "Nothing happened in this window"}}}
    first = min(max(first, 0), len(rows) - 1)
    kinds = [c for c in queues.columns if c != "time"] if queues is not None and queues.height else []
    waiting = queues.to_dicts() if kinds else []
    moments = frames["time"].to_list()
    stamps = times(frames["time"])
    top_now = max(1, max(max(r[p] for p in IN_THEATRE) for r in rows))
    top_total = max(1, max(rows[-1][s[0]] for s in SO_FAR))
    top_queue = max([1] + [max(q[k] for k in kinds) for q in waiting])
    top_run = max(1, int(frames.select(pl.sum_horizontal(list(IN_THEATRE)).max()).item() or 1))
    top_waiting = max([1] + [sum(q[k] for k in kinds) for q in waiting])
    bar = {"type": "bar", "textposition": "outside", "texttemplate": "%{y:,}", "cliponaxis": False,
           "showlegend": False, "hovertemplate": "%{x}: %{y:,} patients<extra></extra>"}

    def values(i: int) -> list[dict]:  # what a step changes: the bars' heights and the markers' place
        r = rows[i]
        out = [{"type": "bar", "y": [r[p] for p in IN_THEATRE]}, {"type": "bar", "y": [r[s[0]] for s in SO_FAR]}]
        if kinds:
            out.append({"type": "bar", "y": [waiting[i][k] for k in kinds]})
        return out + [{"type": "scatter", "x": [stamps[i], stamps[i]]}] * (2 if kinds else 1)

    now = values(first)
    n_bars = 3 if kinds else 2
    data = [{**bar, **now[0], "x": [_wrap(PLACE[p]) for p in IN_THEATRE], "name": "now",
             "marker": {"color": [ROLE_COLORS[p] for p in IN_THEATRE]}},
            {**bar, **now[1], "x": [_wrap(s[1]) for s in SO_FAR], "marker": {"color": [s[2] for s in SO_FAR]},
             "xaxis": "x2", "yaxis": "y2", "name": "so far"}]
    if kinds:
        data.append({**bar, **now[2], "x": [_wrap(k) for k in kinds], "xaxis": "x3", "yaxis": "y3",
                     "marker": {"color": [QUEUE_KIND_COLORS.get(k, "#d98c4a") for k in kinds]}, "name": "waiting",
                     "hovertemplate": "waiting for %{x}: %{y:,}<extra></extra>"})
    marker = {"type": "scatter", "mode": "lines", "line": {"dash": "dot", "color": "#e3e7ec", "width": 1.5},
              "showlegend": False, "hoverinfo": "skip"}
    # the whole run, stacked, in the colours of the bars above; the dotted marker follows the animation
    data += [{"type": "scatter", "mode": "lines", "name": PLACE[p], "x": stamps, "y": numbers(frames[p]),
              "stackgroup": "run", "line": {"color": ROLE_COLORS[p], "width": 0.5}, "xaxis": "x4", "yaxis": "y4",
              "showlegend": False, "hovertemplate": f"{PLACE[p]}: %{{y:,}}<extra></extra>"} for p in IN_THEATRE]
    data.append({**marker, **now[n_bars], "y": [0, top_run], "xaxis": "x4", "yaxis": "y4"})
    if kinds:
        data += [{"type": "scatter", "mode": "lines", "name": f"waiting for {k}", "x": stamps, "stackgroup": "queue",
                  "y": numbers(queues[k]), "xaxis": "x5", "yaxis": "y5", "showlegend": False,
                  "line": {"width": 0.5, "color": QUEUE_KIND_COLORS.get(k, "#d98c4a")},
                  "hovertemplate": f"waiting for {k}: %{{y:,}}<extra></extra>"} for k in kinds]
        data.append({**marker, **now[-1], "y": [0, top_waiting], "xaxis": "x5", "yaxis": "y5"})
    animated = list(range(n_bars)) + [n_bars + len(IN_THEATRE)] + (
        [len(data) - 1] if kinds else [])

    names = [str(t) for t in stamps]
    fig_frames = [{"name": n, "data": values(i), "traces": animated,
                   "layout": {"title": {"text": _frame_title(rows[i], start, every)}}} for i, n in enumerate(names)]

    def play(label_: str, ms: int) -> dict:
        return {"args": [None, {"frame": {"duration": ms, "redraw": True}, "fromcurrent": True,
                                "transition": {"duration": 0}}],
                "label": f"▶ {label_}", "method": "animate"}

    # rows in pixels, top to bottom: bars (with their labels), the controls, the whole run, the queues
    segments = [("", 24), ("bars", 250), ("", 150), ("run", 190)] + ([("", 70), ("queues", 170)] if kinds else [])
    y, plot_px = _stack(segments)
    margin = {"l": 10, "r": 10, "t": 60, "b": 40}
    px = 1 / plot_px  # one pixel in paper units
    controls_y = y["bars"][0] - 58 * px
    widths = ([0, 0.275], [0.345, 0.555], [0.615, 1]) if kinds else ([0, 0.56], [0.65, 1], None)
    title = {"x": 0, "xref": "paper", "yref": "paper", "yanchor": "bottom", "xanchor": "left", "showarrow": False,
             "font": {"size": 14}}
    lay = layout(_frame_title(rows[first], start, every), plot_px + margin["t"] + margin["b"], showlegend=False,
                 hovermode="closest", margin=margin)
    lay.update({
        "xaxis": {"domain": widths[0], "anchor": "y", "tickangle": 0, "fixedrange": True, "tickfont": {"size": 11}},
        "yaxis": {"domain": y["bars"], "range": [0, top_now * 1.2], "fixedrange": True, **COUNT},
        "xaxis2": {"domain": widths[1], "anchor": "y2", "tickangle": 0, "fixedrange": True, "tickfont": {"size": 11}},
        "yaxis2": {"domain": y["bars"], "range": [0, top_total * 1.2], "anchor": "x2", "fixedrange": True, **COUNT},
        "xaxis4": {"domain": [0, 1], "anchor": "y4", "type": "date"},
        "yaxis4": {"domain": y["run"], "anchor": "x4", "title": {"text": "in care"}, **COUNT},
        "annotations": [{**title, "text": "Patients in the chain of care over the whole run (colours as in the "
                                          "bars above; the dotted line is the step shown)",
                         "y": y["run"][1] + 6 * px},
                        {**title, "text": "Where patients are now", "x": widths[0][0], "y": y["bars"][1]},
                        {**title, "text": "So far", "x": widths[1][0], "y": y["bars"][1]}],
        "updatemenus": [{"type": "buttons", "direction": "left", "x": 0, "y": controls_y, "xanchor": "left",
                         "yanchor": "top", "showactive": False, "pad": {"t": 0, "r": 10}, "bgcolor": "#1b232c",
                         "bordercolor": "#6f8fb3", "font": {"color": "#e3e7ec"},
                         "buttons": [play(lbl, ms) for lbl, ms in SPEEDS] + [
                             {"args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                                "transition": {"duration": 0}}],
                              "label": "❚❚ Pause", "method": "animate"}]}],
        "sliders": [{"active": first, "x": 0.3, "len": 0.7, "y": controls_y + 22 * px, "yanchor": "top",
                     "pad": {"t": 0, "b": 0}, "bgcolor": "#2c3642", "activebgcolor": "#6f8fb3",
                     "bordercolor": "#2c3642", "font": {"color": "#e3e7ec", "size": 11}, "tickcolor": "#8d99ae",
                     "ticklen": 4, "minorticklen": 2,
                     "currentvalue": {"prefix": "Showing ", "visible": True, "xanchor": "left",
                                      "font": {"color": "#e3e7ec", "size": 13}},
                     "steps": [{"args": [[n], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                               "transition": {"duration": 0}}],
                                "label": _step_label(t, start), "method": "animate"}
                               for n, t in zip(names, moments)]}],
    })
    if kinds:
        lay["xaxis3"] = {"domain": widths[2], "anchor": "y3", "tickangle": 0, "fixedrange": True,
                         "tickfont": {"size": 10 if len(kinds) > 5 else 11}}
        lay["yaxis3"] = {"domain": y["bars"], "range": [0, top_queue * 1.2], "anchor": "x3", "fixedrange": True,
                         **COUNT}
        lay["annotations"].append({**title, "text": "Waiting now (medical plan)", "x": widths[2][0],
                                   "y": y["bars"][1]})
        lay["xaxis5"] = {"domain": [0, 1], "anchor": "y5", "type": "date", "matches": "x4"}
        lay["yaxis5"] = {"domain": y["queues"], "anchor": "x5", "title": {"text": "waiting"}, **COUNT}
        lay["annotations"].append({**title, "y": y["queues"][1] + 6 * px,
                                   "text": "Patients waiting over the whole run, by what they wait for (colours as "
                                           "in the 'waiting now' bars; most in each step)"})
    return {"data": data, "layout": lay, "frames": fig_frames}


# --- Scenario preview and Explore charts ---------------------------------------------------------------------
def bar_spec(df: pl.DataFrame, x: str, y: str = "patients", color: str | None = None, title: str = "", *,
             horizontal: bool = False, stacked: bool = True, height: int = 320, order: tuple = ()) -> dict:
    """A (stacked) bar chart of an aggregate frame, one trace per value of ``color``, codes in plain words.
    ``order``: the categories of ``x`` in this order (e.g. triage T1..T4), others after them."""
    groups = [(None, df)] if color is None else [(k[0], g) for k, g in df.group_by(color, maintain_order=True)]
    if color is not None:  # a legend in the vocabulary's order (BI, NBI, DIS, BSI), not the data's
        rank = {k: i for i, k in enumerate(PALETTE)}
        groups.sort(key=lambda kg: rank.get(str(kg[0]), len(rank)))
    data = []
    unit = "patients" if y == "patients" else plain(y)
    for name, g in groups:
        xs, ys = g[x].to_list(), numbers(g[y])
        if g[x].dtype == pl.String:  # words; under vertical bars on two level lines rather than tilted
            xs = [label(v) if horizontal else _wrap(label(v)) for v in xs]
        elif isinstance(g[x].dtype, pl.Datetime):
            xs = times(g[x])
        legend = label(name) if name is not None else plain(y)
        trace = {"type": "bar", "x": ys if horizontal else xs, "y": xs if horizontal else ys, "name": legend,
                 "orientation": "h" if horizontal else "v",
                 "hovertemplate": f"{legend}: %{{{'x' if horizontal else 'y'}:,}} {unit}<extra>%{{{'y' if horizontal else 'x'}}}</extra>"}
        if name in PALETTE:
            trace["marker"] = {"color": PALETTE[name]}
        data.append(trace)
    lay = layout(title, height, barmode="stack" if stacked else "group",
                 showlegend=color not in (None, x) and len(groups) > 1)
    if horizontal:
        axis_order = {"categoryorder": "array", "categoryarray": [label(v) for v in order]} if order else {}
        lay["yaxis"] = {"autorange": "reversed", "automargin": True, **axis_order}
        lay["xaxis"] = dict(COUNT)
    else:
        axis_order = {"categoryorder": "array", "categoryarray": [_wrap(label(v)) for v in order]} if order else {}
        lay["yaxis"] = dict(COUNT)
        lay["xaxis"] = {"automargin": True, "tickangle": 0, **axis_order}
    return {"data": data, "layout": lay}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def sankey_spec(links: pl.DataFrame) -> dict:
    index = {n: i for i, n in enumerate(SANKEY_NODES)}
    node_colors = [ROLE_COLORS[f] for f in FACILITIES] + [PALETTE[k] for k in OUTCOME_LABELS]
    return {"data": [{"type": "sankey", "arrangement": "snap", "valueformat": ",d", "valuesuffix": " patients",
                      "node": {"label": [PLACE.get(n, n) for n in SANKEY_NODES], "pad": 18, "thickness": 16,
                               "color": node_colors},
                      "link": {"source": [index[s] for s in links["source"]],
                               "target": [index[t] for t in links["target"]],
                               "value": links["patients"].to_list(),
                               "color": [_rgba(node_colors[index[t]], 0.45) for t in links["target"]]}}],
            "layout": layout("Flow of patients: point of injury → Role 1 … Role 4 → outcome", 460)}


def timings_spec(summary: pl.DataFrame, histogram: pl.DataFrame) -> dict:
    """Histograms of minutes to first treatment, a facility and surgery, with the 10, 60 and 120 min lines."""
    data, shapes, notes = [], [], []
    for color, (measure, line) in zip(("#a3b18a", "#6f8fb3", "#b56576"),
                                      summary.select("measure", "line_min").iter_rows()):
        part = histogram.filter(pl.col("measure") == measure)
        data.append({"type": "bar", "x": numbers(part["minutes"]), "y": numbers(part["patients"]),
                     "name": measure, "opacity": 0.75, "marker": {"color": color},
                     "hovertemplate": f"{measure}: %{{y:,}} patients at %{{x}} min<extra></extra>"})
        shapes.append({"type": "line", "x0": line, "x1": line, "xref": "x", "y0": 0, "y1": 1, "yref": "paper",
                       "line": {"dash": "dash", "color": color}})
        notes.append({"x": line, "y": 1, "xref": "x", "yref": "paper", "text": f"{line} min", "showarrow": False,
                      "yanchor": "bottom"})
    return {"data": data, "layout": layout("Minutes from injury (capped at 6 h)", 380, barmode="overlay",
                                           shapes=shapes, annotations=notes,
                                           xaxis={"title": {"text": "minutes after injury"}, "tickformat": ",d"},
                                           yaxis={"title": {"text": "patients"}, **COUNT})}


def occupancy_spec(occ: pl.DataFrame, every: str) -> dict:
    data = []
    for place in IN_THEATRE:
        part = occ.filter(pl.col("facility") == place)
        data.append({"type": "scatter", "mode": "lines", "name": PLACE[place], "x": times(part["time"]),
                     "y": numbers(part["patients"]), "line": {"color": ROLE_COLORS[place]},
                     "hovertemplate": f"{PLACE[place]}: %{{y:,}} patients<extra></extra>"})
    return {"data": data, "layout": layout(f"Patients present at each place (every {every_words(every)})", 420,
                                           yaxis={"title": {"text": "patients"}, **COUNT}, hovermode="x unified")}


def preview_specs(summary: dict) -> dict[str, dict]:
    """The Scenario page's preview charts."""
    return {"day": bar_spec(summary["per_day"], "time", color="category", title="Casualties per day", height=260),
            "hour": bar_spec(summary["per_hour"], "hour", color="category",
                             title="Casualties by hour of day (UTC)", height=260),
            "triage": bar_spec(summary["triage"], "triage", color="category", title="Triage", height=280,
                               order=tuple(TRIAGE)),
            "outcome": bar_spec(summary["outcome"], "outcome", color="category", title="Outcomes", height=280,
                                horizontal=True, order=tuple(OUTCOME)),
            "mechanism": bar_spec(summary["mechanism"], "mechanism", color="category", title="Mechanism",
                                  horizontal=True, height=340)}


def overview_specs(ov: dict) -> dict[str, dict]:
    """The Explore page's overview charts from ``resources.explore_overview``'s aggregates."""
    unit = every_words(ov["every"])
    return {"by_front": bar_spec(ov["by_front"], "time", color="front", title=f"Casualties per {unit} by front"),
            "by_warfare": bar_spec(ov["by_warfare"], "time", color="warfare_type",
                                   title=f"Casualties per {unit} by warfare type"),
            "category": bar_spec(ov["category"], "category", color="category", title="Category", stacked=False),
            "triage": bar_spec(ov["triage"], "triage", color="category", title="Triage by category",
                               order=tuple(TRIAGE)),
            "mechanism": bar_spec(ov["mechanism"], "mechanism", color="category", title="Mechanism",
                                  horizontal=True, height=420),
            "body_region": bar_spec(ov["body_region"], "body_region", color="category",
                                    title="Body region (primary condition)", horizontal=True, height=420),
            "outcomes_by_facility": bar_spec(ov["outcomes_by_facility"], "last_facility", color="outcome",
                                             title="Outcomes by the last facility reached",
                                             order=tuple(FACILITIES))}
