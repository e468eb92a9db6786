"""Vega-Lite specs of the charts that redraw while you watch: a run's progress (Generate) and the Monitor page.

Handing Streamlit a spec and plain columns costs about 1 ms a chart; ``st.line_chart`` builds it through pandas and
Altair (about 40 ms with a time axis), too slow for a page that redraws every second. Every chart here is read from
the back of a room: ``height`` is the plot area itself (axes, title and legend come on top of it, never out of it),
titles and legend labels are never cut, times are a 24-hour UTC clock and numbers carry thousands separators.
"""
from __future__ import annotations

# the plot area keeps ``height``; the width follows the page column
FIT_WIDTH = {"type": "fit-x", "contains": "padding"}
PADDING = {"left": 8, "right": 8, "top": 8, "bottom": 8}  # room in the box for rotated axis titles (an object: Streamlit sets padding.bottom)
LEGEND = {"orient": "top", "title": None, "labelLimit": 0, "symbolType": "stroke", "labelFontSize": 13}
CLOCK = "%H:%M:%S"
AXIS = {"labelFontSize": 12, "titleFontSize": 13, "titleLimit": 0, "labelLimit": 0, "labelOverlap": True}


def _x(x: str, x_type: str, x_title: str | None) -> dict:
    if x_type == "temporal":  # a 24-hour UTC clock: Vega's default multi-format is a 12-hour clock without am/pm,
        # and in Streamlit's Vega-Lite an axis "format" with formatType "utc" is ignored; a label expression is not
        return {"field": x, "type": "temporal", "scale": {"type": "utc"}, "title": x_title,
                "axis": {**AXIS, "labelExpr": f"utcFormat(datum.value, '{CLOCK}')", "tickCount": 6,
                         "labelFlush": True}}  # the last tick's label stays inside the chart as time moves on
    return {"field": x, "type": "quantitative", "title": x_title,
            "axis": {**AXIS, "format": ",~r", "tickMinStep": 1, "tickCount": 8}}


def line_spec(x: str, series: list[str], *, x_type: str = "quantitative", x_title: str | None = None,
              y_title: str | None = None, title: str | None = None, height: int = 200, y_format: str = ",~r",
              zero: bool = True) -> dict:
    """A Vega-Lite line chart of ``series`` (columns of the data) against ``x``, with a legend when there are
    several series; ``title`` above the plot, ``height`` the plot area's own height in pixels."""
    spec = {
        "height": height,
        "autosize": FIT_WIDTH,
        "padding": PADDING,
        "mark": {"type": "line", "tooltip": True, "strokeWidth": 2.5},
        "transform": [{"fold": series, "as": ["series", "value"]},
                      *([{"calculate": f"utcFormat(datum['{x}'], '{CLOCK}')", "as": "clock (UTC)"}]
                        if x_type == "temporal" else [])],
        "encoding": {
            "x": _x(x, x_type, x_title),
            "y": {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": zero},
                  "axis": {**AXIS, "format": y_format, "tickCount": 5}},
            "color": {"field": "series", "type": "nominal", "sort": series,
                      "legend": LEGEND if len(series) > 1 else None},
            "tooltip": [{"field": "clock (UTC)", "type": "nominal"} if x_type == "temporal" else
                        {"field": x, "type": "quantitative", "title": x_title or x, "format": ",~r"},
                        {"field": "series", "type": "nominal", "title": "series"},
                        {"field": "value", "type": "quantitative", "title": "value", "format": ",.6~r"}],
        },
    }
    if title:
        spec["title"] = {"text": title, "anchor": "start", "fontSize": 15, "limit": 0}
    return spec


def two_scale_spec(x: str, left: tuple[str, str], right: tuple[str, str], *, x_title: str | None = None,
                   title: str | None = None, height: int = 200, left_domain: tuple[float, float] | None = None,
                   right_domain: tuple[float, float] | None = None) -> dict:
    """Two series with their own y axes (left and right), e.g. connections in use and a hit rate in %.

    ``left`` and ``right`` are (column, axis title); each axis title is coloured like its line."""
    def layer(column: str, axis_title: str, orient: str, color: str, domain=None) -> dict:
        return {"mark": {"type": "line", "tooltip": True, "strokeWidth": 2.5, "color": color},
                "encoding": {"x": _x(x, "quantitative", x_title),
                             "y": {"field": column, "type": "quantitative", "title": axis_title,
                                   "scale": {"zero": True, **({"domain": list(domain)} if domain else {})},
                                   "axis": {**AXIS, "orient": orient, "titleColor": color, "format": ",~r",
                                            "tickCount": 5, **({"tickMinStep": 1} if orient == "left" else {})}},
                             "tooltip": [{"field": x, "type": "quantitative", "title": x_title or x},
                                         {"field": column, "type": "quantitative", "title": axis_title}]}}
    spec = {"height": height, "autosize": FIT_WIDTH, "padding": PADDING,
            "layer": [layer(*left, "left", "#4c9be8", left_domain), layer(*right, "right", "#f28e2b", right_domain)],
            "resolve": {"scale": {"y": "independent"}}}
    if title:
        spec["title"] = {"text": title, "anchor": "start", "fontSize": 15, "limit": 0}
    return spec


def bar_spec(x: str, y: str, *, x_title: str | None = None, y_title: str | None = None, title: str | None = None,
             height: int = 240, horizontal: bool = False) -> dict:
    """A Vega-Lite bar chart of ``y`` per ``x`` (x kept in data order); ``horizontal`` puts the labels on the left,
    where long ones are read whole."""
    cat = {"field": x, "type": "nominal", "sort": None, "title": x_title, "axis": {**AXIS}}
    val = {"field": y, "type": "quantitative", "title": y_title or y, "axis": {**AXIS, "format": ",~r"}}
    spec = {"height": height, "autosize": FIT_WIDTH, "padding": PADDING, "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": cat, "x": val} if horizontal else {"x": {**cat, "axis": {**AXIS, "labelAngle": -30}},
                                                                  "y": val},
            }
    spec["encoding"]["tooltip"] = [{"field": x, "type": "nominal", "title": x_title or x},
                                   {"field": y, "type": "quantitative", "title": y_title or y, "format": ",.0f"}]
    if title:
        spec["title"] = {"text": title, "anchor": "start", "fontSize": 15, "limit": 0}
    return spec
