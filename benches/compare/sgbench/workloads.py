"""The workloads. Each `run_*` returns result rows (dicts) for one repetition and
raises `RunError` with a clear message when anything is off: a server that died,
a load generator that failed, answers that are not what the workload expects.
A row is never reported with made-up or zero figures.

Row fields: workload, system, unit, ops, elapsed, rate (ops/s), p50_ms, p99_ms,
cpu_us (server CPU per op), rss_mib (peak RSS of the server processes since they
started), load1, other_cores (CPU used by everything except the server, the load
generator and the origin, in cores: the disturbance), client_cpu_us, note.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from . import machine, peers
from .servers import dns_ask, stop_all  # noqa: F401  (stop_all re-exported for cli)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RunError(RuntimeError):
    pass


def loadgen(argv, *, stdin=None, stdout=None, timeout, cwd=None):
    """Runs a load generator to completion; returns (status, cpu_seconds,
    maxrss_kib, elapsed). Killed (and reported) past `timeout` seconds."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=cwd,
                             start_new_session=True)
    except OSError as e:
        raise RunError(f"cannot run {argv[0]}: {e}") from e
    finally:
        if stdin:
            fin.close()
        if stdout:
            fout.close()
    _current.append(p)
    killer = _Watchdog(p.pid, timeout)
    # Peak RSS from VmHWM, which exec resets (ru_maxrss would include the
    # forked copy of this harness from before the exec).
    hwm = _HighWater(p.pid)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        killer.cancel()
        hwm.stop()
        _current.remove(p)
    elapsed = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if killer.fired:
        raise RunError(f"{argv[0]} ran past its {timeout} s limit and was killed")
    return p.returncode, ru.ru_utime + ru.ru_stime, hwm.kib, elapsed, err


_current = []


def kill_loadgens():
    """Stops a load generator left running by an interrupted run."""
    for p in list(_current):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _HighWater:
    """Samples a process's VmHWM every 20 ms until stopped."""

    def __init__(self, pid):
        import threading
        self.pid, self.kib = pid, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            self.kib = max(self.kib, _hwm(self.pid))
            self.done.wait(0.02)

    def stop(self):
        self.done.set()
        self.thread.join()


def _hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Watchdog:
    def __init__(self, pid, timeout):
        import threading
        self.fired = False
        self.pid = pid
        self.timer = threading.Timer(timeout, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self):
        self.fired = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cancel(self):
        self.timer.cancel()


def _row(workload, system, unit, ops, win, client_cpu, *, p50=None, p99=None, note="",
         rss_pids=None, elapsed=None):
    """`elapsed`: the load generator's own measure of its run, when it has one
    (the window also holds its start-up)."""
    if ops <= 0 or win.elapsed <= 0:
        raise RunError(f"{workload} / {system}: no operations completed")
    other = (win.busy - win.server_cpu - client_cpu - win.upstream_cpu) / win.elapsed
    rss = machine.peak_rss_kib(rss_pids if rss_pids is not None else win.server_pids)
    return {
        "workload": workload, "system": system, "unit": unit, "ops": ops,
        "elapsed": elapsed or win.elapsed, "rate": ops / (elapsed or win.elapsed),
        "p50_ms": p50, "p99_ms": p99,
        "cpu_us": win.server_cpu / ops * 1e6, "rss_mib": rss / 1024,
        "load1": win.load1, "other_cores": max(0.0, other),
        "client_cpu_us": client_cpu / ops * 1e6, "note": note,
    }


# Classifier: schoolgate check --stdin vs squidGuard's redirector protocol.

def run_classifier(ctx):
    rows = []
    urls, sg_in = ctx.classifier_urls, ctx.squidguard_input
    empty = os.path.join(ctx.work, "empty.txt")
    open(empty, "w").close()
    systems = [
        ("schoolgate", [ctx.binary, "check", "--config", ctx.sg_check_plain, "--role", "pupil",
                        "--stdin"], urls, ctx.classifier_lines, _count_schoolgate),
        ("schoolgate +keywords +curated", [ctx.binary, "check", "--config", ctx.sg_check_full,
                                           "--role", "pupil", "--stdin"], urls,
         ctx.classifier_lines, _count_schoolgate),
        ("squidGuard 1.6", ["squidGuard", "-c", ctx.squidguard_conf], sg_in,
         ctx.squidguard_lines, _count_squidguard),
    ]
    for system, argv, infile, n, count in systems:
        out = os.path.join(ctx.work, "classifier-out.txt")
        st, cpu0, _, t_empty, err = loadgen(argv, stdin=empty, stdout=out, timeout=300)
        if st != 0:
            raise RunError(f"classifier / {system}: exit {st} on empty input: {err[-1500:]}")
        busy0 = machine.machine_busy_seconds()
        st, cpu, rss, t_full, err = loadgen(argv, stdin=infile, stdout=out, timeout=1200)
        busy = machine.machine_busy_seconds() - busy0
        if st != 0:
            raise RunError(f"classifier / {system}: exit {st}: {err[-1500:]}")
        answered, blocked = count(out)
        if answered != n:
            raise RunError(f"classifier / {system}: {answered} answers for {n} URLs "
                           f"(see {out})")
        ops_time = t_full - t_empty
        if ops_time <= 0:
            raise RunError(f"classifier / {system}: run no longer than start-up")
        rows.append({
            "workload": "classifier", "system": system, "unit": "URL", "ops": n,
            "elapsed": ops_time, "rate": n / ops_time, "p50_ms": None, "p99_ms": None,
            "cpu_us": (cpu - cpu0) / n * 1e6, "rss_mib": rss / 1024,
            "load1": machine.loadavg()[0],
            "other_cores": max(0.0, (busy - cpu) / t_full), "client_cpu_us": 0.0,
            "note": f"blocked {100 * blocked / n:.1f}%; start-up {t_empty:.2f} s",
        })
    return rows


def _count_schoolgate(path):
    answered = blocked = 0
    with open(path, "rb") as f:
        for line in f:
            if line[:1] != b" ":
                answered += 1
                if line.startswith(b"BLOCK"):
                    blocked += 1
    return answered, blocked


def _count_squidguard(path):
    answered = blocked = 0
    with open(path, "rb") as f:
        for line in f:
            answered += 1
            if line.startswith(b"OK"):
                blocked += 1
    return answered, blocked


# DNS: cache-hit and cache-miss mixes through schoolgate, unbound, dnsmasq.

DNSPERF = ["dnsperf", "-s", "127.0.0.1", "-c", "4", "-T", "1", "-q", "200", "-t", "2"]


def dnsperf(ctx, port, qfile, *, seconds, once=False, verbose=True):
    argv = DNSPERF + ["-p", str(port), "-d", qfile, "-l", str(seconds)]
    if once:
        argv += ["-n", "1"]
    if verbose:
        argv += ["-v"]
    out = os.path.join(ctx.work, "dnsperf-out.txt")
    st, cpu, _, _, err = loadgen(argv, stdout=out, timeout=seconds + 60)
    if st != 0:
        raise RunError(f"dnsperf exited {st}: {err[-1000:]}")
    stats, lat = {}, []
    with open(out, "rb") as f:
        for line in f:
            if line.startswith(b"> "):
                parts = line.split()
                try:
                    lat.append(float(parts[-1]))
                except ValueError:
                    pass
                continue
            text = line.decode(errors="replace").strip()
            for key in ("Queries completed", "Queries lost", "Queries per second",
                        "Run time (s)", "Response codes"):
                if text.startswith(key + ":"):
                    stats[key] = text.split(":", 1)[1].strip()
    if "Queries completed" not in stats:
        raise RunError(f"dnsperf printed no statistics (see {out})")
    completed = int(stats["Queries completed"].split()[0])
    lost = int(stats["Queries lost"].split()[0])
    lat.sort()
    return {
        "completed": completed, "lost": lost, "codes": stats.get("Response codes", ""),
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None,
        "client_cpu": cpu,
        "run_time": float(stats["Run time (s)"]) if "Run time (s)" in stats else None,
    }


def _noerror_share(codes):
    m = re.search(r"NOERROR (\d+) \(([\d.]+)%\)", codes)
    return float(m.group(2)) if m else 0.0


def _dns_measure(ctx, workload, system, server, port, qfile, *, once, note=""):
    ch = _ClickhouseCpu(ctx)
    win = machine.Window([server.pid], [ctx.nsd.pid]).start()
    r = dnsperf(ctx, port, qfile, seconds=ctx.dns_seconds, once=once)
    win.stop()
    note = "; ".join(x for x in (note, ch.note(r["completed"], "query")) if x)
    server.check_alive()
    if r["completed"] == 0:
        raise RunError(f"{workload} / {system}: no query answered ({r['codes']})")
    total = r["completed"] + r["lost"]
    if r["lost"] > 0.5 * total:
        raise RunError(f"{workload} / {system}: {r['lost']} of {total} queries lost")
    if _noerror_share(r["codes"]) < 90:
        raise RunError(f"{workload} / {system}: unexpected answers: {r['codes']}")
    extra = f"lost {100 * r['lost'] / total:.2f}%" if r["lost"] else ""
    note = "; ".join(x for x in (note, extra) if x)
    # dnsperf's own run time: the window also holds its start and its wait for
    # the last answers.
    return _row(workload, system, "query", r["completed"], win, r["client_cpu"],
                p50=r["p50_ms"], p99=r["p99_ms"], note=note, elapsed=r["run_time"])


def _check_dns(system, port, blocked_name):
    for name, why in (("h1.bench.test", "an allowed name"), (blocked_name, "a blocked name")):
        a = dns_ask(port, name, timeout=3)
        if a is None or a[0] != 0 or a[1] < 1:
            raise RunError(f"dns / {system}: {why} ({name}) answered {a} (want NOERROR + an A)")


def run_dns(ctx):
    rows = []
    systems = [
        ("schoolgate", lambda: peers.start_schoolgate(ctx.binary, ctx.sg_dns_conf, dns=True),
         peers.PORTS["schoolgate_dns"]),
        (f"unbound {ctx.versions['unbound']}", lambda: peers.start_unbound(ctx.work, ctx.derived),
         peers.PORTS["unbound"]),
        (f"dnsmasq {ctx.versions['dnsmasq']}", lambda: peers.start_dnsmasq(ctx.work, ctx.derived),
         peers.PORTS["dnsmasq"]),
    ]
    for system, start, port in systems:
        server = start()
        try:
            _check_dns(system, port, ctx.dns["blocked_names"][1])
            # Warm the cache: one pass over the hit mix.
            dnsperf(ctx, port, ctx.dns["hit"], seconds=30, once=True, verbose=False)
            rows.append(_dns_measure(ctx, "dns cache-hit", system, server, port,
                                     ctx.dns["hit"], once=False,
                                     note=f"start {server.start_secs:.1f} s"))
            rows.append(_dns_measure(ctx, "dns cache-miss", system, server, port,
                                     ctx.dns["miss"], once=True))
        finally:
            server.stop()
    return rows


UNRECORDED = "schoolgate, no events (record = false)"
INTO_CLICKHOUSE = "schoolgate, events into ClickHouse"
# HAProxy filters nothing: it shows what this machine, load generator and origin
# allow a fast proxy, with one thread (as schoolgate's one proxy worker on 2
# cores) and with one a core (its default).
HAPROXY_1 = "haproxy, 1 thread, no filtering"
HAPROXY_2 = "haproxy, 2 threads, no filtering"
HAPROXY = (HAPROXY_1, HAPROXY_2)
LOG_EVERY = "schoolgate, every query stored"
LOG_DEFAULT = "schoolgate, default (repeats within 60 s skipped)"


def _spooled_note(conf):
    """What the run left in its spool (not lost: the next start replays it)."""
    left = peers.spool_left(conf)
    return f"{left / 2**20:,.1f} MiB more in the spool" if left else ""


def _stop_clickhouse(ctx):
    """Stops the benchmark's ClickHouse. While it runs (`ctx.clickhouse`) the
    measuring windows report its CPU in the note: the server CPU/op column stays
    schoolgate's alone, as with the store on another machine."""
    ctx.clickhouse.stop()
    ctx.clickhouse = None


class _ClickhouseCpu:
    """ClickHouse's CPU over one measuring window, when it is running."""

    def __init__(self, ctx):
        self.ch = ctx.clickhouse
        self.cpu0 = machine.cpu_seconds([self.ch.pid]) if self.ch else 0

    def note(self, ops, unit):
        if not self.ch:
            return ""
        self.ch.check_alive()
        cpu = machine.cpu_seconds([self.ch.pid]) - self.cpu0
        per = {"query": "q", "request": "req"}[unit]
        return f"ClickHouse's own CPU {cpu * 1e6 / max(ops, 1):,.1f} µs/{per}"


def run_logging(ctx):
    """schoolgate's DNS filter on the allowed-only hit mix: every query logged
    (allowed_repeat_secs = 0), the default (every allowed name once a minute per
    device: allowed_repeat_secs = 60), and allowed queries sampled out
    (allowed_sample = 2^32-1: one in four billion), and no events at all
    ([store] record = false: the filter without monitoring, the baseline the
    others' cost is measured from)."""
    rows = []
    for label, conf in ((LOG_EVERY, ctx.sg_log_every),
                        (LOG_DEFAULT, ctx.sg_log_on),
                        ("schoolgate, allowed events sampled out", ctx.sg_log_off),
                        (UNRECORDED, ctx.sg_log_none),
                        (INTO_CLICKHOUSE + ", every query", ctx.sg_log_ch)):
        into_ch = conf is ctx.sg_log_ch
        if into_ch:
            ctx.clickhouse = peers.start_clickhouse(ctx.work)
        try:
            server = peers.start_schoolgate(ctx.binary, conf, dns=True, name=label)
            try:
                port = peers.PORTS["schoolgate_dns"]
                _check_dns(label, port, ctx.dns["blocked_names"][1])
                dnsperf(ctx, port, ctx.dns["allowed"], seconds=30, once=True, verbose=False)
                row = _dns_measure(ctx, "logging (dns allowed hits)", label, server, port,
                                   ctx.dns["allowed"], once=False)
            finally:
                server.stop()  # SIGTERM: the pipeline drains to the store first
            try:
                stored = peers.clickhouse_events(conf) if into_ch else peers.stored_events(conf)
            except Exception as e:
                raise RunError(f"logging / {label}: cannot count the stored events: {e}") from e
        finally:
            if into_ch:
                _stop_clickhouse(ctx)
        if conf is ctx.sg_log_none and stored:
            raise RunError(f"logging / {label}: {stored} events stored with record = false")
        row["note"] = "; ".join(x for x in (row["note"], f"{stored:,} events stored",
                                            _spooled_note(conf)) if x)
        rows.append(row)
    return rows


# HTTP proxy: wrk through each proxy to nginx; block pages; CONNECT.

def wrk_script(ctx, url, host):
    path = os.path.join(ctx.work, "wrk-" + re.sub(r"[^a-z0-9]+", "-", url.lower()) + ".lua")
    with open(path, "w") as f:
        f.write(f'wrk.path = "{url}"\nwrk.headers["Host"] = "{host}"\n')
    return path


def _ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(ctx, port, url, host, *, direct):
    argv = ["wrk", "-t1", f"-c{ctx.wrk_connections}", f"-d{ctx.http_seconds}s", "--latency",
            "--timeout", "5s"]
    if direct:
        argv.append(url)
    else:
        argv += ["-s", wrk_script(ctx, url, host), f"http://127.0.0.1:{port}/"]
    out = os.path.join(ctx.work, "wrk-out.txt")
    st, cpu, _, _, err = loadgen(argv, stdout=out, timeout=ctx.http_seconds + 60)
    with open(out) as f:
        text = f.read()
    if st != 0:
        raise RunError(f"wrk exited {st}: {err[-800:]}{text[-800:]}")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if not m:
        raise RunError(f"wrk printed no totals: {text[-800:]}")
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", text, re.M))

    def parse(v):
        mm = re.match(r"([\d.]+)(\w+)", v)
        return _ms(mm.group(1), mm.group(2))

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(m.group(1)),
        "p50_ms": parse(lat["50"]) if "50" in lat else None,
        "p99_ms": parse(lat["99"]) if "99" in lat else None,
        "errors": sum(map(int, sock.groups())) if sock else 0,
        "read_errors": int(sock.group(2)) if sock else 0,
        "error_text": sock.group(0) if sock else "",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "client_cpu": cpu,
        "raw": text,
    }


def curl(proxy_port, url):
    argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    if proxy_port:
        argv += ["-x", f"127.0.0.1:{proxy_port}"]
    r = subprocess.run(argv + [url], capture_output=True, timeout=20)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code or 0), body


def _http_systems(ctx):
    def sg():
        return [peers.start_schoolgate(ctx.binary, ctx.sg_proxy_conf, proxy=True)]

    # e2guardian's Squid is the one just measured alone, kept running: loading
    # the list takes Squid ten seconds or more.
    ctx.squid = None

    def squid():
        ctx.squid = peers.start_squid(ctx.work, ctx.derived)
        return [ctx.squid]

    def sg_unrecorded():
        return [peers.start_schoolgate(ctx.binary, ctx.sg_proxy_unrecorded, proxy=True,
                                       name=UNRECORDED)]

    def sg_clickhouse():
        ctx.clickhouse = peers.start_clickhouse(ctx.work)
        return [peers.start_schoolgate(ctx.binary, ctx.sg_proxy_ch, proxy=True,
                                       name=INTO_CLICKHOUSE)]

    def haproxy(threads):
        return lambda: [peers.start_haproxy(ctx.work, threads)]

    def e2g():
        if ctx.squid is None or not ctx.squid.alive():
            ctx.squid = peers.start_squid(ctx.work, ctx.derived)
        return [ctx.squid, peers.start_e2guardian(ctx.work, ctx.shared_path)]

    # The order puts the systems the report pairs up next to each other (the
    # host's speed drifts over minutes): schoolgate without events just before
    # schoolgate, HAProxy and Squid just after it, ClickHouse (whose server is
    # started for it) last.
    return [
        ("nginx direct (no proxy)", lambda: [], None),
        (UNRECORDED, sg_unrecorded, peers.PORTS["schoolgate_proxy"]),
        ("schoolgate", sg, peers.PORTS["schoolgate_proxy"]),
        (HAPROXY_1, haproxy(1), peers.PORTS["haproxy"]),
        (HAPROXY_2, haproxy(2), peers.PORTS["haproxy"]),
        (f"squid {ctx.versions['squid']}", squid, peers.PORTS["squid"]),
        (f"e2guardian {ctx.versions['e2guardian']} + squid", e2g, peers.PORTS["e2guardian"]),
        (INTO_CLICKHOUSE, sg_clickhouse, peers.PORTS["schoolgate_proxy"]),
    ]


# What each proxy's block page must contain (and its status).
BLOCK_MARKS = {"schoolgate": (403, b""), "squid": (403, b"ERR_ACCESS_DENIED"),
               "e2guardian": (200, b"Access Denied")}


def run_http(ctx):
    rows = []
    origin = f"http://127.0.0.1:{peers.PORTS['nginx']}"
    tls_target = f"127.0.0.1:{peers.PORTS['nginx_tls']}"
    blocked_url = f"http://www.{ctx.dns['blocked_names'][0]}/"
    systems = _http_systems(ctx)
    for i, (system, start, port) in enumerate(systems):
        servers = start()
        pids = [s.pid for s in servers] or [ctx.nginx.pid]
        upstream = [] if not servers else [ctx.nginx.pid]
        direct = port is None
        try:
            # Probes: the pages arrive whole; the blocked site gets a block page.
            for size, name in ((1024, "1k.html"), (102400, "100k.jpg")):
                code, body = curl(port, f"{origin}/{name}")
                if code != 200 or len(body) != size:
                    raise RunError(f"http / {system}: {name} came back {code}, {len(body)} bytes")
            if not direct and system not in HAPROXY:
                code, body = curl(port, blocked_url)
                want, mark = BLOCK_MARKS[system.split()[0].rstrip(",")]
                if code != want or mark not in body:
                    raise RunError(f"http / {system}: blocked {blocked_url} answered {code} "
                                   f"(want {want}): {body[:300]!r}")
            cases = [("http 1 KiB html", f"{origin}/1k.html"),
                     ("http 100 KiB image", f"{origin}/100k.jpg")]
            # Without events, or with them in ClickHouse, only the page workloads:
            # what monitoring costs a request. HAProxy has no block page, and is
            # not a forward proxy for CONNECT.
            page_only = system in (UNRECORDED, INTO_CLICKHOUSE, *HAPROXY)
            if not direct and not page_only:
                cases.append(("http block page", blocked_url))
            for workload, url in cases:
                host = url.split("/")[2]
                ch = _ClickhouseCpu(ctx)
                win = machine.Window(pids, upstream).start()
                r = wrk(ctx, port, url, host, direct=direct)
                win.stop()
                ch_note = ch.note(r["requests"], "request")
                for s in servers:
                    s.check_alive()
                block = workload == "http block page"
                if r["requests"] == 0:
                    raise RunError(f"{workload} / {system}: no request completed")
                if not block and r["non2xx"]:
                    raise RunError(f"{workload} / {system}: {r['non2xx']} of {r['requests']} "
                                   f"answers were not 2xx/3xx")
                errors, note = r["errors"], ""
                if block and r["read_errors"] and system.startswith("e2guardian"):
                    # e2guardian's block page has no length and no keep-alive: the
                    # close ends it, and wrk counts each close as a read error.
                    errors -= r["read_errors"]
                    note = "block page ends with a close (no keep-alive)"
                if errors > 0.01 * r["requests"]:
                    raise RunError(f"{workload} / {system}: {r['error_text']} "
                                   f"for {r['requests']} requests")
                if errors:
                    note = r["error_text"]
                note = "; ".join(x for x in (note, ch_note) if x)
                rows.append(_row(workload, system, "request", r["requests"], win,
                                 r["client_cpu"], p50=r["p50_ms"], p99=r["p99_ms"], note=note))
            for workload, mode, unit in (() if page_only else
                                         (("connect tunnel bulk", "bulk", "MiB"),
                                          ("connect new tunnels", "setup", "tunnel"))):
                argv = [sys.executable, "-m", "sgbench.tunnel_client", mode, "--target",
                        tls_target, "--duration", str(ctx.http_seconds),
                        "--threads", "4" if mode == "bulk" else "8"]
                if not direct:
                    argv += ["--proxy", f"127.0.0.1:{port}"]
                out = os.path.join(ctx.work, "tunnel-out.json")
                win = machine.Window(pids, upstream).start()
                st, cpu, _, _, err = loadgen(argv, stdout=out, timeout=ctx.http_seconds + 60,
                                             cwd=HERE)
                win.stop()
                for s in servers:
                    s.check_alive()
                if st != 0:
                    raise RunError(f"{workload} / {system}: client exited {st}: {err[-800:]}")
                with open(out) as f:
                    r = json.load(f)
                if r["errors"] and (r["ops"] == 0 or mode == "bulk"
                                    or r["errors"] > 0.01 * r["ops"]):
                    raise RunError(f"{workload} / {system}: {r['errors']} errors, first: "
                                   f"{r['first_error']}")
                rows.append(_row(workload, system, unit, r["ops"], win, cpu,
                                 p50=r.get("p50_ms"), p99=r.get("p99_ms"),
                                 elapsed=r["elapsed"]))
        finally:
            squid_next = i + 1 < len(systems) and systems[i + 1][0].startswith("e2guardian")
            for s in reversed(servers):
                if not (squid_next and s is ctx.squid):
                    s.stop()
            if ctx.clickhouse is not None:
                try:
                    stored = peers.clickhouse_events(ctx.sg_proxy_ch)
                finally:
                    _stop_clickhouse(ctx)
                if not stored:
                    raise RunError(f"http / {system}: no event reached ClickHouse")
    if ctx.squid is not None:
        ctx.squid.stop()
    return rows
