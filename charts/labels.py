"""Plain words for the contract's codes, for every chart, table header and caption a planner reads.

The tables keep their codes (the data contract); only what is shown is translated here.
"""
from __future__ import annotations

import math
import re
from datetime import datetime

from core.explore import OUTCOME_LABELS, TRANSIT

CATEGORY = {"BI": "Battle injury", "NBI": "Non-battle injury", "DIS": "Disease", "BSI": "Battle stress"}
TRIAGE = {"T1": "T1 immediate", "T2": "T2 delayed", "T3": "T3 minimal", "T4": "T4 expectant"}
OUTCOME = dict(OUTCOME_LABELS)
PLACE = {"POI": "Point of injury", TRANSIT: "In transit", "R1": "Role 1", "R2": "Role 2", "R3": "Role 3",
         "R4": "Role 4"}
EVENT = {"injury": "Injured", "arrival": "Arrived", "treatment_start": "Treatment", "departure": "Left",
         "death": "Died", "rtd": "Returned to duty", "evacuated": "Evacuated out of theatre"}
WORDS = {"other_nbi": "other non-battle", "sports_training": "sports and training", "cbrn": "CBRN",
         "none": "none (disease or stress)", "in_transit": "in transit", "non_battle": "non-battle"}
ALL = {**CATEGORY, **OUTCOME, **PLACE, **WORDS}


EVERY = {"1h": "hour", "2h": "2 hours", "3h": "3 hours", "6h": "6 hours", "12h": "12 hours", "1d": "day"}


def every(step: str) -> str:
    """A polars time step in words ("6h" -> "6 hours")."""
    return EVERY.get(step, step)


def plain(value) -> str:
    """A code or snake_case value in words ("lower_extremity" -> "lower extremity", "ROLE4" -> its label)."""
    if value is None:
        return "–"
    text = str(value)
    return ALL.get(text) or text.replace("_", " ")


def header(column: str) -> str:
    """A column name as a table header ("within_share" -> "Within share")."""
    text = column.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def number(value, digits: int = 0, unit: str = "") -> str:
    """A number with thousands separators, rounded; "–" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip() if unit else text


def share(value, digits: int = 0) -> str:
    return "–" if value is None else f"{value * 100:,.{digits}f} %"


def minutes(value) -> str:
    """Minutes as "45 min", "3.5 h" or "2.4 days"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    m = float(value)
    if abs(m) < 120:
        return f"{round(m):,} min"
    return f"{m / 60:,.1f} h" if abs(m) < 48 * 60 else f"{m / 1440:,.1f} days"


def utc(value: datetime | str | None) -> str:
    """A time as "2025-06-01 14:05 UTC" (24-hour clock, whole minutes)."""
    if not value:
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return f"{value:%Y-%m-%d %H:%M} UTC"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=])")


def text(value) -> str:
    """User text (a scenario name) made safe inside Markdown: every character Markdown or Streamlit's
    directives (``:red[..]``, ``:material/..:``) would act on is escaped, so it shows as typed."""
    escaped = _MARKDOWN.sub(r"\\\1", str(value)).replace("\n", " ")
    # a web address in text becomes a link whatever the escapes (autolinks): a zero-width space stops that
    return re.sub(r"(?i)(https?|ftp)(\\:)//|\b(www)\\.", lambda m: f"{m.group(1)}{m.group(2)}\u200b//"
                  if m.group(1) else f"{m.group(3)}\u200b\\.", escaped)


def plotly_text(value) -> str:
    """User text inside a plotly title or legend (plotly reads a few HTML tags there, links included)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


VERDICT = {"holds": "holds", "strained": "strained", "overwhelmed": "overwhelmed"}


def value(v, unit: str) -> str:
    """A compared figure in words: counts with separators, shares in percent, minutes, a verdict."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit == "text":
        return VERDICT.get(str(v), plain(v))
    if unit == "share":
        return share(v, 1)
    if unit == "min":
        return minutes(v)
    if unit == "h":
        return number(v, 0, "h")
    return number(v, 0 if float(v).is_integer() else 1)


def difference(d, unit: str) -> str:
    """The signed change of a figure ("+12", "−3.5 points", "+25 min"); "no change" for zero."""
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return "–"
    shown = {"share": 0.0005, "min": 0.5, "h": 0.5}.get(unit, 0.5 if float(d).is_integer() else 0.05)
    if abs(d) < shown:  # nothing a reader would see at the precision shown
        return "no change"
    sign = "+" if d > 0 else "−"
    if unit == "share":
        return f"{sign}{abs(d) * 100:,.1f} points"
    if unit == "min":
        return f"{sign}{abs(d):,.0f} min"
    if unit == "h":
        return f"{sign}{abs(d):,.0f} h"
    return f"{sign}{abs(d):,.0f}" if float(d).is_integer() else f"{sign}{abs(d):,.1f}"


DETAIL = {"diverted": "diverted past a full facility", "dead_at_scene": "dead at the scene", "air": "by air",
          "ground": "by road"}
VITALS = {"Heart rate": "Heart rate (/min)", "Resp rate": "Respiratory rate (/min)", "BP sys": "Systolic BP (mmHg)",
          "BP dias": "Diastolic BP (mmHg)", "SaO2 % BldA PulseOx": "Oxygen saturation (%)",
          "Body temperature": "Temperature (°C)", "GCS total": "Glasgow coma score"}


def detail(value) -> str:
    """An event's detail in words: a procedure's SNOMED CT term with its code, a place in transit, a mode."""
    if value is None or value == "":
        return ""
    text = str(value)
    if text.isdigit():
        from core import reference
        row = reference.procedures().get(text) or reference.conditions().get(text)
        return f"{row['display']} (SNOMED CT {text})" if row else f"SNOMED CT {text}"
    if text.startswith("in_transit:"):
        return f"in transit to {PLACE.get(text.split(':', 1)[1], text.split(':', 1)[1])}"
    return DETAIL.get(text, plain(text))


def change(row: dict) -> str:
    """A ``core.explore.differences`` row's change in words, as the two values are shown (rounded): "5 min"
    beside "4 min" is a change of a minute, whatever the decimals behind them."""
    unit, before, now = row["unit"], row["before"], row["now"]
    if unit == "text":
        return "no change" if before == now else "changed"
    if row["difference"] is None:
        return "–"
    if unit == "min" and max(abs(before), abs(now)) < 120:
        return difference(round(now) - round(before), unit)
    if unit == "share":
        return difference((round(now * 1000) - round(before * 1000)) / 1000, unit)
    return difference(row["difference"], unit)


def differences_frame(rows: list[dict], before: str, now: str, joined: str | None = None):
    """``core.explore.differences`` rows as a table to show: the figure, each side in words and the difference
    (``now`` minus ``before``); ``joined``: one column of that name, "before → now", for a narrow place."""
    import polars as pl
    def both(r: dict) -> str:
        b, n = value(r["before"], r["unit"]), value(r["now"], r["unit"])
        return b if b == n else f"{b} → {n}"
    sides = ({joined: [both(r) for r in rows]} if joined
             else {before: [value(r["before"], r["unit"]) for r in rows],
                   now: [value(r["now"], r["unit"]) for r in rows]})
    return pl.DataFrame({"Figure": [r["figure"] for r in rows], **sides,
                         "Difference": [change(r) for r in rows]})
