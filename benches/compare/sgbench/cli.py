"""`benches/compare/run`: the order of a run.

install peers if missing -> build schoolgate -> shared list and inputs ->
for each repetition: classifier, DNS, logging cost, HTTP proxy -> medians ->
table on stdout and a section appended to benches/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from . import blocklist, machine, peers, report, servers, workloads

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WORKLOADS = ("classifier", "dns", "logging", "http")
# squidGuard classifies ~10k URLs/s: a sample this size gives a steady rate in ~20 s.
SQUIDGUARD_LINES = 200_000

# Binary -> Debian package.
TOOLS = {
    "squid": "squid", "e2guardian": "e2guardian", "squidGuard": "squidguard",
    "unbound": "unbound", "dnsmasq": "dnsmasq-base", "nginx": "nginx", "nsd": "nsd",
    "dnsperf": "dnsperf", "wrk": "wrk", "curl": "curl", "openssl": "openssl",
    "clickhouse-server": "clickhouse-server", "haproxy": "haproxy",
}
VERSIONED = {"squid": "squid", "e2guardian": "e2guardian", "squidguard": "squidguard",
             "unbound": "unbound", "dnsmasq": "dnsmasq-base", "nginx": "nginx", "nsd": "nsd",
             "dnsperf": "dnsperf", "wrk": "wrk", "clickhouse": "clickhouse-server",
             "haproxy": "haproxy"}


class SetupError(RuntimeError):
    pass


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="benches/compare/run",
        description="schoolgate side by side with Squid, e2guardian, squidGuard, unbound "
                    "and dnsmasq, and HAProxy as a reference, on this machine (loopback "
                    "only, bounded load).")
    ap.add_argument("--quick", action="store_true",
                    help="one repetition, short runs, 100k classifier lines (about 2 minutes)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--list-size", type=int, default=1_000_000,
                    help="names in the shared DNS/proxy blocklist (real + synthetic; default 1M)")
    ap.add_argument("--classifier-lines", type=int,
                    help="URLs for the classifier workload (default 1M, --quick 100k)")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help=f"comma-separated workloads (default: all of {','.join(WORKLOADS)})")
    ap.add_argument("--work", default=os.path.join(REPO, "target", "bench-compare"),
                    help="work directory for derived lists, configs, logs (default target/bench-compare)")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"),
                    help="the shared data folder (default ../shared/data beside the repository)")
    ap.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")
    ap.add_argument("--no-build", action="store_true", help="use target/release/schoolgate as is")
    ap.add_argument("--no-results", action="store_true", help="do not append to benches/RESULTS.md")
    a = ap.parse_args(argv)
    a.only = [w.strip() for w in a.only.split(",") if w.strip()]
    for w in a.only:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    a.reps = a.reps or (1 if a.quick else 3)
    a.classifier_lines = a.classifier_lines or (100_000 if a.quick else 1_000_000)
    a.dns_seconds = 3 if a.quick else 8
    a.http_seconds = 2 if a.quick else 6
    return a


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def install(no_install):
    missing = sorted({pkg for binary, pkg in TOOLS.items() if not shutil.which(binary)})
    if not missing:
        return
    if no_install:
        raise SetupError(f"missing packages: {' '.join(missing)} (run without --no-install)")
    if os.geteuid() != 0:
        raise SetupError(f"missing packages {' '.join(missing)}: run as root to install them")
    say(f"installing from Debian's packages: {' '.join(missing)}")
    # Never let a package's postinst start its daemon (nginx, unbound ...).
    policy = "/usr/sbin/policy-rc.d"
    made_policy = not os.path.exists(policy)
    if made_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing
        lists = "/var/lib/apt/lists"
        if not any(n.endswith("_Packages") for n in os.listdir(lists)):
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    except subprocess.CalledProcessError as e:
        raise SetupError(f"apt-get failed: {e}") from e
    finally:
        if made_policy:
            os.unlink(policy)
    still = [b for b in TOOLS if not shutil.which(b)]
    if still:
        raise SetupError(f"still missing after apt-get: {' '.join(still)}")


def build(no_build):
    binary = os.path.join(REPO, "target", "release", "schoolgate")
    if not no_build:
        say("building schoolgate (cargo build --release --bin schoolgate)")
        r = subprocess.run(["cargo", "build", "--release", "--bin", "schoolgate"], cwd=REPO)
        if r.returncode != 0:
            raise SetupError("cargo build --release --bin schoolgate failed")
    if not os.access(binary, os.X_OK):
        raise SetupError(f"{binary} is missing (build it, or run without --no-build)")
    return binary


def versions(binary):
    v = {}
    for name, pkg in VERSIONED.items():
        full = machine.package_version(pkg)
        v[name] = full.split(":")[-1].split("-")[0] if full != "?" else "?"
        v[name + "_full"] = full
    r = subprocess.run([binary, "--version"], capture_output=True, text=True)
    v["schoolgate"] = r.stdout.strip() or "?"
    return v


def git(*args):
    r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


class Context:
    pass


def prepare(a, binary):
    ctx = Context()
    ctx.binary, ctx.work, ctx.data = binary, a.work, a.data
    ctx.dns_seconds, ctx.http_seconds = a.dns_seconds, a.http_seconds
    # 50 connections: how the reference figures for Squid and e2guardian
    # were measured (wrk, 50 connections); every system gets the same.
    ctx.classifier_lines, ctx.wrk_connections = a.classifier_lines, 50
    ctx.clickhouse = None  # the benchmark's ClickHouse server while a row needs it
    ctx.versions = versions(binary)
    os.makedirs(a.work, exist_ok=True)
    if not os.path.isdir(os.path.join(a.data, "lists", "ut1")):
        raise SetupError(f"no lists in {a.data} (give --data)")
    say(f"shared blocklist: {a.list_size:,} names (built once, then reused from {a.work}/lists)")
    ctx.shared_path, ctx.list_meta = blocklist.build_shared(a.data, a.list_size, a.work)
    names = blocklist.load_names(ctx.shared_path)
    ctx.derived = blocklist.write_derived(names, a.work, a.list_size)
    ctx.dns = blocklist.dns_files(names, a.work, miss_count=ctx.dns_seconds * 60_000)
    del names
    shared = peers.shared_list_toml(ctx.shared_path)
    ctx.sg_dns_conf = peers.schoolgate_config(a.work, "sg-dns", lists=shared, dns=True)
    ctx.sg_proxy_conf = peers.schoolgate_config(a.work, "sg-proxy", lists=shared, proxy=True)
    ctx.sg_proxy_unrecorded = peers.schoolgate_config(a.work, "sg-proxy-unrecorded",
                                                      lists=shared, proxy=True, record=False)
    ctx.sg_log_every = peers.schoolgate_config(a.work, "sg-log-every", lists=shared, dns=True,
                                               allowed_repeat_secs=0)
    ctx.sg_log_on = peers.schoolgate_config(a.work, "sg-log-on", lists=shared, dns=True)
    ctx.sg_log_off = peers.schoolgate_config(a.work, "sg-log-off", lists=shared, dns=True,
                                             allowed_sample=2**32 - 1)
    ctx.sg_log_ch = peers.schoolgate_config(a.work, "sg-log-ch", lists=shared, dns=True,
                                            allowed_repeat_secs=0, clickhouse=True)
    ctx.sg_proxy_ch = peers.schoolgate_config(a.work, "sg-proxy-ch", lists=shared, proxy=True,
                                              clickhouse=True)
    ctx.sg_log_none = peers.schoolgate_config(a.work, "sg-log-none", lists=shared, dns=True,
                                              record=False)
    if "classifier" in a.only:
        say(f"classifier inputs: {a.classifier_lines:,} URLs; squidGuard db from UT1")
        ctx.classifier_urls = blocklist.classifier_urls(a.data, a.classifier_lines, a.work)
        ctx.squidguard_lines = min(a.classifier_lines, SQUIDGUARD_LINES)
        ctx.squidguard_input = blocklist.squidguard_input(ctx.classifier_urls,
                                                          ctx.squidguard_lines)
        ut1 = peers.ut1_list_toml(a.data)
        ctx.sg_check_plain = peers.schoolgate_config(a.work, "sg-check-plain", lists=ut1,
                                                     keywords=False, curated=False)
        ctx.sg_check_full = peers.schoolgate_config(a.work, "sg-check-full", lists=ut1)
        ctx.squidguard_conf = peers.squidguard_setup(a.work, a.data)
    return ctx


def leftovers(work):
    """Live processes whose command line names the work directory."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if work in cmd:
            found.append((int(name), cmd.strip()))
    return found


def run(a, ctx):
    rows = []
    for rep in range(1, a.reps + 1):
        for w in a.only:
            say(f"repetition {rep}/{a.reps}: {w} (load average {machine.loadavg()[0]:.2f})")
            if w == "classifier":
                got = workloads.run_classifier(ctx)
            elif w in ("dns", "logging"):
                ctx.nsd = peers.start_nsd(ctx.work)
                try:
                    got = workloads.run_dns(ctx) if w == "dns" else workloads.run_logging(ctx)
                finally:
                    ctx.nsd.stop()
            else:
                ctx.nginx = peers.start_nginx(ctx.work)
                try:
                    got = workloads.run_http(ctx)
                finally:
                    ctx.nginx.stop()
            for r in got:
                say(f"  {r['workload']:<28} {r['system']:<40} "
                    f"{report.rate_text(r['rate'], r['unit']):>16}  "
                    f"cpu {report.cpu_text(r['cpu_us'], r['unit']):>14}  "
                    f"rss {r['rss_mib']:,.0f} MiB  load1 {r['load1']:.2f}  "
                    f"other {r['other_cores']:.2f}")
            rows.extend(got)
    return rows


def section(a, ctx, aggs, started, load_start, load_end, argv, timing):
    v = ctx.versions
    # Uncommitted changes, other than to RESULTS.md (which an earlier run may have
    # appended to), mean the binary may not be the commit's.
    status = git("status", "--porcelain", "--untracked-files=no").splitlines()
    changed = [line.split(maxsplit=1)[-1] for line in status]
    changed = [path for path in changed if path != "benches/RESULTS.md"]
    meta = ctx.list_meta
    cmd = "benches/compare/run" + ("" if not argv else " " + " ".join(argv))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [
        f"\n## Side by side with the peers: {started:%Y-%m-%d %H:%M} UTC"
        f"{' (--quick)' if a.quick else ''}\n",
        f"- command: `{cmd}` (from the repository root)",
        f"- commit: `{git('rev-parse', '--short', 'HEAD')}`"
        + (f" (uncommitted changes in the working tree: {', '.join(changed)})" if changed else ""),
        f"- schoolgate binary: `target/release/schoolgate`, "
        + ("built by this run" if not a.no_build else "not rebuilt (`--no-build`)")
        + f", file time {_mtime(ctx.binary)}",
        f"- machine: {machine.cores()} cores, {machine.cpu_model()}, {mem:.0f} GiB, "
        f"{machine.os_release()}",
        f"- versions: {v['schoolgate']}; squid {v['squid_full']}, e2guardian {v['e2guardian_full']}, "
        f"squidGuard {v['squidguard_full']}, unbound {v['unbound_full']}, dnsmasq {v['dnsmasq_full']}, "
        f"nginx {v['nginx_full']}, nsd {v['nsd_full']}, dnsperf {v['dnsperf_full']}, wrk {v['wrk_full']}, "
        f"haproxy {v['haproxy_full']}",
        f"- shared blocklist (DNS and proxy workloads): {meta['size']:,} names = {meta['real']:,} "
        f"real (UT1 pupil categories, Block List Project, porntop; subdomains of listed names "
        f"removed) + {meta['synthetic']:,} synthetic",
        f"- classifier: {a.classifier_lines:,} URLs (squidGuard the first "
        f"{min(a.classifier_lines, SQUIDGUARD_LINES):,} of them), the UT1 pupil categories in both systems",
        f"- repetitions: {a.reps}{' (figures are medians)' if a.reps > 1 else ''}; DNS runs {a.dns_seconds} s, HTTP runs "
        f"{a.http_seconds} s each, wrk 1 thread × {ctx.wrk_connections} connections, dnsperf "
        f"4 clients × 200 outstanding",
        f"- duration: {timing[0]:.0f} s, of which {timing[1]:.0f} s installing and building",
    ] + ([f"- ClickHouse's data: on {peers.CLICKHOUSE_FS['note']}"]
         if peers.CLICKHOUSE_FS["note"] else []) + [
        f"- load average (1/5/15 min) at start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}. Servers, load generators "
        f"and other people's builds share the same cores: see `other CPU` per row before "
        f"trusting a throughput; CPU per op is the steadier figure.",
        "",
        report.table(aggs),
        "",
    ]
    paired = report.pairs(aggs)
    if paired:
        parts += [
            "Pairs, repetition by repetition (both ran in the same repetition, so "
            "their ratio moves less with the host's speed than a ratio of medians):",
            "",
            paired,
            "",
        ]
    parts += [
        "<details><summary>Every repetition</summary>\n",
        report.raw_table(aggs),
        "\n</details>\n",
    ]
    return "\n".join(parts)


def _mtime(path):
    t = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return f"{t:%Y-%m-%d %H:%M} UTC"


def append_results(text):
    path = os.path.join(REPO, "benches", "RESULTS.md")
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:
            f.write("# Benchmark results\n\nSections are appended by the tools that produce "
                    "them; each says how it was made.\n")
        f.write(text)
    return path


def _on_signal(signum, _frame):
    print(f"compare: stopped by signal {signum}; stopping every server", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    code = 0
    try:
        install(a.no_install)
        binary = build(a.no_build)
        t_built = time.monotonic()
        busy = [n for n, p in peers.PORTS.items() if not servers.port_free(p)]
        if busy:
            raise SetupError("ports in use on 127.0.0.1: " + ", ".join(
                f"{n} {peers.PORTS[n]}" for n in busy) + " (another run, or another server?)")
        ctx = prepare(a, binary)
        load_start = machine.loadavg()
        rows = run(a, ctx)
        load_end = machine.loadavg()
    except (SetupError, workloads.RunError, servers.StartError) as e:
        print(f"compare: FAILED: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("compare: interrupted", file=sys.stderr)
        code = 130
    finally:
        workloads.kill_loadgens()
        servers.stop_all()
        peers.unmount_clickhouse_fs()
        left = leftovers(a.work)
        for pid, cmd in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            print("compare: FAILED: processes were still running and have been killed: "
                  + "; ".join(f"{p} {c}" for p, c in left), file=sys.stderr)
            code = code or 1
    if code:
        return code
    aggs = report.aggregate(rows)
    timing = (time.monotonic() - t0, t_built - t0)
    text = section(a, ctx, aggs, started, load_start, load_end, argv, timing)
    print(text)
    with open(os.path.join(a.work, f"results-{started:%Y%m%dT%H%M%S}.json"), "w") as f:
        json.dump({"args": vars(a), "rows": rows}, f, indent=1, default=str)
    if not a.no_results:
        say(f"appended to {append_results(text)}")
    say(f"done in {time.monotonic() - t0:.0f} s; no server left running")
    return 0
