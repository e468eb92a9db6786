"""Monitor: for the operator, the current run and how the server and the database are doing over time; for a
developer, the pool, cache and page-speed figures in a collapsed Details section."""
from datetime import datetime, timezone

import pyarrow as pa
import streamlit as st

import resources
from charts.live import bar_spec, line_spec
from core.labels import plain, run_label, run_labels, status_word

PAGE_BUDGET_MS = 50
TIME_AXIS = "time (UTC)"
POOL_WORDS = {"checked_out": "Connections in use now", "idle": "Connections open and idle",
              "size": "Connections kept open", "overflow": "Extra connections open beyond those",
              "budget": "Most connections allowed at once", "waits": "Times a page waited for a connection",
              "timeouts": "Times no connection came in time", "connects": "Connections opened so far",
              "connect_ms_avg": "Average time to open a connection (ms)", "query_ms_p50": "Median query time (ms)",
              "query_ms_p95": "Query time for 95 % of queries (ms)", "queries": "Queries answered so far"}
CACHE_WORDS = {"preset_choices": "Preset names", "default_scenario": "Default scenario", "preview": "Scenario preview sample",
               "preview_summary": "Scenario preview figures", "preview_figures": "Scenario preview charts",
               "run_history": "Run list", "run_summary": "Run summaries", "saved_scenarios": "Saved scenarios",
               "saved_scenario_versions": "Versions of a saved scenario", "nation_names": "Nation names",
               "find_runs": "Run folders", "explore_overview": "Explore: key figures and timelines",
               "explore_flow": "Explore: flow, 10-1-2 and occupancy", "explore_patients": "Explore: patient table pages",
               "explore_patient_card": "Explore: patient cards", "explore_figures": "Explore: overview charts",
               "explore_flow_figures": "Explore: flow charts", "replay_frames": "Replay frames",
               "replay_figure": "Replay charts", "run_table_rows": "Runs table"}


def number(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


st.title("Monitor")
db_down = resources.db_error()
if db_down:
    st.warning(f"**Database unavailable** — the connection and query figures are missing. {db_down}",
               icon=":material/cloud_off:")
live = st.toggle("Live (refresh every 2 s)", value=True)


def current_run() -> None:
    """What a generation is doing now (or the last one's end), in one line and a bar."""
    job = resources.job_registry().current()
    if job is None:
        st.caption("No run since the server started.")
        return
    v = job.view()
    row = {"scenario_name": v["scenario_name"], "created_at": datetime.fromtimestamp(v["submitted_at"], timezone.utc),
           "status": v["status"], "format": v["format"], "compressed": v["compressed"], "encrypted": v["encrypted"],
           "patients": v["patients_total"], "patients_generated": v["patients_done"]}
    if v["status"] in ("queued", "running"):
        st.markdown(f"**Current run:** {plain(run_label(row))}")
        left = "" if v["eta_s"] is None else f" · about {v['eta_s']:,.0f} s left"
        st.progress(v["fraction"], text=f"{v['patients_done']:,} of {v['patients_total']:,} patients · "
                    f"{v['patients_per_s']:,.0f} patients/s{left}")
        st.page_link("views/generate.py", label="Watch or cancel it on Generate", icon=":material/play_circle:")
    else:
        if v["status"] == "completed":
            row["patients_generated"] = (v["manifest"] or {}).get("patients", v["patients_done"])
        st.caption(f"No run is going. Last run: {plain(run_label(row))} · {status_word(v['status']).lower()}.")


@st.fragment(run_every=2 if live else None)
def process_panel() -> None:
    current_run()
    history = resources.metrics_sampler().history(seconds=900)
    last = history[-1] if history else {}
    hit = resources.cache_hit_rate()
    cols = st.columns(5)
    cols[0].metric("Server CPU", f"{last.get('cpu_pct', 0):,.0f} %", help="Of one core: 200 % is two cores busy.")
    cols[1].metric("Server memory", f"{last.get('rss_mb', 0):,.0f} MB")
    pool = last.get("pool_budget")
    cols[2].metric("Database connections", f"{last.get('pool_checked_out', 0):,} of {pool:,}" if pool else "–",
                   help="In use now, of the most allowed at once.")
    p95 = last.get("query_ms_p95")
    cols[3].metric("Query time", f"{p95:,.1f} ms" if p95 is not None else "–",
                   help="95 % of database queries take at most this long.")
    cols[4].metric("Cache hit rate", f"{hit * 100:.0f} %" if hit is not None else "–",
                   help="Share of lookups answered from memory without recomputing.")
    if len(history) < 2:
        st.caption("The charts fill in as one sample a second is taken.")
        return
    # one Arrow table, each chart given only its columns: Streamlit sends Arrow as it is (a dict or a pandas frame
    # would be converted once per chart)
    data = pa.table({"time": [datetime.fromtimestamp(s["t"], timezone.utc).isoformat() for s in history],
                     "CPU": [s["cpu_pct"] for s in history], "memory": [s["rss_mb"] for s in history],
                     "in use": [s.get("pool_checked_out") for s in history],
                     "most allowed": [s.get("pool_budget") for s in history],
                     "median": [s.get("query_ms_p50") for s in history],
                     "95 % of queries": [s.get("query_ms_p95") for s in history]})

    def chart(col, series: list[str], y_title: str, title: str) -> None:
        col.vega_lite_chart(data.select(["time", *series]),
                            line_spec("time", series, x_type="temporal", x_title=TIME_AXIS, y_title=y_title,
                                      title=title), width="stretch")

    c1, c2 = st.columns(2)
    chart(c1, ["CPU"], "% of one core", "Server CPU")
    chart(c2, ["memory"], "MB", "Server memory (MB)")
    if data["most allowed"].null_count < data.num_rows:
        c3, c4 = st.columns(2)
        chart(c3, ["in use", "most allowed"], "connections", "Database connections")
        chart(c4, ["median", "95 % of queries"], "milliseconds", "Database query time")


process_panel()

st.subheader("Speed of recent runs")
done = [r for r in resources.run_rows() if r.get("status") == "completed" and r.get("patients_per_s")][:15]
if done:
    st.vega_lite_chart({"run": run_labels(done), "patients per second": [r["patients_per_s"] for r in done]},
                       bar_spec("run", "patients per second", x_title=None, horizontal=True,
                                height=max(60, 28 * len(done))), width="stretch")
    st.caption("Newest first; a run saved to the database also counts the time to store it.")
else:
    st.caption("No completed run yet.")

with st.expander("Details (for developers)"):
    left, right = st.columns(2)
    with left:
        st.markdown("**Database connection pool**")
        status = resources.pool_status_now()
        if status:
            st.caption(f"Database: `{resources.database().described or 'unknown'}`")
            st.dataframe([{"measure": POOL_WORDS.get(k, k.replace("_", " ").capitalize()), "value": number(v, 2)}
                          for k, v in status.items()], hide_index=True, width="stretch")
        else:
            st.caption("No database connection.")
        st.markdown("**Page build time**")
        timings = resources.page_timings().stats()
        st.dataframe([{"page": page, "builds": f"{s['runs']:,}", "median (ms)": f"{s['p50_ms']:,.1f}",
                       "95 % within (ms)": f"{s['p95_ms']:,.1f}", "slowest (ms)": f"{s['max_ms']:,.1f}",
                       f"within {PAGE_BUDGET_MS} ms": "yes" if s["p95_ms"] <= PAGE_BUDGET_MS else "no"}
                      for page, s in sorted(timings.items())], hide_index=True, width="stretch")
        st.caption(f"The time the server takes to build a page, measured around each page's script run (the "
                   f"live refreshes of a chart are not counted). The target: 95 % of builds within {PAGE_BUDGET_MS} ms.")
    with right:
        st.markdown("**Cached lookups**")
        stats = resources.cache_stats().snapshot()
        st.dataframe([{"lookup": CACHE_WORDS.get(name, name.replace("_", " ").capitalize()), "calls": f"{s['calls']:,}",
                       "from the cache": f"{s['hits']:,}", "computed": f"{s['misses']:,}",
                       "hit rate": f"{100 * s['hits'] / s['calls']:.0f} %" if s["calls"] else "–", "function": name}
                      for name, s in sorted(stats.items())], hide_index=True, width="stretch")
        threads = (resources.metrics_sampler().latest() or {}).get("threads")
        st.caption(f"Threads in the server process: {number(threads)}. A lookup computed once is then answered "
                   "from memory; the steady state is at least 90 % from the cache.")
