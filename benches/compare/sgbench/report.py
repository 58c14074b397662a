"""Medians over repetitions, the table, and the section appended to RESULTS.md."""

import statistics

from .workloads import HAPROXY_1, HAPROXY_2, INTO_CLICKHOUSE, LOG_DEFAULT, LOG_EVERY, UNRECORDED

METRICS = ("rate", "p50_ms", "p99_ms", "cpu_us", "rss_mib", "load1", "other_cores",
           "client_cpu_us")


def aggregate(rows):
    """One entry per (workload, system), in the order first seen, with the median
    of each metric over the repetitions and the per-repetition rows kept."""
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], r["system"]), []).append(r)
    out = []
    for (workload, system), rs in groups.items():
        agg = {"workload": workload, "system": system, "unit": rs[0]["unit"], "reps": rs}
        for m in METRICS:
            vals = [r[m] for r in rs if r[m] is not None]
            agg[m] = statistics.median(vals) if vals else None
        # The note (start-up time, loss, events stored) of the repetition with the
        # median throughput; every repetition's is in the raw table.
        by_rate = sorted(rs, key=lambda r: r["rate"])
        agg["note"] = by_rate[(len(by_rate) - 1) // 2]["note"] or ""
        out.append(agg)
    # The reference in each workload: schoolgate as shipped, else (the logging
    # workload) its first row.
    ref = {}
    for a in out:
        if a["system"] == "schoolgate":
            ref[a["workload"]] = a["rate"]
    for a in out:
        if a["system"].startswith("schoolgate") and a["workload"] not in ref:
            ref[a["workload"]] = a["rate"]
    for a in out:
        base = ref.get(a["workload"])
        a["vs_sg"] = a["rate"] / base if base else None
    return out


def rate_text(rate, unit):
    if unit == "MiB":
        return f"{rate:,.0f} MiB/s"
    per = {"query": "q/s", "request": "req/s", "URL": "URLs/s", "tunnel": "tunnels/s"}[unit]
    if rate >= 10000:
        return f"{rate / 1000:,.1f}k {per}"
    return f"{rate:,.0f} {per}"


def _num(v, fmt):
    return "—" if v is None else format(v, fmt)


def cpu_text(us, unit):
    if us is None:
        return "—"
    per = {"MiB": "MiB", "query": "q", "request": "req", "URL": "URL", "tunnel": "tunnel"}[unit]
    return f"{us:,.1f} µs/{per}" if us < 100 else f"{us:,.0f} µs/{per}"


def table(aggs):
    lines = [
        "| workload | system | throughput | p50 ms | p99 ms | server CPU/op | peak RSS | vs schoolgate | load1 | other CPU | notes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for a in aggs:
        lat50 = _num(a["p50_ms"], ".2f")
        lat99 = _num(a["p99_ms"], ".2f")
        vs = "—" if a["vs_sg"] is None else f"{a['vs_sg']:.2f}×"
        lines.append(
            f"| {a['workload']} | {a['system']} | {rate_text(a['rate'], a['unit'])} | {lat50} | "
            f"{lat99} | {cpu_text(a['cpu_us'], a['unit'])} | {a['rss_mib']:,.0f} MiB | {vs} | "
            f"{a['load1']:.2f} | {a['other_cores']:.2f} cores | {a['note']} |")
    return "\n".join(lines)


def raw_table(aggs):
    lines = [
        "| workload | system | rep | ops | seconds | throughput | server CPU/op | client CPU/op | peak RSS | load1 | other CPU | notes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for a in aggs:
        for i, r in enumerate(a["reps"], 1):
            lines.append(
                f"| {r['workload']} | {r['system']} | {i} | {r['ops']:,.0f} | {r['elapsed']:.2f} | "
                f"{rate_text(r['rate'], r['unit'])} | {cpu_text(r['cpu_us'], r['unit'])} | "
                f"{cpu_text(r['client_cpu_us'], r['unit'])} | {r['rss_mib']:,.0f} MiB | "
                f"{r['load1']:.2f} | {r['other_cores']:.2f} | {r['note'] or ''} |")
    return "\n".join(lines)


# Two systems read repetition by repetition. Both ran in the same repetition, a
# minute or two apart, so their ratio moves less with the host's speed than the
# ratio of two medians taken from different repetitions does.
#   (label, system, against, kind): "ratio" gives throughput and CPU per op of
#   the first as multiples of the second's; "cost" gives the throughput the
#   first loses against the second, and the CPU per op it adds.
PAIRS = (
    ("schoolgate against Squid", "schoolgate", "squid", "ratio"),
    ("HAProxy, 1 thread, no filtering, against Squid", HAPROXY_1, "squid", "ratio"),
    ("HAProxy, 2 threads, no filtering, against Squid", HAPROXY_2, "squid", "ratio"),
    ("schoolgate against HAProxy, 1 thread", "schoolgate", HAPROXY_1, "ratio"),
    ("every request stored (SQLite) against no events", "schoolgate", UNRECORDED, "cost"),
    ("events into ClickHouse against no events", INTO_CLICKHOUSE, UNRECORDED, "cost"),
    ("every query stored against no events", LOG_EVERY, UNRECORDED, "cost"),
    ("the default logging against no events", LOG_DEFAULT, UNRECORDED, "cost"),
    ("every query into ClickHouse against no events", INTO_CLICKHOUSE + ", every query",
     UNRECORDED, "cost"),
)


def _named(system, name):
    """A system is named by its name, with or without a version after it
    (`squid` names `squid 5.7`)."""
    return system == name or system.startswith(name + " ")


def _pair_cells(a, b, kind):
    cpu = a["cpu_us"] is not None and b["cpu_us"] is not None
    if kind == "ratio":
        return a["rate"] / b["rate"], a["cpu_us"] / b["cpu_us"] if cpu and b["cpu_us"] else None
    return 1 - a["rate"] / b["rate"], a["cpu_us"] - b["cpu_us"] if cpu else None


def _pair_text(kind, first, second):
    """`2.90× (CPU 0.31×)` for a ratio, `−14.3% (CPU +4.8 µs)` for a cost."""
    if kind == "ratio":
        return f"{first:.2f}× (CPU {_num(second, '.2f')}×)"
    extra = "" if second is None else f" (CPU {second:+.1f} µs)".replace("-", "−")
    return f"{-first * 100:+.1f}%".replace("-", "−") + extra


def pairs(aggs):
    """The PAIRS table: each repetition's figure and their median, for every
    workload where both systems ran."""
    lines = [
        "| workload | pair: throughput (CPU per op) | each repetition | median |",
        "|---|---|---|---|",
    ]
    for label, name, against, kind in PAIRS:
        for a in aggs:
            if not _named(a["system"], name):
                continue
            b = next((x for x in aggs
                      if x["workload"] == a["workload"] and _named(x["system"], against)), None)
            if b is None:
                continue
            cells = [_pair_cells(ra, rb, kind) for ra, rb in zip(a["reps"], b["reps"])]
            firsts = [c[0] for c in cells]
            seconds = [c[1] for c in cells if c[1] is not None]
            each = "; ".join(_pair_text(kind, f, s) for f, s in cells)
            med = _pair_text(kind, statistics.median(firsts),
                             statistics.median(seconds) if seconds else None)
            lines.append(f"| {a['workload']} | {label} | {each} | {med} |")
    return "\n".join(lines) if len(lines) > 2 else ""
