"""The discrete-event simulation of the medical plan, compiled with numba (docs/capacity.md).

Everything is int64 seconds after the scenario start. State lives in plain numpy arrays that
``core.capacity.model`` owns; these kernels only read and change them, so the Python side can grow, inspect
and hand them over between blocks. Events are processed strictly in (time, insertion order), and blocks are
injected at fixed points (after the previous block's last injury time), so a run is the same for any chunk
size or number of worker processes.

Layout (field indexes below):
- ``P[slot, field]``: one row per patient in the theatre's care (slot = gid & mask, gid = 0-based patient
  index of the run), int32; inputs from the intended (unconstrained) journey, state, and the actual journey.
- ``RS[r, field]``: one row per resource (a facility's first care, operating tables, ICU, holding; a queue for
  a vehicle at a facility; a front's ambulances and helicopters; strategic evacuation).
- ``FA[j, field]``: facilities; ``FR[f, field]``: fronts; ``TH``: theatre values; ``S``: scalars.
- ``H[i, 0..2]``: binary heap of events (time, insertion number, what: a << 8 | b << 4 | type).
- ``TS[bin, r, 0..3]``: per time bin and resource: busy seconds, peak occupancy, peak queue, most off-shift
  surgical teams at work (int32; one bin's
  row of every resource is small, so the events of one period stay in the cache).
"""
from __future__ import annotations

import numpy as np
from numba import njit

NA = -1
BIG = np.int64(2**62)
GROUND, AIR = 1, 2
POI, R1, R2, R3, R4 = 0, 1, 2, 3, 4

# --- patient fields ----------------------------------------------------------------------------------------
GID, FRONT, TRI, CAT, T0, POIDEP = 0, 1, 2, 3, 4, 5
FAC = 6        # +k-1: intended facility (role) of stage k = 1..4
DWELL = 10     # +k-1: intended stay at stage k (arrival to leaving, or to return to duty)
MODE = 14      # +k-1: intended means of the leg into stage k
LEG = 18       # +k-1: intended leg into stage k (seconds)
LEGG = 22      # +k-1: the same leg by road (when no helicopter can fly it)
TERM = 26      # intended end: 0 none, 1 return to duty, 2 evacuated to Role 4
TERMSTAGE = 27
LKIND = 28     # 0 not lethal, 2 dies of wounds whatever happens, 3 saved unless delayed, 4 dies before care
TKIA = 29      # untreated death time
BUDGET = 30    # tolerance for delay to decisive care (kind 3)
XDOW = 31      # time from first care to death of wounds (kind 2)
D0 = 32        # decisive care start in the intended journey
DKIND = 33     # 0: decisive care is the first care at a facility; 1: surgery
DR1 = 34       # Role 1 treatment
RESUS = 35     # +role-2 (R2, R3): resuscitation time, 0 = none
SURG = 37      # +0: surgery needed before any (R2 draw), +1: definitive surgery at R3; 0 = none
ICU = 39       # +role-2
POSTOP = 41    # +role-2
XLEGG, XLEGA = 43, 44   # extra leg R2 -> R3 when diverted there (road / air)
ROT = 45       # the Role 2 of its front the patient is assigned to (index among them)
# state
STAGE, OSTAGE, STATUS, FACJ, HELD, WAITRES, WAITSINCE, QNEXT, QPREV = 46, 47, 48, 49, 50, 51, 52, 53, 54
PHASE, WTOT, NDIV, MASCAL, DECIDED, TDIE, READY, WFAC = 55, 56, 57, 58, 59, 60, 61, 62
SURGWAIT, OTREADY, DONE, TTERM, TERMOUT, TERMSTG, FIRSTMTF, OPERATED, DEST, MERGED, ARRT = (
    63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73)
# actual journey, +stage 0..4
AFAC, AARR, ADEP, AMODE, ACARE, AOT, ADIV = 74, 79, 84, 89, 94, 99, 104
OTFAC = 109    # facility of the first operation
ALERT = 110    # operating tables told to expect this T1 (NA: none)
NPF = 111

# status
ST_TRANSIT, ST_WAIT, ST_ACTIVE, ST_HOLD, ST_VEHICLE, ST_DONE, ST_DEAD = 1, 2, 3, 4, 5, 6, 7
# phases at a Role 2/3 facility
PH_NONE, PH_RESUS, PH_OT, PH_ICU, PH_HOLD, PH_R1 = 0, 1, 2, 3, 4, 5

# --- resources ---------------------------------------------------------------------------------------------
RS_CAP, RS_BUSY, RS_QN = 0, 1, 2
RS_QH = 3      # +class 0..3
RS_QT = 7      # +class 0..3
RS_KIND, RS_FAC, RS_TABLES, RS_DAY, RS_NIGHT = 11, 12, 13, 14, 15
RS_PEAK, RS_MAXQ, RS_LAST, RS_BUSYINT, RS_CAPINT, RS_FULLT, RS_SERVED, RS_WAITSUM = 16, 17, 18, 19, 20, 21, 22, 23
RS_RECALLED, RS_RECALLING = 24, 25  # operating tables: off-shift surgical teams at work / on their way
RS_SURGDAY = 26  # +0 day teams, +1 night teams: surgery they started since their shift last began
RS_OFFSET = 28  # operating tables: the facility's local hour at the scenario start
RS_EXPECTED = 29  # operating tables: T1 on their way who will need one
RS_CALLS = 30     # operating tables: off-shift teams that came in
RS_QN1 = 31       # T1 among those waiting
NRS = 32
K_FIRST, K_OT, K_ICU, K_HOLD, K_AMBQ, K_HELIQ, K_AMB, K_HELI, K_STRAT = 0, 1, 2, 3, 4, 5, 6, 7, 8
SLOTS = 6      # resources per facility: first care, OT, ICU, holding, ambulance queue, helicopter queue

# facilities, fronts, theatre, scalars
FA_ROLE, FA_FRONT, FA_KIND, FA_RES, FA_OFFSET = 0, 1, 2, 3, 4
NFA = 5
FR_J0, FR_NR2B, FR_NR2E, FR_AMB, FR_HELI, FR_AMBL, FR_HELIL = 0, 1, 2, 3, 4, 5, 6
NFR = 7
TH_R3J0, TH_NR3, TH_STRAT, TH_INTERVAL, TH_SEATS, TH_HORIZON, TH_DAYSTART, TH_DAYEND, TH_BIN, TH_DIVF = range(10)
TH_DEFER = 10  # +class 1..3 (T2, T3, T4): longest a delayed operation waits while a table is kept for T1
TH_RECALL, TH_TEAMDAY = 14, 15  # an off-shift team reaches the table after; surgery a team does in a day at most
NTH = 16
S_HN, S_SEQ, S_CLOCK, S_MASK, S_STACKN, S_ERR = 0, 1, 2, 3, 4, 5
NS = 6

# events
(E_POI, E_ARRIVE, E_ACT, E_READY, E_VEHFREE, E_SORTIE, E_SHIFT, E_DEADLINE, E_DEATH, E_RELEASE, E_RECHECK,
 E_TEAM) = range(12)


# --- heap ---------------------------------------------------------------------------------------------------
# rows (time, insertion number, what): what = a << 8 | b << 4 | type (a: patient or resource, b: a phase)
@njit(cache=True)
def push(H, S, t, typ, a, b):
    n = S[S_HN]
    if n >= H.shape[0]:
        S[S_ERR] = 1  # the caller sizes the heap; this never happens with its margins
        return
    seq = S[S_SEQ]
    S[S_SEQ] = seq + 1
    S[S_HN] = n + 1
    what = (a << 8) | (b << 4) | typ
    i = n
    while i > 0:  # move parents down into the hole until the new event fits
        parent = (i - 1) >> 1
        if H[parent, 0] < t or (H[parent, 0] == t and H[parent, 1] < seq):
            break
        H[i, 0], H[i, 1], H[i, 2] = H[parent, 0], H[parent, 1], H[parent, 2]
        i = parent
    H[i, 0], H[i, 1], H[i, 2] = t, seq, what


@njit(cache=True)
def _pop(H, S, out):
    """The earliest event into out (time, type, a, b)."""
    n = S[S_HN] - 1
    out[0] = H[0, 0]
    what = H[0, 2]
    out[1], out[2], out[3] = what & 15, what >> 8, (what >> 4) & 15
    t, seq, w = H[n, 0], H[n, 1], H[n, 2]
    S[S_HN] = n
    i = 0
    while True:  # move the smaller child up into the hole until the last event fits
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and (H[child + 1, 0] < H[child, 0] or (H[child + 1, 0] == H[child, 0]
                                                               and H[child + 1, 1] < H[child, 1])):
            child += 1
        if t < H[child, 0] or (t == H[child, 0] and seq < H[child, 1]):
            break
        H[i, 0], H[i, 1], H[i, 2] = H[child, 0], H[child, 1], H[child, 2]
        i = child
    H[i, 0], H[i, 1], H[i, 2] = t, seq, w


# --- statistics -------------------------------------------------------------------------------------------
@njit(cache=True)
def _touch(RS, TS, TH, r, t):
    """Account busy and capacity time of resource r up to t (before its counts change)."""
    last = RS[r, RS_LAST]
    if t > last:
        busy, cap = RS[r, RS_BUSY], RS[r, RS_CAP]
        RS[r, RS_BUSYINT] += busy * (t - last)
        RS[r, RS_CAPINT] += cap * (t - last)
        if cap > 0 and busy >= cap:
            RS[r, RS_FULLT] += t - last
        called = RS[r, RS_RECALLED]
        if busy > 0 or called > 0:
            width = TH[TH_BIN]
            nb = TS.shape[0]
            b0 = last // width
            b1 = (t - 1) // width
            for b in range(b0, min(b1, nb - 1) + 1):
                lo = max(last, b * width)
                hi = min(t, (b + 1) * width)
                if hi > lo:
                    TS[b, r, 0] += busy * (hi - lo)
                    if called > TS[b, r, 3]:
                        TS[b, r, 3] = called
        RS[r, RS_LAST] = t


@njit(cache=True)
def _note(RS, TS, TH, r, t):
    """Peaks after a change of resource r at t."""
    busy, qn = RS[r, RS_BUSY], RS[r, RS_QN]
    if busy > RS[r, RS_PEAK]:
        RS[r, RS_PEAK] = busy
    if qn > RS[r, RS_MAXQ]:
        RS[r, RS_MAXQ] = qn
    b = min(t // TH[TH_BIN], TS.shape[0] - 1)
    if busy > TS[b, r, 1]:
        TS[b, r, 1] = busy
    if qn > TS[b, r, 2]:
        TS[b, r, 2] = qn


# --- queues (doubly linked per resource and triage class; FIFO within a class) -----------------------------
@njit(cache=True)
def _slot(S, gid):
    return gid & S[S_MASK]


@njit(cache=True)
def _enqueue(P, RS, TS, TH, S, gid, r, t):
    s = _slot(S, gid)
    c = P[s, TRI]
    _touch(RS, TS, TH, r, t)
    tail = RS[r, RS_QT + c]
    P[s, QPREV] = tail
    P[s, QNEXT] = NA
    if tail == NA:
        RS[r, RS_QH + c] = gid
    else:
        P[_slot(S, tail), QNEXT] = gid
    RS[r, RS_QT + c] = gid
    RS[r, RS_QN] += 1
    if c == 0:
        RS[r, RS_QN1] += 1
    P[s, WAITRES] = r
    P[s, WAITSINCE] = t
    kind = RS[r, RS_KIND]
    P[s, STATUS] = ST_VEHICLE if kind == K_AMBQ or kind == K_HELIQ or kind == K_STRAT else ST_WAIT
    _note(RS, TS, TH, r, t)


@njit(cache=True)
def _unlink(P, RS, TS, TH, S, gid, t):
    s = _slot(S, gid)
    r = P[s, WAITRES]
    if r == NA:
        return
    c = P[s, TRI]
    _touch(RS, TS, TH, r, t)
    prev, nxt = P[s, QPREV], P[s, QNEXT]
    if prev == NA:
        RS[r, RS_QH + c] = nxt
    else:
        P[_slot(S, prev), QNEXT] = nxt
    if nxt == NA:
        RS[r, RS_QT + c] = prev
    else:
        P[_slot(S, nxt), QPREV] = prev
    RS[r, RS_QN] -= 1
    if P[s, TRI] == 0:
        RS[r, RS_QN1] -= 1
    P[s, WAITRES] = NA
    P[s, QPREV] = NA
    P[s, QNEXT] = NA
    RS[r, RS_WAITSUM] += t - P[s, WAITSINCE]
    RS[r, RS_SERVED] += 1
    waited = t - P[s, WAITSINCE]
    P[s, WTOT] += waited
    P[s, WFAC] += waited


@njit(cache=True)
def _head(RS, r):
    """The first patient waiting for r by priority, or NA."""
    for c in range(4):
        g = RS[r, RS_QH + c]
        if g != NA:
            return g
    return NA


@njit(cache=True)
def _may_operate(P, RS, TH, S, r, c, since, t):
    """Where two or more tables are in use (teams on shift), one is kept for T1, and none a T1 on its way will
    need: a delayed (T2-T4) operation starts only if such tables stay free, or once it has waited its longest
    delay. Teams called in operate T1 only."""
    if RS[r, RS_KIND] != K_OT or c == 0:
        return True
    cap = RS[r, RS_CAP] - RS[r, RS_RECALLED]
    free = cap - RS[r, RS_BUSY]
    if free < 1:
        return False
    if t - since >= TH[TH_DEFER + c]:
        return True
    return (cap <= 1 or free >= 2) and free - RS[r, RS_EXPECTED] >= 1


@njit(cache=True)
def _next_served(P, RS, TH, S, r, t):
    """The patient waiting for r to serve now: the first by priority that may start, or NA."""
    for c in range(4):
        g = RS[r, RS_QH + c]
        if g != NA and _may_operate(P, RS, TH, S, r, c, P[_slot(S, g), WAITSINCE], t):
            return g
    return NA


# --- serving ------------------------------------------------------------------------------------------------
@njit(cache=True)
def _to_serve(STACK, S, r):
    """Remember that resource r may have room for someone waiting."""
    n = S[S_STACKN]
    if n >= STACK.shape[0]:
        S[S_ERR] = 2
        return
    STACK[n] = r
    S[S_STACKN] = n + 1


@njit(cache=True)
def _release(RS, TS, TH, STACK, S, r, t):
    _touch(RS, TS, TH, r, t)
    RS[r, RS_BUSY] -= 1
    if RS[r, RS_KIND] == K_OT:
        _stand_down(RS, TH, r, t)
    _note(RS, TS, TH, r, t)
    _to_serve(STACK, S, r)


@njit(cache=True)
def _stand_down(RS, TH, r, t):
    """Teams called in go back while the free tables would still cover every T1 waiting for one or on the way
    to one (call between _touch and _note)."""
    while (RS[r, RS_RECALLED] > 0 and RS[r, RS_BUSY] < RS[r, RS_CAP]
           and RS[r, RS_QN1] + RS[r, RS_EXPECTED] <= RS[r, RS_CAP] - RS[r, RS_BUSY] - 1):
        RS[r, RS_RECALLED] -= 1
        RS[r, RS_CAP] = min(RS[r, RS_TABLES], _teams_on_shift(RS, TH, r, t) + RS[r, RS_RECALLED])


@njit(cache=True)
def _t1_short(RS, r):
    """T1 waiting for operating-table resource r or on their way to it, beyond its free tables and the teams
    already called in."""
    return RS[r, RS_EXPECTED] + RS[r, RS_QN1] - max(RS[r, RS_CAP] - RS[r, RS_BUSY], 0) - RS[r, RS_RECALLING]


@njit(cache=True)
def _call_team(P, RS, TH, H, S, r, t):
    """Call an off-shift team in when T1 would otherwise wait for a table."""
    if _recallable(RS, TH, r, t) > 0 and _t1_short(RS, r) > 0:
        RS[r, RS_RECALLING] += 1
        push(H, S, t + TH[TH_RECALL], E_TEAM, r, 0)


@njit(cache=True)
def _occupy(RS, TS, TH, r, t):
    _touch(RS, TS, TH, r, t)
    RS[r, RS_BUSY] += 1
    _note(RS, TS, TH, r, t)


@njit(cache=True)
def _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, r, t):
    """Ask for one unit of r: granted now if one is free, else the patient queues (keeping what it holds)."""
    s = _slot(S, gid)
    P[s, WAITSINCE] = t
    c = P[s, TRI]
    if P[s, ALERT] == r:  # the T1 the facility expected asks for its table now
        P[s, ALERT] = NA
        RS[r, RS_EXPECTED] -= 1
    if RS[r, RS_BUSY] < RS[r, RS_CAP] and RS[r, RS_QN] == 0 and _may_operate(P, RS, TH, S, r, c, t, t):
        _occupy(RS, TS, TH, r, t)
        RS[r, RS_SERVED] += 1
        _granted(P, RS, FA, FR, TH, H, S, TS, STACK, gid, r, t)
    else:
        _enqueue(P, RS, TS, TH, S, gid, r, t)
        if RS[r, RS_KIND] == K_OT and c > 0:  # a delayed operation is due at the latest then
            push(H, S, t + TH[TH_DEFER + c], E_RECHECK, r, 0)
        elif RS[r, RS_KIND] == K_OT:  # a T1 waits
            _call_team(P, RS, TH, H, S, r, t)
        if RS[r, RS_BUSY] < RS[r, RS_CAP]:  # queued behind a delayed operation that may not start: look again
            _to_serve(STACK, S, r)


@njit(cache=True)
def _serve(P, RS, FA, FR, TH, H, S, TS, STACK, t):
    """Give freed units to waiting patients, resource by resource, until nothing more moves."""
    while S[S_STACKN] > 0:
        S[S_STACKN] -= 1
        r = STACK[S[S_STACKN]]
        kind = RS[r, RS_KIND]
        if kind == K_AMB or kind == K_HELI:
            _dispatch(P, RS, FA, FR, TH, H, S, TS, STACK, r, t)
            continue
        if kind == K_STRAT or kind == K_AMBQ or kind == K_HELIQ:
            continue
        while RS[r, RS_BUSY] < RS[r, RS_CAP]:
            g = _next_served(P, RS, TH, S, r, t)
            if g == NA:
                break
            _unlink(P, RS, TS, TH, S, g, t)
            _occupy(RS, TS, TH, r, t)
            _granted(P, RS, FA, FR, TH, H, S, TS, STACK, g, r, t)


@njit(cache=True)
def _leave_held(P, RS, TS, TH, STACK, S, s, t):
    held = P[s, HELD]
    if held != NA:
        P[s, HELD] = NA
        _release(RS, TS, TH, STACK, S, held, t)


@njit(cache=True)
def _decide(P, s, kind):
    """Decisive care starts: a casualty on a salvageable course is saved if it comes before the deadline."""
    if P[s, DECIDED] == 0 and P[s, DKIND] == kind:
        P[s, DECIDED] = 1


@njit(cache=True)
def _granted(P, RS, FA, FR, TH, H, S, TS, STACK, gid, r, t):
    """Patient gid got one unit of r at t: leave what it held, start the activity."""
    s = _slot(S, gid)
    if P[s, HELD] != NA and P[s, HELD] != r:
        _leave_held(P, RS, TS, TH, STACK, S, s, t)
    P[s, HELD] = r
    P[s, STATUS] = ST_ACTIVE
    j = P[s, FACJ]
    o = P[s, OSTAGE]
    kind = r - FA[j, FA_RES]
    role = FA[j, FA_ROLE]
    ri = role - R2
    first_care = P[s, ACARE + o] == NA
    if first_care:
        P[s, ACARE + o] = t
        if o == 1:
            _decide(P, s, 0)
    if role == R1:  # the stay runs from the start of treatment; the team is free when treatment ends
        P[s, PHASE] = PH_R1
        stay = P[s, DWELL + P[s, STAGE] - 1]
        P[s, READY] = t + stay
        if _ends_here(P, s) and (P[s, LKIND] == 0 or P[s, DECIDED] == 1):
            # back to duty from Role 1: settled now, the team freed by a resource event
            push(H, S, t + min(P[s, DR1], stay), E_RELEASE, r, 0)
            P[s, HELD] = NA
            _finish(P, S, s, t + stay, 1, o)
            return
        push(H, S, t + min(P[s, DR1], stay), E_ACT, gid, PH_R1)
        push(H, S, t + stay, E_READY, gid, 0)
    elif kind == K_FIRST:
        P[s, PHASE] = PH_RESUS
        push(H, S, t + P[s, RESUS + ri], E_ACT, gid, PH_RESUS)
    elif kind == K_OT:
        P[s, PHASE] = PH_OT
        if P[s, AOT + o] == NA:
            P[s, AOT + o] = t
        if P[s, OPERATED] == 0:
            P[s, OTFAC] = j
            if P[s, TRI] == 0:
                P[s, SURGWAIT] = t - P[s, OTREADY]
        _decide(P, s, 1)
        dur = P[s, SURG + 0] if P[s, OPERATED] == 0 and P[s, SURG + 0] > 0 else P[s, SURG + 1]
        # by the teams on shift, or (beyond what they can use) by a team called in from the other shift
        on = _teams_on_shift(RS, TH, r, t)
        day = _is_day(RS, TH, r, t)
        by_day_team = day if RS[r, RS_BUSY] <= min(RS[r, RS_TABLES], on) else not day
        RS[r, RS_SURGDAY + (0 if by_day_team else 1)] += dur
        P[s, OPERATED] = 1
        push(H, S, t + dur, E_ACT, gid, PH_OT)
    elif kind == K_ICU:
        P[s, PHASE] = PH_ICU
        push(H, S, t + P[s, ICU + ri], E_ACT, gid, PH_ICU)
    else:
        P[s, PHASE] = PH_HOLD
        P[s, STATUS] = ST_HOLD
        ready = max(P[s, ARRT] + P[s, WFAC] + _stay(P, s), t)
        if P[s, OPERATED] == 1 and P[s, ICU + ri] == 0:
            ready = max(ready, t + P[s, POSTOP + ri])
        P[s, READY] = ready
        _plan_leaving(P, RS, FA, FR, TH, H, S, TS, STACK, gid, ready)


@njit(cache=True)
def _stay(P, s):
    """Intended stay at the current stage (two stages when a diversion to Role 3 replaced Role 2)."""
    k = P[s, STAGE]
    stay = P[s, DWELL + k - 1]
    if P[s, MERGED] == 1 and k < 4:
        stay += P[s, DWELL + k]
    return stay


@njit(cache=True)
def _next_stage(P, s):
    k = P[s, STAGE]
    return k + 2 if P[s, MERGED] == 1 else k + 1


@njit(cache=True)
def _ends_here(P, s):
    """The intended journey returns the patient to duty at the end of this stay."""
    k = P[s, STAGE]
    ts = P[s, TERMSTAGE]
    return P[s, TERM] == 1 and (ts == k or (P[s, MERGED] == 1 and ts == k + 1))


@njit(cache=True)
def _plan_leaving(P, RS, FA, FR, TH, H, S, TS, STACK, gid, ready):
    """In a holding bed until ``ready``: a return to duty or a continuous strategic flight is settled now
    (the bed is freed by a resource event), anything else waits for the READY event."""
    s = _slot(S, gid)
    settled = P[s, LKIND] == 0 or (P[s, LKIND] == 3 and P[s, DECIDED] == 1)
    nk = _next_stage(P, s)
    o = P[s, OSTAGE]
    if settled and _ends_here(P, s):
        push(H, S, ready, E_RELEASE, P[s, HELD], 0)
        P[s, HELD] = NA
        _finish(P, S, s, ready, 1, o)
        return
    if settled and nk <= 4 and P[s, FAC + nk - 1] == R4 and TH[TH_INTERVAL] == 0:
        push(H, S, ready, E_RELEASE, P[s, HELD], 0)
        P[s, HELD] = NA
        _fly_out(P, S, s, ready)
        return
    push(H, S, ready, E_READY, gid, 0)


@njit(cache=True)
def _fly_out(P, S, s, t):
    """Strategic aeromedical evacuation leaves at t: the journey ends on arrival at Role 4."""
    o = P[s, OSTAGE]
    arrive = t + P[s, LEG + _next_stage(P, s) - 1]
    P[s, ADEP + o] = t
    P[s, AMODE + o] = AIR
    P[s, AFAC + o + 1] = R4
    P[s, AARR + o + 1] = arrive
    _finish(P, S, s, arrive, 2, o + 1)


@njit(cache=True)
def _finish(P, S, s, t, term, stage):
    P[s, TTERM] = t
    P[s, TERMOUT] = term
    P[s, TERMSTG] = stage
    P[s, DONE] = 1
    P[s, STATUS] = ST_DONE


@njit(cache=True)
def _die(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t):
    s = _slot(S, gid)
    if P[s, DONE] == 1:
        return
    waited = P[s, WAITRES]
    if waited != NA:
        _unlink(P, RS, TS, TH, S, gid, t)
        if RS[waited, RS_KIND] == K_OT:  # no longer waiting for a table: a team called in may go back
            _touch(RS, TS, TH, waited, t)
            _stand_down(RS, TH, waited, t)
            _note(RS, TS, TH, waited, t)
    _leave_held(P, RS, TS, TH, STACK, S, s, t)
    _not_coming(RS, TS, TH, STACK, P, S, s, t)
    P[s, TDIE] = t
    P[s, DONE] = 1
    P[s, STATUS] = ST_DEAD


# --- destinations -------------------------------------------------------------------------------------------
@njit(cache=True)
def _saturated(P, RS, FA, TH, s, j, t, strict):
    """A facility to pass over: more waiting for resuscitation or for a holding bed than the diversion factor
    times its beds, or, for a casualty who needs surgery, no surgical team on shift or every table taken with a
    queue as long again (``strict``: for a T1, every table taken)."""
    base = FA[j, FA_RES]
    f = TH[TH_DIVF]
    if RS[base + K_FIRST, RS_QN] > f * RS[base + K_FIRST, RS_CAP]:
        return True
    if RS[base + K_HOLD, RS_QN] > f * RS[base + K_HOLD, RS_CAP]:
        return True
    if not _needs_surgery(P, s, FA[j, FA_ROLE]):
        return False
    # a surgical team must be on shift when the casualty gets there (t is the expected arrival); for a T1 a
    # table must be free, for the others the tables must not be all taken with as many again waiting
    ot = base + K_OT
    cap = ot_capacity(FA, RS, TH, j, t)
    if P[s, TRI] == 0 and not strict:  # for a T1, a team that can be called in counts
        cap = min(RS[ot, RS_TABLES], cap + RS[ot, RS_RECALLED] + RS[ot, RS_RECALLING] + _recallable(RS, TH, ot, t))
    return cap == 0 or (RS[ot, RS_BUSY] >= cap and ((strict and P[s, TRI] == 0) or RS[ot, RS_QN] >= cap))


@njit(cache=True)
def _destination(P, RS, FA, FR, TH, S, s, role, t):
    """Facility for a patient heading to ``role`` (t: when it would get there): the first on its route that is
    not saturated, else the first. The route: the Role 2 it is assigned to and the other Role 2s of its front
    (for a T1 who needs surgery, first those with a table free), then the Role 3s. Returns (j, diverted to
    Role 3)."""
    f = P[s, FRONT]
    if role == R1:
        return FR[f, FR_J0], False
    first = NA
    if role == R2:
        n2 = FR[f, FR_NR2B] + FR[f, FR_NR2E]
        j0 = FR[f, FR_J0] + 1
        for strict in (True, False):
            for i in range(n2):
                j = j0 + (P[s, ROT] + i) % n2
                if first == NA:
                    first = j
                if not _saturated(P, RS, FA, TH, s, j, t, strict):
                    return j, False
    for i in range(TH[TH_NR3]):
        j = TH[TH_R3J0] + (P[s, GID] + i) % TH[TH_NR3]
        if first == NA:
            first = j
        if not _saturated(P, RS, FA, TH, s, j, t, False):
            return j, role == R2
    return first, False


@njit(cache=True)
def _depart(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t, mode, leg):
    """The patient leaves its current stage at t by ``mode``; the next stage's facility is chosen now."""
    s = _slot(S, gid)
    o = P[s, OSTAGE]
    nk = _next_stage(P, s)
    role = P[s, FAC + nk - 1]
    _leave_held(P, RS, TS, TH, STACK, S, s, t)
    P[s, ADEP + o] = t
    P[s, AMODE + o] = mode
    j, diverted = _destination(P, RS, FA, FR, TH, S, s, role, t + leg)
    arrive = t + leg
    actual_role = FA[j, FA_ROLE]
    P[s, MERGED] = 0
    if actual_role != role or (role != R1 and j != _destination_first(P, FA, FR, TH, s, role)):
        P[s, NDIV] += 1
        P[s, ADIV + o + 1] = 1
    if diverted:
        arrive += P[s, XLEGA] if mode == AIR else P[s, XLEGG]
        if nk < 4 and P[s, FAC + nk] == R3:
            P[s, MERGED] = 1
    P[s, STAGE] = nk
    P[s, OSTAGE] = o + 1
    P[s, AFAC + o + 1] = actual_role
    P[s, AARR + o + 1] = arrive
    P[s, DEST] = j
    P[s, STATUS] = ST_TRANSIT
    push(H, S, arrive, E_ARRIVE, gid, 0)
    lk = P[s, LKIND]  # when the casualty dies if nothing changes: on its first leg its untreated death time,
    # later a death of wounds after first care, or the end of its tolerance for delay while care is not decisive
    dies_on_the_way = ((P[s, FIRSTMTF] == NA and lk >= 2 and P[s, TKIA] < arrive)
                       or (P[s, FIRSTMTF] != NA and lk == 2 and P[s, FIRSTMTF] + P[s, XDOW] < arrive)
                       or (P[s, FIRSTMTF] != NA and lk == 3 and P[s, DECIDED] == 0 and P[s, D0] + P[s, BUDGET] < arrive))
    if actual_role != R1 and P[s, TRI] == 0 and _needs_surgery(P, s, actual_role) and not dies_on_the_way:
        # MIST pre-alert: the facility expects a T1 for its table and calls a team in if none would be free
        ot = FA[j, FA_RES] + K_OT
        P[s, ALERT] = ot
        RS[ot, RS_EXPECTED] += 1
        _call_team(P, RS, TH, H, S, ot, t)
    return arrive


@njit(cache=True)
def _not_coming(RS, TS, TH, STACK, P, S, s, t):
    """The T1 a facility expected will not ask for its table (it died)."""
    ot = P[s, ALERT]
    if ot != NA:
        P[s, ALERT] = NA
        RS[ot, RS_EXPECTED] -= 1
        _touch(RS, TS, TH, ot, t)
        _stand_down(RS, TH, ot, t)
        _note(RS, TS, TH, ot, t)
        _to_serve(STACK, S, ot)  # a delayed operation held back for it may start


@njit(cache=True)
def _destination_first(P, FA, FR, TH, s, role):
    f = P[s, FRONT]
    if role == R2:
        return FR[f, FR_J0] + 1 + P[s, ROT] % (FR[f, FR_NR2B] + FR[f, FR_NR2E])
    return TH[TH_R3J0] + P[s, GID] % TH[TH_NR3]


# --- vehicles -----------------------------------------------------------------------------------------------
@njit(cache=True)
def _dispatch(P, RS, FA, FR, TH, H, S, TS, STACK, pool, t):
    """Free vehicles of a front's pool take the most urgent waiting patient and others at the same place."""
    f = RS[pool, RS_FAC]
    heli = RS[pool, RS_KIND] == K_HELI
    qkind = K_HELIQ if heli else K_AMBQ
    litters = FR[f, FR_HELIL] if heli else FR[f, FR_AMBL]
    j0 = FR[f, FR_J0]
    nj = 1 + FR[f, FR_NR2B] + FR[f, FR_NR2E]
    while RS[pool, RS_BUSY] < RS[pool, RS_CAP]:
        best, best_q = NA, NA
        for j in range(j0, j0 + nj):
            q = FA[j, FA_RES] + qkind
            g = _head(RS, q)
            if g == NA:
                continue
            if best == NA:
                best, best_q = g, q
                continue
            sg, sb = _slot(S, g), _slot(S, best)
            if (P[sg, TRI] < P[sb, TRI] or (P[sg, TRI] == P[sb, TRI] and (
                    P[sg, WAITSINCE] < P[sb, WAITSINCE] or (P[sg, WAITSINCE] == P[sb, WAITSINCE] and g < best)))):
                best, best_q = g, q
        if best == NA:
            return
        _occupy(RS, TS, TH, pool, t)
        longest = 0
        for _ in range(litters):
            g = _head(RS, best_q)
            if g == NA:
                break
            _unlink(P, RS, TS, TH, S, g, t)
            sg = _slot(S, g)
            nk = _next_stage(P, sg)
            leg = P[sg, LEG + nk - 1] if (heli or P[sg, MODE + nk - 1] != AIR) else P[sg, LEGG + nk - 1]
            _depart(P, RS, FA, FR, TH, H, S, TS, STACK, g, t, AIR if heli else GROUND, leg)
            longest = max(longest, leg)
        push(H, S, t + 2 * longest, E_VEHFREE, pool, 0)


@njit(cache=True)
def _heli_for(RS, pool, urgent):
    """MEDEVAC precedence: where a front has two or more helicopters, the last free one is kept for urgent."""
    free = RS[pool, RS_CAP] - RS[pool, RS_BUSY]
    return free >= 1 if (urgent or RS[pool, RS_CAP] <= 1) else free >= 2


# --- event handlers ----------------------------------------------------------------------------------------
@njit(cache=True)
def _on_poi(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t):
    s = _slot(S, gid)
    mode = P[s, MODE]
    leg = P[s, LEG]
    if mode == AIR:
        pool = FR[P[s, FRONT], FR_HELI]
        if _heli_for(RS, pool, P[s, TRI] == 0):
            _occupy(RS, TS, TH, pool, t)
            push(H, S, t + 2 * leg, E_VEHFREE, pool, 0)
        else:  # no helicopter free: the unit's own vehicles drive
            mode = GROUND
            leg = P[s, LEGG]
    arrive = _depart(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t, mode, leg)
    P[s, FIRSTMTF] = arrive
    lk = P[s, LKIND]
    if lk >= 2 and P[s, TKIA] < arrive:  # dies before reaching care (KIA)
        _not_coming(RS, TS, TH, STACK, P, S, s, t)
        P[s, TDIE] = P[s, TKIA]
        P[s, DONE] = 1
        P[s, STATUS] = ST_DEAD
        return
    horizon = TH[TH_HORIZON]
    if lk == 2:
        tdie = arrive + P[s, XDOW]
        if tdie <= horizon:
            push(H, S, tdie, E_DEATH, gid, 0)
    elif lk == 3:
        deadline = P[s, D0] + P[s, BUDGET]
        if deadline <= horizon:
            push(H, S, deadline, E_DEADLINE, gid, 0)


@njit(cache=True)
def _on_arrive(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t):
    s = _slot(S, gid)
    j = P[s, DEST]
    P[s, FACJ] = j
    P[s, ARRT] = t
    P[s, WFAC] = 0
    role = FA[j, FA_ROLE]
    first = FA[j, FA_RES] + K_FIRST
    o = P[s, OSTAGE]
    if o == 1 and RS[first, RS_QN] >= max(RS[first, RS_CAP], 1):
        P[s, MASCAL] = 1  # more casualties waiting than the receiving facility can take: a declared MASCAL
    if role == R1:
        _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, first, t)
        return
    ri = role - R2
    comfort = P[s, TRI] == 3 and RS[first, RS_QN] >= max(RS[first, RS_CAP], 1)
    if comfort:  # expectant in a declared MASCAL: comfort care, no operating slot
        P[s, SURG + 0] = 0
        P[s, SURG + 1] = 0
    ot = FA[j, FA_RES] + K_OT
    if _needs_surgery(P, s, role):
        # straight to a free table; else resuscitated in a resuscitation bed until one is free
        P[s, OTREADY] = t
        if RS[ot, RS_BUSY] < RS[ot, RS_CAP] and RS[ot, RS_QN] == 0:
            _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, ot, t)
        else:
            _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, first, t)
    elif P[s, RESUS + ri] > 0 and not comfort:
        _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, first, t)
    else:
        _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, FA[j, FA_RES] + K_HOLD, t)


@njit(cache=True)
def _needs_surgery(P, s, role):
    """Not operated yet: the surgery drawn for Role 2 (or, at Role 3, the definitive one); operated at Role 2:
    the definitive surgery at Role 3 when drawn."""
    if P[s, OPERATED] == 0:
        return P[s, SURG + 0] > 0 or (role == R3 and P[s, SURG + 1] > 0)
    return role == R3 and P[s, SURG + 1] > 0 and P[s, AOT + P[s, OSTAGE]] == NA


@njit(cache=True)
def _on_activity_end(P, RS, FA, FR, TH, H, S, TS, STACK, gid, phase, t):
    s = _slot(S, gid)
    j = P[s, FACJ]
    base = FA[j, FA_RES]
    if phase == PH_R1:  # the team is free; the patient waits at Role 1 until it leaves
        held = P[s, HELD]
        P[s, HELD] = NA
        if held != NA:
            _release(RS, TS, TH, STACK, S, held, t)
        P[s, STATUS] = ST_HOLD
        return
    role = FA[j, FA_ROLE]
    ri = role - R2
    if phase == PH_RESUS:
        if _needs_surgery(P, s, role):
            _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, base + K_OT, t)
        else:
            _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, base + K_HOLD, t)
    elif phase == PH_OT:
        if P[s, TRI] == 0 or P[s, TRI] == 3:
            if P[s, ICU + ri] > 0:
                _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, base + K_ICU, t)
                return
        _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, base + K_HOLD, t)
    elif phase == PH_ICU:
        _request(P, RS, FA, FR, TH, H, S, TS, STACK, gid, base + K_HOLD, t)


@njit(cache=True)
def _on_ready(P, RS, FA, FR, TH, H, S, TS, STACK, gid, t):
    """The stay is over: return to duty, or wait for the means of the next leg."""
    s = _slot(S, gid)
    o = P[s, OSTAGE]
    if _ends_here(P, s):
        _leave_held(P, RS, TS, TH, STACK, S, s, t)
        _finish(P, S, s, t, 1, o)
        return
    nk = _next_stage(P, s)
    if nk > 4 or P[s, FAC + nk - 1] == NA:  # nothing planned beyond this stay (the horizon cut the journey)
        P[s, STATUS] = ST_HOLD
        return
    role = P[s, FAC + nk - 1]
    if role == R4:
        if TH[TH_INTERVAL] == 0:
            _leave_held(P, RS, TS, TH, STACK, S, s, t)
            _fly_out(P, S, s, t)
        else:
            _enqueue(P, RS, TS, TH, S, gid, TH[TH_STRAT], t)
        return
    j = P[s, FACJ]
    f = P[s, FRONT]
    heli, amb = FR[f, FR_HELI], FR[f, FR_AMB]
    urgent = P[s, TRI] == 0 and P[s, OPERATED] == 0
    heli_free = _heli_for(RS, heli, urgent)
    amb_free = RS[amb, RS_BUSY] < RS[amb, RS_CAP]
    may_wait = urgent or RS[heli, RS_CAP] <= 1
    # a casualty meant to fly takes a free helicopter, else a free ambulance, else waits for a helicopter
    if P[s, MODE + nk - 1] == AIR and RS[heli, RS_CAP] > 0 and (heli_free or (not amb_free and may_wait)):
        _enqueue(P, RS, TS, TH, S, gid, FA[j, FA_RES] + K_HELIQ, t)
        _to_serve(STACK, S, heli)
    else:
        _enqueue(P, RS, TS, TH, S, gid, FA[j, FA_RES] + K_AMBQ, t)
        _to_serve(STACK, S, FR[f, FR_AMB])


@njit(cache=True)
def _on_sortie(P, RS, FA, FR, TH, H, S, TS, STACK, t):
    r = TH[TH_STRAT]
    seats = TH[TH_SEATS]
    while seats > 0:
        g = _head(RS, r)
        if g == NA:
            break
        _unlink(P, RS, TS, TH, S, g, t)
        s = _slot(S, g)
        _leave_held(P, RS, TS, TH, STACK, S, s, t)
        _fly_out(P, S, s, t)
        seats -= 1
    nxt = t + TH[TH_INTERVAL]
    if nxt <= TH[TH_HORIZON]:
        push(H, S, nxt, E_SORTIE, 0, 0)


@njit(cache=True)
def _is_day(RS, TH, r, t):
    """The day shift is on at t at the facility of operating-table resource r (local time)."""
    hour = ((t // 3600) + RS[r, RS_OFFSET]) % 24
    return TH[TH_DAYSTART] <= hour < TH[TH_DAYEND]


@njit(cache=True)
def _teams_on_shift(RS, TH, r, t):
    """Surgical teams on shift at t at the facility of operating-table resource r (local day/night)."""
    return RS[r, RS_DAY] if _is_day(RS, TH, r, t) else RS[r, RS_NIGHT]


@njit(cache=True)
def _callable_now(RS, TH, r, t):
    """Teams that may be at work beyond the roster at t: a table without a team, a team off shift."""
    on = _teams_on_shift(RS, TH, r, t)
    return max(0, min(RS[r, RS_TABLES] - min(RS[r, RS_TABLES], on), RS[r, RS_DAY] + RS[r, RS_NIGHT] - on))


@njit(cache=True)
def ot_capacity(FA, RS, TH, j, t):
    """Operating tables usable at t: tables, limited by the surgical teams on shift (local day/night)."""
    r = FA[j, FA_RES] + K_OT
    return min(RS[r, RS_TABLES], _teams_on_shift(RS, TH, r, t))


@njit(cache=True)
def _recallable(RS, TH, r, t):
    """Off-shift surgical teams that may still be called in for a T1 at t: a table without a team, a team off
    shift, and surgery left in the facility's day (each team operates at most TH_TEAMDAY a day)."""
    off = 1 if _is_day(RS, TH, r, t) else 0  # the night teams are off by day, the day teams by night
    if TH[TH_RECALL] < 0 or RS[r, RS_SURGDAY + off] >= (RS[r, RS_NIGHT] if off else RS[r, RS_DAY]) * TH[TH_TEAMDAY]:
        return 0
    return max(0, _callable_now(RS, TH, r, t) - RS[r, RS_RECALLED] - RS[r, RS_RECALLING])


@njit(cache=True)
def _on_team(P, RS, FA, FR, TH, H, S, TS, STACK, r, t):
    """A team called in reaches the table: it operates while T1 wait, else goes back."""
    RS[r, RS_RECALLING] -= 1
    if _t1_short(RS, r) <= 0 or RS[r, RS_RECALLED] >= _callable_now(RS, TH, r, t):
        return
    _touch(RS, TS, TH, r, t)
    RS[r, RS_RECALLED] += 1
    RS[r, RS_CALLS] += 1
    RS[r, RS_CAP] = min(RS[r, RS_TABLES], _teams_on_shift(RS, TH, r, t) + RS[r, RS_RECALLED])
    _note(RS, TS, TH, r, t)
    _to_serve(STACK, S, r)


@njit(cache=True)
def _on_shift(P, RS, FA, FR, TH, H, S, TS, STACK, j, t):
    r = FA[j, FA_RES] + K_OT
    _touch(RS, TS, TH, r, t)
    hour = ((t // 3600) + FA[j, FA_OFFSET]) % 24
    if hour == TH[TH_DAYSTART]:
        RS[r, RS_SURGDAY + 0] = 0  # the day teams begin a working day
    elif hour == TH[TH_DAYEND]:
        RS[r, RS_SURGDAY + 1] = 0  # the night teams begin theirs
    # teams called in that the new roster has on shift (or no table for) are no longer extra
    RS[r, RS_RECALLED] = min(RS[r, RS_RECALLED], _callable_now(RS, TH, r, t))
    RS[r, RS_CAP] = min(RS[r, RS_TABLES], ot_capacity(FA, RS, TH, j, t) + RS[r, RS_RECALLED])
    _stand_down(RS, TH, r, t)
    _note(RS, TS, TH, r, t)
    _call_team(P, RS, TH, H, S, r, t)  # T1 waiting or on their way when the shift ends
    _to_serve(STACK, S, r)
    nxt = (t // 3600 + 1) * 3600
    while True:  # the next hour at which the shift changes
        hour = ((nxt // 3600) + FA[j, FA_OFFSET]) % 24
        if hour == TH[TH_DAYSTART] or hour == TH[TH_DAYEND]:
            break
        nxt += 3600
    if nxt <= TH[TH_HORIZON]:
        push(H, S, nxt, E_SHIFT, j, 0)


# --- the loop ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)  # runs in a thread beside the preparation of the next block
def advance(P, RS, FA, FR, TH, H, S, TS, STACK, until):
    """Process every event before ``until`` (and never past the horizon)."""
    ev = np.empty(4, dtype=np.int64)
    horizon = TH[TH_HORIZON]
    while S[S_HN] > 0 and H[0, 0] < until and H[0, 0] <= horizon:
        _pop(H, S, ev)
        t, typ, a, b = ev[0], ev[1], ev[2], ev[3]
        S[S_CLOCK] = t
        if typ == E_VEHFREE or typ == E_RELEASE:
            _release(RS, TS, TH, STACK, S, a, t)
        elif typ == E_RECHECK:
            _to_serve(STACK, S, a)
        elif typ == E_SORTIE:
            _on_sortie(P, RS, FA, FR, TH, H, S, TS, STACK, t)
        elif typ == E_SHIFT:
            _on_shift(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
        elif typ == E_TEAM:
            _on_team(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
        else:
            s = a & S[S_MASK]
            if P[s, GID] != a or P[s, DONE] == 1:
                continue  # the patient's journey is settled (or it died): a stale event
            if typ == E_POI:
                _on_poi(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
            elif typ == E_ARRIVE:
                _on_arrive(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
            elif typ == E_ACT:
                _on_activity_end(P, RS, FA, FR, TH, H, S, TS, STACK, a, b, t)
            elif typ == E_READY:
                _on_ready(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
            elif typ == E_DEADLINE:
                if P[s, DECIDED] == 0:
                    _die(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
            elif typ == E_DEATH:
                _die(P, RS, FA, FR, TH, H, S, TS, STACK, a, t)
        _serve(P, RS, FA, FR, TH, H, S, TS, STACK, t)
        if S[S_ERR] != 0:
            return


@njit(cache=True)
def inject(P, H, S, first_gid, n):
    """Schedule the departure from the point of injury of new patients (rows already written)."""
    for g in range(first_gid, first_gid + n):
        s = g & S[S_MASK]
        if P[s, DONE] == 0:
            push(H, S, P[s, POIDEP], E_POI, g, 0)


@njit(cache=True)
def close_books(RS, TS, TH, t):
    """Account every resource's time up to t (the end of the simulation)."""
    for r in range(RS.shape[0]):
        _touch(RS, TS, TH, r, t)
