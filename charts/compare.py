"""Two runs' main charts on one set of axes (Explore's Compare): scenario time counts from each run's own start,
so runs that began on different dates line up by day."""
from __future__ import annotations

import polars as pl

from charts.figures import COUNT, ROLE_COLORS, layout, numbers
from charts.labels import OUTCOME, PLACE, plotly_text

SIDE_COLORS = ("#6f8fb3", "#d9b44a")  # run A, run B
SIDE_DASH = ("solid", "dash")


def _day(start) -> pl.Expr:
    """Scenario day (1 = the first 24 h) of a time column."""
    return ((pl.col("time") - pl.lit(start)).dt.total_seconds() // 86_400 + 1).cast(pl.Int64)


def per_day(side: dict) -> pl.DataFrame:
    ov = side["overview"]
    return (ov["by_front"].group_by(day=_day(ov["start"])).agg(pl.col("patients").sum()).sort("day"))


def compare_specs(a: dict, b: dict) -> dict[str, dict]:
    """``a``, ``b``: {"label", "overview" (resources.explore_overview), "flow" (resources.explore_flow)}."""
    sides = (a, b)
    names = [plotly_text(s["label"]) for s in sides]
    days, outcomes, timings, occupancy = [], [], [], []
    for i, (side, name) in enumerate(zip(sides, names)):
        d = per_day(side)
        days.append({"type": "bar", "name": name, "x": d["day"].to_list(), "y": d["patients"].to_list(),
                     "marker": {"color": SIDE_COLORS[i]}, "hovertemplate": f"{name}, day %{{x}}: %{{y:,}} casualties"
                                                                          "<extra></extra>"})
        f = side["overview"]["figures"]
        n = max(1, f["patients"])
        counts = [f["rtd"], f["kia"], f["dow"], f["role4"], f["in_care"]]
        outcomes.append({"type": "bar", "name": name, "x": [o.replace(" ", "<br>", 1) for o in OUTCOME.values()],
                         "y": [c / n for c in counts],
                         "customdata": counts, "marker": {"color": SIDE_COLORS[i]},
                         "hovertemplate": f"{name}, %{{x}}: %{{customdata:,}} (%{{y:.1%}})<extra></extra>"})
        t = side["flow"]["timings"]["summary"]
        timings.append({"type": "bar", "name": name,
                        "x": [f"{m[:1].upper()}{m[1:]}<br>within {line} min"
                              for m, line in t.select("measure", "line_min").iter_rows()],
                        "y": t["within_share"].to_list(), "marker": {"color": SIDE_COLORS[i]},
                        "hovertemplate": f"{name}, %{{x}}: %{{y:.0%}}<extra></extra>"})
        occ = side["flow"]["occupancy"].with_columns(
            day=(pl.col("time") - pl.lit(side["overview"]["start"])).dt.total_seconds() / 86_400)
        for role in ("R1", "R2", "R3"):
            part = occ.filter(pl.col("facility") == role)
            occupancy.append({"type": "scatter", "mode": "lines", "name": PLACE[role], "legendgroup": role,
                              "showlegend": i == 0, "x": numbers(part["day"]), "y": numbers(part["patients"]),
                              "line": {"color": ROLE_COLORS[role], "dash": SIDE_DASH[i], "width": 1.5},
                              "hovertemplate": f"{PLACE[role]}, {name}: %{{y:,}}<extra></extra>"})
    day_axis = {"title": {"text": "day of the scenario"}, "tickformat": ",d"}
    return {
        "per_day": {"data": days, "layout": layout("Casualties per day of the scenario", 340, barmode="group",
                                                   xaxis=day_axis, yaxis=COUNT)},
        "outcomes": {"data": outcomes, "layout": layout("Outcomes (share of each run's patients)", 340,
                                                        barmode="group", yaxis={"tickformat": ".0%"})},
        "occupancy": {"data": occupancy, "layout": layout(
            "Patients present at each role (solid: first run, dashed: second)", 380,
            xaxis={"title": {"text": "days after the scenario start"}}, yaxis=COUNT)},
        "timings": {"data": timings, "layout": layout("T1 battle casualties within the 10-1-2 lines", 340,
                                                      barmode="group", yaxis={"tickformat": ".0%",
                                                                              "range": [0, 1.05]})},
    }

