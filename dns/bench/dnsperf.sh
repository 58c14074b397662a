#!/usr/bin/env bash
# Side-by-side DNS benchmark: schoolgate's DNS filter, unbound and dnsmasq, all
# with the same 1 M-name blocklist and the same local authoritative upstream
# (NSD), driven by dnsperf on this machine.
#
#   dns/bench/dnsperf.sh [--quick] [--rounds N] [--seconds S] [--out FILE]
#
# Servers (all running at once, each answering only when it is measured):
#   schoolgate          every query an event (allowed_repeat_secs = 0), embedded store
#   schoolgate-default  the shipped default: every allowed name once a minute per
#                       device (allowed_repeat_secs = 60; blocked ones always)
#   schoolgate-nostore  as default, but the pipeline's store drops the batches and
#                       its journal is off: the DNS path's own cost
#   schoolgate-nojournal, schoolgate-discard (only when DNSPERF_ONLY names them):
#                       as default with only the journal off, or only the store
#                       dropping the batches: how the logging cost divides
#   unbound             local-zone always_nxdomain for each blocked name
#   dnsmasq             address=/name/ (NXDOMAIN) for each blocked name
# schoolgate runs with MALLOC_ARENA_MAX=2 (set it in the service unit too):
# glibc's per-thread arenas otherwise hold ~50 MB of freed memory.
# Workloads:
#   hit    cache-hit-heavy: 90 % of 1 000 names already cached, 10 % blocked names
#   miss   cache-miss-heavy: 90 % never-seen names (an NSD wildcard), 10 % blocked
#   10k    the hit mix at a fixed 10 000 queries/s: latency without saturation,
#          once the server is at rest (settle: under 5% of a core, at most 60 s)
# Each round measures every server on every workload, one after the other, so
# background load on a shared machine falls on all of them alike; the table
# gives the median of the rounds. Reported: queries/s, p50/p99 latency (from
# dnsperf -v lines), the server's CPU time per query (utime+stime from
# /proc/PID/stat before and after), RSS now and peak.
#
# Every server runs in the foreground, bound to 127.0.0.1 only, and is stopped
# by PID when the script ends (trap), however it ends. Every step is bounded
# by `timeout`. Needs: dnsperf nsd unbound dnsmasq-base python3 bind9-dnsutils
# (Debian); builds schoolgate's `bench_filter` example in release mode.
set -euo pipefail

ROUNDS=3
SECONDS_PER_RUN=10
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=2; SECONDS_PER_RUN=5; shift ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "usage: $0 [--quick] [--rounds N] [--seconds S] [--out FILE]" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${SCHOOLGATE_DATA:-$ROOT/../shared/data}"
[ -d "$DATA/lists" ] || DATA=/work/shared/data
TOTAL_NAMES=1000000
HIT_NAMES=1000
PORT_NSD=15390
declare -A PORT=([schoolgate]=15391 [schoolgate-default]=15394 [schoolgate-nostore]=15395 [schoolgate-nojournal]=15396 [schoolgate-discard]=15397 [unbound]=15392 [dnsmasq]=15393)
SERVERS=(schoolgate schoolgate-default schoolgate-nostore unbound dnsmasq)
# DNSPERF_ONLY="schoolgate-default unbound" measures some of them;
# SG_ENV="MALLOC_ARENA_MAX=2" (the default) is schoolgate's environment.
# THREAD_SPLIT=1 also logs each run's CPU per query by thread name, user and
# system apart (where a server's time goes: UDP loops, event threads, writer).
[ -n "${DNSPERF_ONLY:-}" ] && read -ra SERVERS <<< "$DNSPERF_ONLY"
SG_ENV=${SG_ENV-MALLOC_ARENA_MAX=2}
wanted() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
CONCURRENCY=(-c 8 -q 200)
CLK_TCK=$(getconf CLK_TCK)

for tool in dnsperf nsd unbound dnsmasq python3 dig; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool: apt-get install -y dnsperf nsd unbound dnsmasq-base bind9-dnsutils python3" >&2
        exit 1
    }
done
for port in "$PORT_NSD" "${PORT[@]}"; do
    if ss -Hlun "sport = :$port" | grep -q .; then echo "port $port is in use" >&2; exit 1; fi
done

WORK="$(mktemp -d /tmp/schoolgate-dnsbench.XXXXXX)"
declare -A PID=()
ALL_PIDS=()
cleanup() {
    for pid in "${ALL_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${ALL_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
log() { echo "[$(date +%T)] $*" >&2; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# Build schoolgate's filter.
# ---------------------------------------------------------------------------
log "building bench_filter (release)"
(cd "$ROOT" && timeout 1800 cargo build --release -q -p schoolgate-dns --example bench_filter)
SG_BIN="$ROOT/target/release/examples/bench_filter"

# ---------------------------------------------------------------------------
# Data: the blocklist, the zone, the query files.
# ---------------------------------------------------------------------------
log "generating the blocklist ($TOTAL_NAMES names), zone and query files in $WORK"
timeout 900 python3 - "$DATA" "$WORK" "$TOTAL_NAMES" "$HIT_NAMES" "$SECONDS_PER_RUN" "$ROUNDS" <<'PY'
import gzip, os, random, re, sys
data, work = sys.argv[1], sys.argv[2]
total, hits, seconds, rounds = (int(a) for a in sys.argv[3:7])
random.seed(8)
valid = re.compile(r'^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z][a-z0-9-]{0,62}$')
names = set()
for sub in ("ut1", "blocklistproject", "porntop"):
    d = os.path.join(data, "lists", sub)
    for f in sorted(os.listdir(d)):
        if not f.endswith(".txt.gz") or f.endswith(".urls.txt.gz"):
            continue
        with gzip.open(os.path.join(d, f), "rt", errors="replace") as fh:
            for line in fh:
                n = line.strip().lower().rstrip(".")
                if n and not n.startswith("#") and valid.match(n):
                    names.add(n)
real = len(names)
tlds = ["com", "net", "org", "info", "xyz", "top", "site", "online", "co.uk", "ru"]
letters = "abcdefghijklmnopqrstuvwxyz0123456789"
synthetic = []
while len(names) < total:
    n = "".join(random.choice(letters) for _ in range(random.randint(6, 14))) + "-" + str(len(names)) + "." + random.choice(tlds)
    if n not in names:
        names.add(n)
        synthetic.append(n)
with open(os.path.join(work, "synthetic.txt"), "w") as fh:
    fh.write("\n".join(synthetic) + "\n")
allnames = sorted(names)
with open(os.path.join(work, "unbound-block.conf"), "w") as fh:
    for n in allnames:
        fh.write(f'local-zone: "{n}." always_nxdomain\n')
with open(os.path.join(work, "dnsmasq-block.conf"), "w") as fh:
    for n in allnames:
        fh.write(f"address=/{n}/\n")
with open(os.path.join(work, "bench.zone"), "w") as fh:
    fh.write("$ORIGIN bench.\n$TTL 86400\n@ IN SOA ns.bench. host.bench. 1 3600 600 86400 300\n@ IN NS ns.bench.\nns IN A 127.0.0.1\n")
    for i in range(hits):
        fh.write(f"h{i}.hit IN A 192.0.2.{i % 250 + 1}\n")
    fh.write("*.miss 3600 IN A 192.0.2.200\n")
blocked_sample = random.sample(allnames, 20000)
def blocked():
    return random.choice(blocked_sample) + " A\n"
with open(os.path.join(work, "hit.txt"), "w") as fh:
    for _ in range(200000):
        fh.write(blocked() if random.random() < 0.1 else f"h{random.randrange(hits)}.hit.bench A\n")
with open(os.path.join(work, "warm.txt"), "w") as fh:
    for i in range(hits):
        fh.write(f"h{i}.hit.bench A\n")
# Never-seen names for each round (every server has its own cache, so they can
# share a round's file), enough for 150 000 queries/s.
for r in range(1, rounds + 1):
    with open(os.path.join(work, f"miss{r}.txt"), "w") as fh:
        for i in range(seconds * 150000):
            fh.write(blocked() if random.random() < 0.1 else f"r{r}m{i}x{random.randrange(1 << 30):x}.miss.bench A\n")
print(f"blocklist: {real} names from the shared lists + {len(synthetic)} synthetic = {len(allnames)}", file=sys.stderr)
PY

# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One line per thread: tid name utime stime (the name's spaces made `_`).
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ < "$t/comm")" "$(awk '{print $14, $15}' "$t/stat")"
    done 2>/dev/null | sort
}
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
# Waits (at most 60 s) until a server uses under 5% of a core: the fixed-rate
# run measures a server at rest, not one still storing the events the
# saturating runs before it left queued (schoolgate's writer catches up at low
# priority, and other servers' runs keep the cores busy meanwhile).
settle() { # pid -> seconds waited
    local pid=$1 waited=0 before after
    while [ "$waited" -lt 60 ]; do
        before=$(cpu_ticks "$pid"); sleep 1; after=$(cpu_ticks "$pid")
        waited=$((waited + 1))
        [ $(( (after - before) * 100 )) -lt $((CLK_TCK * 5)) ] && break
    done
    echo "$waited"
}

wait_ready() { # name pid port
    local name=$1 pid=$2 port=$3
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || { log "$name died while starting"; return 1; }
        if dig @127.0.0.1 -p "$port" +time=1 +tries=1 h0.hit.bench A 2>/dev/null | grep -q "status: NOERROR"; then
            return 0
        fi
        sleep 0.5
    done
    log "$name did not become ready"
    return 1
}

start() { # name command...
    local name=$1; shift
    "$@" > "$WORK/$name.stdout" 2> "$WORK/$name.stderr" &
    PID[$name]=$!
    ALL_PIDS+=("$!")
}

RAW="$WORK/raw.tsv"
: > "$RAW"

# measure name workload round file dnsperf-args...
measure() {
    local name=$1 workload=$2 round=$3 file=$4; shift 4
    local pid=${PID[$name]} port=${PORT[$name]:-$PORT_NSD} vlog="$WORK/dnsperf.log"
    local before after queries qps lost lat cpu_us settled=""
    if [ "$workload" = 10k ]; then settled=" (settled after $(settle "$pid") s)"; fi
    local threads_before=""
    [ -n "${THREAD_SPLIT:-}" ] && threads_before=$(thread_ticks "$pid")
    before=$(cpu_ticks "$pid")
    timeout $((SECONDS_PER_RUN + 60)) dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$SECONDS_PER_RUN" -t 2 -v "$@" > "$vlog" 2>&1 || true
    after=$(cpu_ticks "$pid")
    queries=$(awk '/Queries completed:/ {print $3}' "$vlog")
    qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$vlog")
    lost=$(awk '/Queries lost:/ {print $3}' "$vlog")
    # Latency percentiles from the per-response lines, in 10 µs buckets.
    lat=$(awk '/^> / {b = int($NF * 100000); h[b]++; n++}
        END {
            if (n == 0) { print "- -"; exit }
            c = 0; p50 = -1
            for (i = 0; i <= 1000000; i++) if (i in h) {
                c += h[i]
                if (p50 < 0 && c >= n * 0.50) p50 = i
                if (c >= n * 0.99) { p99 = i; break }
            }
            printf "%.2f %.2f", (p50 + 1) / 100, (p99 + 1) / 100
        }' "$vlog")
    cpu_us=$(awk -v t=$((after - before)) -v q="${queries:-0}" -v hz="$CLK_TCK" \
        'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / q; else print "-" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$workload" "$round" "${qps:-0}" "${lat% *}" "${lat#* }" "$cpu_us" "${lost:-?}" >> "$RAW"
    log "$name $workload r$round: ${qps:-0} q/s, p50/p99 ${lat} ms, ${cpu_us} µs CPU/query, lost ${lost:-?}$settled"
    if [ -n "$threads_before" ] && [ "${queries:-0}" -gt 0 ]; then
        # Threads of one name (the UDP loops, tokio's workers) are added up.
        join <(echo "$threads_before") <(thread_ticks "$pid") | awk -v q="$queries" -v hz="$CLK_TCK" '
            { u[$2] += $6 - $3; s[$2] += $7 - $4 }
            END { for (k in u) if (u[k] + s[k] > 0)
                printf "    %-16s user %5.2f  sys %5.2f µs/query\n", k, u[k] / hz * 1e6 / q, s[k] / hz * 1e6 / q }' | sort >&2
    fi
    rm -f "$vlog"
}

# ---------------------------------------------------------------------------
# NSD: the authoritative upstream for everyone.
# ---------------------------------------------------------------------------
cat > "$WORK/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@$PORT_NSD
  port: $PORT_NSD
  username: ""
  chroot: ""
  zonesdir: "$WORK"
  database: ""
  pidfile: "$WORK/nsd.pid"
  xfrdfile: "$WORK/xfrd.state"
  zonelistfile: "$WORK/zone.list"
  logfile: "$WORK/nsd.log"
  verbosity: 0
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "bench."
  zonefile: "bench.zone"
EOF
start nsd nsd -d -c "$WORK/nsd.conf"
wait_ready nsd "${PID[nsd]}" "$PORT_NSD"

# ---------------------------------------------------------------------------
# The servers.
# ---------------------------------------------------------------------------
sg_config() { # port repeat-secs dir
    cat <<EOF
[policy]
default_role = "bench"
node = "bench"

[roles.bench]
block = [$(printf '"%s",' illegal pornography adult gambling drugs extremism discrimination violence self-harm suicide bullying child-exploitation malware phishing hacking cryptomining piracy proxy vpn doh remote-access dating social-networking chat games streaming file-sharing advertising webmail shopping dynamic-dns url-shortener weapons cheating ai stalkerware misinformation lingerie sports news | sed 's/,$//')]

[[networks]]
cidr = "127.0.0.0/8"
role = "bench"

[listen]
dns = ["127.0.0.1:$1"]

[dns]
upstreams = ["127.0.0.1:$PORT_NSD"]
block_answer = "nxdomain"
# One load generator is one client: keep the limiter's bookkeeping, not its limit.
rate_limit_qps = 4000000
allowed_repeat_secs = $2

[store]
path = "$3/events.sqlite"
spool_dir = "$3/spool"
dead_letter = "$3/dead-letter.jsonl"
EOF
}

for name in schoolgate schoolgate-default schoolgate-nostore schoolgate-nojournal schoolgate-discard; do
    wanted "$name" || continue
    dir="$WORK/$name"
    mkdir -p "$dir"
    repeat=60
    extra=()
    case "$name" in
        schoolgate) repeat=0 ;;
        schoolgate-nostore) extra=(--discard-events --no-journal) ;;
        schoolgate-nojournal) extra=(--no-journal) ;;
        schoolgate-discard) extra=(--discard-events) ;;
    esac
    sg_config "${PORT[$name]}" "$repeat" "$dir" > "$dir/schoolgate.toml"
    # shellcheck disable=SC2086 # SG_ENV is a list of NAME=value words
    start "$name" env $SG_ENV "$SG_BIN" "$dir/schoolgate.toml" "${extra[@]}" --ut1-dir "$DATA/lists/ut1" \
        "$DATA/lists/blocklistproject/drugs.txt.gz=drugs" \
        "$DATA/lists/blocklistproject/gambling.txt.gz=gambling" \
        "$DATA/lists/blocklistproject/piracy.txt.gz=piracy" \
        "$DATA/lists/porntop/adult.txt.gz=pornography" \
        "$WORK/synthetic.txt=malware"
done

cat > "$WORK/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@${PORT[unbound]}
  port: ${PORT[unbound]}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 2
  so-reuseport: yes
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  msg-cache-size: 64m
  rrset-cache-size: 128m
  include: "$WORK/unbound-block.conf"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$PORT_NSD
EOF
wanted unbound && start unbound unbound -d -c "$WORK/unbound.conf"

cat > "$WORK/dnsmasq.conf" <<EOF
port=${PORT[dnsmasq]}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
user=root
pid-file=
server=127.0.0.1#$PORT_NSD
# dnsmasq's own advice: more than 10 000 costs more than it gains (at 100 000
# its miss mix collapsed to ~150 q/s once the cache was full). As in
# benches/compare.
cache-size=10000
dns-forward-max=1000
conf-file=$WORK/dnsmasq-block.conf
EOF
wanted dnsmasq && start dnsmasq dnsmasq -k --conf-file="$WORK/dnsmasq.conf" --log-facility=-

declare -A RSS_START=()
for name in "${SERVERS[@]}"; do
    wait_ready "$name" "${PID[$name]}" "${PORT[$name]}"
    RSS_START[$name]=$(rss_mb "${PID[$name]}")
    log "$name ready, RSS ${RSS_START[$name]} MB"
    timeout 60 dnsperf -s 127.0.0.1 -p "${PORT[$name]}" -d "$WORK/warm.txt" -n 2 "${CONCURRENCY[@]}" -t 2 > /dev/null 2>&1 || true
done
grep -h '^policy:' "$WORK"/schoolgate*.stderr | head -1 | sed 's/^/[schoolgate] /' >&2 || true

# ---------------------------------------------------------------------------
# The rounds.
# ---------------------------------------------------------------------------
PORT[nsd]=$PORT_NSD
measure nsd hit 1 "$WORK/warm.txt" "${CONCURRENCY[@]}"
for round in $(seq 1 "$ROUNDS"); do
    for name in "${SERVERS[@]}"; do measure "$name" hit "$round" "$WORK/hit.txt" "${CONCURRENCY[@]}"; done
    for name in "${SERVERS[@]}"; do measure "$name" miss "$round" "$WORK/miss$round.txt" "${CONCURRENCY[@]}" -n 1; done
    for name in "${SERVERS[@]}"; do measure "$name" 10k "$round" "$WORK/hit.txt" "${CONCURRENCY[@]}" -Q 10000; done
done

# ---------------------------------------------------------------------------
# The table: medians of the rounds.
# ---------------------------------------------------------------------------
TABLE="$WORK/table.md"
{
    echo "dnsperf -c 8 -q 200, ${ROUNDS} rounds x ${SECONDS_PER_RUN} s per server and workload (median shown), 2 cores shared by dnsperf, NSD and the servers; $TOTAL_NAMES blocked names; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
    echo
    echo "| server | workload | queries/s | p50 ms | p99 ms | server CPU µs/query | RSS MB at start / now / peak |"
    echo "|---|---|---|---|---|---|---|"
    for name in nsd "${SERVERS[@]}"; do
        for workload in hit miss 10k; do
            rss="-"
            if [ "$name" != nsd ]; then rss="${RSS_START[$name]} / $(rss_mb "${PID[$name]}") / $(hwm_mb "${PID[$name]}")"; fi
            awk -F'\t' -v n="$name" -v w="$workload" -v rss="$rss" '
                function median(a, k,   i, j, t) {
                    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                    if (k % 2) return a[(k + 1) / 2]
                    t = (a[k / 2] + a[k / 2 + 1]) / 2
                    return (t >= 100) ? sprintf("%.0f", t) : sprintf("%.2f", t)
                }
                $1 == n && $2 == w { k++; q[k] = $4; p50[k] = $5; p99[k] = $6; cpu[k] = $7 }
                END {
                    if (k == 0) exit
                    label = (n == "nsd") ? "nsd (dnsperf ceiling)" : n
                    printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, w, median(q, k), median(p50, k), median(p99, k), median(cpu, k), rss
                }' "$RAW"
        done
    done
} > "$TABLE"
for name in "${SERVERS[@]}"; do
    [[ $name == schoolgate* ]] || continue
    kill "${PID[$name]}" 2>/dev/null || true
    timeout 30 tail --pid="${PID[$name]}" -f /dev/null 2>/dev/null || true
    log "$name counters: $(tail -1 "$WORK/$name.stderr")"
done
echo
cat "$TABLE"
echo
echo "raw runs (server, workload, round, q/s, p50, p99, µs CPU/query, lost):"
cat "$RAW"
if [ -n "$OUT" ]; then cp "$TABLE" "$OUT"; fi
