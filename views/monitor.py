"""Monitor: this server process and the database over time, caches, page speed and run throughput."""
from datetime import datetime, timezone

import streamlit as st

import resources
from charts.live import bar_spec, line_spec

PAGE_BUDGET_MS = 50

st.title("Monitor")
db_down = resources.db_error()
if db_down:
    st.warning(f"**Database unavailable** — pool and query metrics are missing. {db_down}",
               icon=":material/cloud_off:")
live = st.toggle("Live (refresh every 2 s)", value=True)


@st.fragment(run_every=2 if live else None)
def process_panel() -> None:
    history = resources.metrics_sampler().history(seconds=900)
    last = history[-1] if history else {}
    hit = resources.cache_hit_rate()
    cols = st.columns(6)
    cols[0].metric("CPU (one core = 100 %)", f"{last.get('cpu_pct', 0):.0f} %")
    cols[1].metric("Memory (RSS)", f"{last.get('rss_mb', 0):,.0f} MB")
    cols[2].metric("Threads", last.get("threads", 0))
    pool = last.get("pool_budget")
    cols[3].metric("Pool in use", f"{last.get('pool_checked_out', 0)} / {pool}" if pool else "–")
    p95 = last.get("query_ms_p95")
    cols[4].metric("Query p95", f"{p95:.1f} ms" if p95 is not None else "–")
    cols[5].metric("Cache hit rate", f"{hit:.0%}" if hit is not None else "–")
    if len(history) < 2:
        st.caption("The charts fill in as the sampler collects one sample a second.")
        return
    data = {"time": [datetime.fromtimestamp(s["t"], timezone.utc).isoformat() for s in history],
            "CPU %": [s["cpu_pct"] for s in history], "RSS MB": [s["rss_mb"] for s in history],
            "pool in use": [s.get("pool_checked_out") for s in history],
            "pool budget": [s.get("pool_budget") for s in history],
            "query p50 ms": [s.get("query_ms_p50") for s in history],
            "query p95 ms": [s.get("query_ms_p95") for s in history]}
    c1, c2 = st.columns(2)
    c1.vega_lite_chart(data, line_spec("time", ["CPU %"], x_type="temporal", x_title=None, height=200), width="stretch")
    c2.vega_lite_chart(data, line_spec("time", ["RSS MB"], x_type="temporal", x_title=None, height=200),
                       width="stretch")
    if any(v is not None for v in data["pool budget"]):
        c3, c4 = st.columns(2)
        c3.vega_lite_chart(data, line_spec("time", ["pool in use", "pool budget"], x_type="temporal", x_title=None,
                                           y_title="connections", height=200), width="stretch")
        c4.vega_lite_chart(data, line_spec("time", ["query p50 ms", "query p95 ms"], x_type="temporal", x_title=None,
                                           y_title="query latency (ms)", height=200), width="stretch")


process_panel()

left, right = st.columns(2)
with left:
    st.subheader("Database pool")
    status = resources.pool_status_now()
    if status:
        st.caption(resources.database().described or "")
        st.dataframe([{"measure": k, "value": v} for k, v in status.items()], hide_index=True, width="stretch")
    else:
        st.caption("No database connection.")
    st.subheader("Cached lookups")
    stats = resources.cache_stats().snapshot()
    st.dataframe([{"function": name, "calls": s["calls"], "hits": s["hits"], "misses": s["misses"],
                   "hit rate": f"{s['hits'] / s['calls']:.0%}" if s["calls"] else "–"}
                  for name, s in sorted(stats.items())], hide_index=True, width="stretch")
with right:
    st.subheader("Page script-run time")
    timings = resources.page_timings().stats()
    st.dataframe([{"page": page, "runs": s["runs"], "p50 ms": s["p50_ms"], "p95 ms": s["p95_ms"],
                   "max ms": s["max_ms"], f"p95 ≤ {PAGE_BUDGET_MS} ms": s["p95_ms"] <= PAGE_BUDGET_MS}
                  for page, s in sorted(timings.items())], hide_index=True, width="stretch")
    st.caption("Measured in app.py around each page's script run (fragment refreshes are not page runs).")
    st.subheader("Run throughput")
    done = [r for r in resources.runs() if r.get("status") == "completed" and r.get("patients_per_s")][:30]
    if done:
        done.reverse()
        st.vega_lite_chart({"run": [f"{r['run_id'][:15]}… {r.get('patients') or 0:,}" for r in done],
                            "patients/s": [r["patients_per_s"] for r in done]}, bar_spec("run", "patients/s"),
                           width="stretch")
    else:
        st.caption("No completed run yet.")
