"""Vega-Lite specs of the charts that redraw while you watch: a run's progress (Generate) and the Monitor page."""
from __future__ import annotations


def line_spec(x: str, series: list[str], *, x_type: str = "quantitative", x_title: str | None = None,
              y_title: str | None = None, height: int = 180) -> dict:
    """A Vega-Lite line chart of ``series`` (columns of the data) against ``x``.

    Handing Streamlit a spec and plain columns costs about 1 ms a chart; ``st.line_chart`` builds it through
    pandas and Altair (about 40 ms with a time axis), too slow for a page that redraws every second.
    """
    return {
        "height": height,
        "mark": {"type": "line", "interpolate": "monotone", "tooltip": True},
        "transform": [{"fold": series, "as": ["series", "value"]}],
        "encoding": {
            "x": {"field": x, "type": x_type, "title": x_title if x_title is not None else x},
            "y": {"field": "value", "type": "quantitative", "title": y_title or (series[0] if len(series) == 1 else None)},
            "color": {"field": "series", "type": "nominal", "title": None, "legend": {"orient": "bottom"}},
        },
    }


def bar_spec(x: str, y: str, *, height: int = 240) -> dict:
    """A Vega-Lite bar chart of ``y`` per ``x`` (x kept in data order)."""
    return {"height": height, "mark": {"type": "bar", "tooltip": True},
            "encoding": {"x": {"field": x, "type": "nominal", "sort": None, "axis": {"labelAngle": -40}},
                         "y": {"field": y, "type": "quantitative"}}}
