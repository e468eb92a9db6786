"""Presentation: the dashboard's chart specs as plain dicts, built from what core returns.

``figures``: plotly figures of the Scenario, Explore and Replay pages. ``live``: Vega-Lite specs of the charts that
redraw every second (Generate's progress, Monitor). Nothing here imports streamlit or plotly.
"""
