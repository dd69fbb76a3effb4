"""Load held: a deployment under a steady load behind its router, measured while it lasts.

`bench/soak.py` runs it for 10 minutes and tests/test_soak.py for 30 seconds, against a
deployment `faultwatch deploy up` started (its router's URL, the live colour's deploy tag and
the prediction log read from the project's state):

1. capacity: keep-alive clients in closed loop (faultwatch.deploy.load.Load: each sends again
   as soon as answered) for `capacity_s` after a warm-up: answers 200 per second at saturation;
2. the hold: `fraction` of it (0.8), paced (arrivals spread evenly, one every 1/rate s; a client
   late on its schedule sends at once to catch up), for `seconds`. Every `interval_s` a
   sample: the resident memory (RSS) summed over the live colour's processes (the `faultwatch
   serve` supervisor and BentoML's workers, found by their deploy tag) and the router's;
   afterwards the p50 / p99 of the requests sent in each interval and each minute, and the
   memory's slope (least squares, MiB per minute) over the samples after `warmup_s`;
3. slow clients: the same paced load for `slow_s` alone, then for `slow_s` beside
   `slow_clients` slowloris connections to the router (faultwatch.deploy.slowclients): the
   normal clients' p99 and failures without and with them, and the ratio;
4. the log: every request answered 200 in these phases has its row (its X-Request-ID, role
   live) in the prediction log, and the live rows added since the start are as many.
Latency runs from a request's send to its answer.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from faultwatch.deploy import state
from faultwatch.deploy.config import prediction_log
from faultwatch.deploy.errors import DeployError
from faultwatch.deploy.load import Answer, Load
from faultwatch.deploy.processes import tagged_pids
from faultwatch.deploy.slowclients import SlowClients
from faultwatch.serve.predlog import log_exists, read_only

MIB = 2**20
JOIN_SLACK_S = 60.0  # past a phase's end, for its last requests (each has a 30 s timeout)


@dataclass(frozen=True)
class SoakParams:
    seconds: float = 600.0  # the hold
    fraction: float = 0.8  # of the measured capacity
    capacity_s: float = 10.0
    capacity_warm_s: float = 3.0  # before capacity_s, not counted
    concurrency: int = 16  # closed-loop clients measuring the capacity
    paced_concurrency: int = 32  # paced clients: room for the ones waiting on slow answers
    interval_s: float = 5.0  # between samples
    warmup_s: float = 60.0  # of the hold, left out of the memory's slope
    slow_clients: int = 200
    slow_s: float = 30.0  # each slow-client phase: without, then with them
    byte_interval_s: float = 1.0  # a slow client's pace


@dataclass(frozen=True)
class Target:
    url: str
    tag: str  # the live colour's deploy tag
    router_pid: int | None
    log: Path | str

    @classmethod
    def of(cls, root: Path, log: Path | str | None = None) -> Target:
        st = state.load(root)
        if not st.live or not st.url or st.live not in st.colours:
            raise DeployError(f"{root}: nothing deployed; `faultwatch deploy up VERSION` first")
        return cls(st.url, st.colours[st.live].tag, st.router_pid, log or prediction_log(root))


# ---------------------------------------------------------------------- the processes
def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of `pids` summed (/proc/<pid>/statm); a process gone meanwhile counts 0.
    Pages that forked workers share with their parent count once per process, as `ps` shows."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of `pids` summed (/proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def busy_share(samples: list[dict], lo: float, hi: float) -> dict:
    """Between the samples in [lo, hi] (seconds of the hold): how busy the machine was (% of
    all its cores) and how much CPU the live colour took (% of one core)."""
    part = [s for s in samples if lo <= s["t_s"] <= hi]
    if len(part) < 2 or part[-1]["t_s"] <= part[0]["t_s"]:
        return {"machine_busy_pct": math.nan, "colour_cpu_pct": math.nan}
    a, b = part[0], part[-1]
    return {
        "machine_busy_pct": 100
        * (b["machine_busy_s"] - a["machine_busy_s"])
        / max(b["machine_all_s"] - a["machine_all_s"], 1e-9),
        "colour_cpu_pct": 100 * (b["cpu_s"] - a["cpu_s"]) / (b["t_s"] - a["t_s"]),
    }


# ---------------------------------------------------------------------- figures
def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest rank, as Load.latency has it; nan without values."""
    if not sorted_ms:
        return math.nan
    return sorted_ms[min(len(sorted_ms) - 1, int(q / 100 * len(sorted_ms)))]


def outcome(a: Answer) -> str:
    return str(a.status) if a.status else (a.error or "error").split(":", 1)[0]


def figures(answers: list[Answer], seconds: float) -> dict:
    """Requests sent, answered 200 (per second over `seconds`), failed by outcome, p50 / p99."""
    ms = sorted(a.ms for a in answers if a.status == 200)
    failed = Counter(outcome(a) for a in answers if a.status != 200)
    return {
        "sent": len(answers),
        "answered": len(ms),
        "rps": len(ms) / seconds if seconds > 0 else math.nan,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "failed": sum(failed.values()),
        "failures": dict(failed),
    }


def slope_per_minute(samples: list[dict], key: str, since_s: float) -> float:
    """Least-squares slope of `key` against time in minutes, samples from `since_s` on."""
    pts = [(s["t_s"] / 60, s[key]) for s in samples if s["t_s"] >= since_s]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else math.nan


def windows(answers: list[Answer], t0: float, edges: list[float]) -> list[dict]:
    """figures() of the requests sent in each [t0 + edges[i], t0 + edges[i + 1])."""
    out = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        part = [a for a in answers if t0 + lo <= a.sent < t0 + hi]
        out.append({"from_s": lo, "to_s": hi, **figures(part, hi - lo)})
    return out


# ---------------------------------------------------------------------- phases
def capacity(target: Target, bodies: list[bytes], p: SoakParams) -> tuple[float, Load]:
    """Answers 200 per second at saturation (closed loop), and the load that measured it."""
    load = Load(
        target.url,
        bodies,
        concurrency=p.concurrency,
        total=None,
        duration_s=p.capacity_warm_s + p.capacity_s,
    )
    start = time.time() + p.capacity_warm_s
    load.start().join(p.capacity_warm_s + p.capacity_s + JOIN_SLACK_S)
    end = start + p.capacity_s
    ok = sum(1 for a in load.answers if a.status == 200 and start <= a.done < end)
    if not ok:
        raise DeployError(f"{target.url}: no answer at saturation: {figures(load.answers, 1)}")
    return ok / p.capacity_s, load


def paced(
    target: Target, bodies: list[bytes], rate: float, seconds: float, p: SoakParams
) -> tuple[Load, float]:
    """The paced load for `seconds`, and how busy the machine was meanwhile (%, all cores)."""
    busy0, all0 = machine_cpu()
    load = Load(
        target.url,
        bodies,
        concurrency=p.paced_concurrency,
        total=None,
        duration_s=seconds,
        rate=rate,
    )
    load.start().join(seconds + JOIN_SLACK_S)
    busy1, all1 = machine_cpu()
    return load, 100 * (busy1 - busy0) / max(all1 - all0, 1e-9)


def sample(target: Target, t0: float, load: Load) -> dict:
    pids = tagged_pids(target.tag)
    router = [target.router_pid] if target.router_pid else []
    busy, every = machine_cpu()
    return {
        "t_s": round(time.time() - t0, 2),
        "rss_mib": rss_bytes(pids) / MIB,
        "processes": len(pids),
        "cpu_s": cpu_seconds(pids),
        "machine_busy_s": busy,
        "machine_all_s": every,
        "router_rss_mib": rss_bytes(router) / MIB,
        "requests": load.count(),
    }


def hold(
    target: Target,
    bodies: list[bytes],
    rate: float,
    p: SoakParams,
    progress: Callable[[dict], None],
) -> tuple[Load, list[dict], float]:
    """The paced load for `p.seconds`, sampled every `p.interval_s`; (load, samples, start)."""
    load = Load(
        target.url,
        bodies,
        concurrency=p.paced_concurrency,
        total=None,
        duration_s=p.seconds,
        rate=rate,
    )
    t0 = time.time()
    load.start()
    samples = [sample(target, t0, load)]
    k = 1
    while not load.done():
        if time.time() >= t0 + k * p.interval_s:
            samples.append(sample(target, t0, load))
            progress(samples[-1])
            k += 1
        time.sleep(0.1)
    load.join(JOIN_SLACK_S)
    samples.append(sample(target, t0, load))
    edges = [s["t_s"] for s in samples]
    for k, w in enumerate(windows(load.answers, t0, edges), start=1):
        s = samples[k]
        s.update(p50_ms=w["p50_ms"], p99_ms=w["p99_ms"], answered=w["answered"])
        s.update(failed=w["failed"], **busy_share(samples, edges[k - 1], edges[k]))
    return load, samples, t0


def slow_phase(
    target: Target, bodies: list[bytes], rate: float, p: SoakParams
) -> tuple[dict, list[Load]]:
    """The paced load alone, then beside the slow clients: their figures and the ratio."""
    without, busy_without = paced(target, bodies, rate, p.slow_s, p)
    slow = SlowClients(target.url, p.slow_clients, p.byte_interval_s).start()
    try:
        time.sleep(min(2.0, p.slow_s / 5))  # every slow client connected and dribbling
        router_rss = rss_bytes([target.router_pid] if target.router_pid else []) / MIB
        under, busy_with = paced(target, bodies, rate, p.slow_s, p)
    finally:
        slow.stop()
    base = {**figures(without.answers, p.slow_s), "machine_busy_pct": busy_without}
    with_slow = {**figures(under.answers, p.slow_s), "machine_busy_pct": busy_with}
    return {
        "without": base,
        "with": with_slow,
        "p99_ratio": with_slow["p99_ms"] / base["p99_ms"],
        "router_rss_mib_with": router_rss,
        "slow_clients": slow.figures(),
    }, [without, under]


# ---------------------------------------------------------------------- the log
def live_rows(log: Path | str) -> int:
    if not log_exists(log):
        return 0
    with read_only(log) as select:
        return int(select("SELECT count(*) FROM predictions WHERE role = 'live'")[0][0])


def log_check(log: Path | str, rows_before: int, answers: list[Answer]) -> dict:
    """Answers 200 against the live rows the log gained; each answer's row by its request id."""
    with read_only(log) as select:
        ids = {r[0] for r in select("SELECT request_id FROM predictions WHERE role = 'live'")}
    answered = [a.request_id for a in answers if a.status == 200]
    rows = live_rows(log) - rows_before
    return {
        "answered": len(answered),
        "logged": rows,
        "answered_without_row": sum(1 for rid in answered if rid not in ids),
        "equal": rows == len(answered),
    }


# ---------------------------------------------------------------------- the whole soak
def run(
    root: Path,
    bodies: list[bytes],
    p: SoakParams = SoakParams(),
    log: Path | str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> dict:
    """The soak (module docstring) of the deployment at `root`; its figures, JSON-ready."""
    target = Target.of(root, log)
    rows_before = live_rows(target.log)
    say(f"capacity: {p.concurrency} clients in closed loop for {p.capacity_s:g} s")
    cap, cap_load = capacity(target, bodies, p)
    rate = p.fraction * cap
    say(f"  {cap:.0f} answers/s; the hold: {rate:.0f} requests/s paced for {p.seconds:g} s")

    def progress(s: dict) -> None:
        say(f"  {s['t_s']:6.0f} s: RSS {s['rss_mib']:.1f} MiB, {s['requests']} requests")

    hold_load, samples, t0 = hold(target, bodies, rate, p, progress)
    say(f"slow clients: {p.slow_s:g} s without, {p.slow_s:g} s with {p.slow_clients}")
    slow, slow_loads = slow_phase(target, bodies, rate, p)
    answers = [*cap_load.answers, *hold_load.answers, *(a for x in slow_loads for a in x.answers)]
    minutes = [*range(0, int(p.seconds), 60), p.seconds]
    after = [s for s in samples if s["t_s"] >= p.warmup_s] or samples
    return {
        "params": asdict(p),
        "capacity_rps": cap,
        "rate_rps": rate,
        "hold": {**figures(hold_load.answers, p.seconds), **busy_share(samples, 0, math.inf)},
        "minutes": [
            {**w, **busy_share(samples, w["from_s"], w["to_s"])}
            for w in windows(hold_load.answers, t0, minutes)
        ],
        "samples": samples,
        "memory": {
            "slope_mib_per_min": slope_per_minute(samples, "rss_mib", p.warmup_s),
            "router_slope_mib_per_min": slope_per_minute(samples, "router_rss_mib", p.warmup_s),
            "first_mib": samples[0]["rss_mib"],
            "after_warmup_mib": after[0]["rss_mib"],
            "last_mib": samples[-1]["rss_mib"],
            "router_first_mib": samples[0]["router_rss_mib"],
            "router_last_mib": samples[-1]["router_rss_mib"],
            "processes": samples[-1]["processes"],
        },
        "slow": slow,
        "log": log_check(target.log, rows_before, answers),
        "failed": sum(1 for a in answers if a.status != 200),
        "failures": dict(Counter(outcome(a) for a in answers if a.status != 200)),
    }


def report_lines(r: dict) -> list[str]:
    """The soak's figures for a person."""
    p, m, h, s, lg = r["params"], r["memory"], r["hold"], r["slow"], r["log"]
    p99s = [w["p99_ms"] for w in r["minutes"] if w["answered"]]
    spread = max(p99s) / min(p99s) if p99s else math.nan
    lines = [
        f"capacity {r['capacity_rps']:.0f} answers/s (closed loop, {p['concurrency']} clients); "
        f"held {r['rate_rps']:.0f} requests/s ({p['fraction']:.0%}) for {p['seconds']:g} s: "
        f"{h['answered']} answered ({h['rps']:.1f}/s), {h['failed']} failed, "
        f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms; the machine "
        f"{h['machine_busy_pct']:.0f} % busy (all cores), the colour "
        f"{h['colour_cpu_pct']:.0f} % of a core",
        f"RSS of the live colour ({m['processes']} processes): {m['first_mib']:.1f} MiB at the "
        f"start, {m['after_warmup_mib']:.1f} after {p['warmup_s']:g} s, {m['last_mib']:.1f} at "
        f"the end; slope {m['slope_mib_per_min']:+.3f} MiB/min after the warm-up (router "
        f"{m['router_first_mib']:.1f} -> {m['router_last_mib']:.1f} MiB, "
        f"{m['router_slope_mib_per_min']:+.3f} MiB/min)",
        f"per minute (p99 highest / lowest minute {spread:.2f}): "
        + "; ".join(
            f"{w['from_s'] / 60 + 1:.0f}: p50 {w['p50_ms']:.1f} p99 {w['p99_ms']:.1f} ms "
            f"({w['answered']}, {w['failed']} failed, machine {w['machine_busy_pct']:.0f} % "
            f"busy, the colour {w['colour_cpu_pct']:.0f} % of a core)"
            for w in r["minutes"]
        ),
        f"answered 200: {lg['answered']}, live rows logged: {lg['logged']} "
        f"({'equal' if lg['equal'] else 'NOT EQUAL'}), answered without a row: "
        f"{lg['answered_without_row']}; failed requests: {r['failed']} {r['failures'] or ''}",
    ]
    sc = s["slow_clients"]
    for label in ("without", "with"):
        f = s[label]
        lines.append(
            f"normal clients {label} {sc['clients']} slow clients: p50 {f['p50_ms']:.1f} ms, "
            f"p99 {f['p99_ms']:.1f} ms, {f['answered']} answered, {f['failed']} failed "
            f"(the machine {f['machine_busy_pct']:.0f} % busy)"
        )
    lines.append(
        f"p99 with / without slow clients: {s['p99_ratio']:.2f}; slow clients: "
        f"{sc['opened']} connections opened, {sc['closed_by_router']} closed by the router "
        f"{sc['router_answers'] or ''} (held {sc['held_median_s'] or 0:.1f} s median), "
        f"{sc['open_at_end']} still open at the end; router RSS with them "
        f"{s['router_rss_mib_with']:.1f} MiB"
    )
    return lines
