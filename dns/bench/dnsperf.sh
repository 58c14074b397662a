#!/usr/bin/env bash
# Side-by-side DNS benchmark: schoolgate's DNS filter, unbound and dnsmasq, all
# with the same 1 M-name blocklist and the same local authoritative upstream
# (NSD), driven by dnsperf on this machine.
#
#   dns/bench/dnsperf.sh [--quick] [--duration SECONDS] [--out FILE]
#
# Workloads, per server:
#   hit    cache-hit-heavy: 90 % of 1 000 names already cached, 10 % blocked names
#   miss   cache-miss-heavy: 90 % never-seen names (an NSD wildcard), 10 % blocked
#   10k    the hit mix at a fixed 10 000 queries/s, for latency without saturation
# Reported: queries/s, p50/p99 latency (from dnsperf -v lines), the server's CPU
# time per query (utime+stime from /proc/PID/stat before and after), RSS.
#
# Every server runs in the foreground, bound to 127.0.0.1 only, and is stopped
# by PID when the script ends (trap), however it ends. Every step is bounded
# by `timeout`. Needs: dnsperf nsd unbound dnsmasq-base python3 (Debian), and
# builds schoolgate's `bench_filter` example in release mode.
set -euo pipefail

QUICK=0
DURATION=30
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; DURATION=10; shift ;;
        --duration) DURATION="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "usage: $0 [--quick] [--duration SECONDS] [--out FILE]" >&2; exit 2 ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${SCHOOLGATE_DATA:-$ROOT/../shared/data}"
[ -d "$DATA/lists" ] || DATA=/work/shared/data
TOTAL_NAMES=1000000
HIT_NAMES=1000
PORT_NSD=15390
PORT_SG=15391
PORT_UNBOUND=15392
PORT_DNSMASQ=15393
PORT_SG_SAMPLED=15394
CONCURRENCY="-c 8 -q 200"
CLK_TCK=$(getconf CLK_TCK)

for tool in dnsperf nsd unbound dnsmasq python3 dig; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y dnsperf nsd unbound dnsmasq-base bind9-dnsutils python3" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/schoolgate-dnsbench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || true
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
log() { echo "[$(date +%T)] $*" >&2; }

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
timeout 600 python3 - "$DATA" "$WORK" "$TOTAL_NAMES" "$HIT_NAMES" "$DURATION" <<'PY'
import gzip, os, random, re, sys
data, work, total, hits, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
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
# Enough never-seen names for the longest run at 120k queries/s, read once.
with open(os.path.join(work, "miss.txt"), "w") as fh:
    for i in range(duration * 120000):
        fh.write(blocked() if random.random() < 0.1 else f"m{i}x{random.randrange(1 << 30):x}.miss.bench A\n")
print(f"blocklist: {real} names from the shared lists + {len(synthetic)} synthetic = {len(allnames)}", file=sys.stderr)
PY

# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

wait_ready() { # port name pid
    local port=$1 name=$2 pid=$3
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || { log "$name died while starting"; return 1; }
        if dig @127.0.0.1 -p "$port" +time=1 +tries=1 h0.hit.bench A 2>/dev/null | grep -q "status: NOERROR"; then
            return 0
        fi
        sleep 0.5
    done
    log "$name did not become ready"; return 1
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# run_dnsperf name pid port workload file extra-args...
run_dnsperf() {
    local name=$1 pid=$2 port=$3 workload=$4 file=$5; shift 5
    local vlog="$WORK/$name-$workload.log" before after queries qps lat cpu_us
    before=$(cpu_ticks "$pid")
    timeout $((DURATION + 60)) dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -t 2 -v "$@" > "$vlog" 2>&1 || true
    after=$(cpu_ticks "$pid")
    queries=$(awk '/Queries completed:/ {print $3}' "$vlog")
    qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$vlog")
    lost=$(awk '/Queries lost:/ {print $3}' "$vlog")
    lat=$(grep '^> ' "$vlog" | awk '{print $NF}' | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "- -"; exit} p50=a[int(NR*0.50)+1]; p99=a[int(NR*0.99)+1]; printf "%.2f %.2f", p50*1000, p99*1000}')
    cpu_us=$(awk -v t=$((after - before)) -v q="${queries:-0}" -v hz="$CLK_TCK" 'BEGIN { if (q>0) printf "%.1f", t/hz*1e6/q; else print "-" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$workload" "${qps:-0}" ${lat} "$cpu_us" "$(rss_mb "$pid")" "$(hwm_mb "$pid")" "${lost:-?}" >> "$RESULTS"
    log "$name $workload: ${qps:-0} q/s, p50/p99 ${lat} ms, ${cpu_us} µs CPU/query, RSS $(rss_mb "$pid") MB, lost ${lost:-?}"
    rm -f "$vlog"
}

bench_server() { # name pid port
    local name=$1 pid=$2 port=$3
    timeout 60 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/warm.txt" -n 2 -c 8 -q 200 -t 2 > /dev/null 2>&1 || true
    run_dnsperf "$name" "$pid" "$port" hit "$WORK/hit.txt" $CONCURRENCY
    run_dnsperf "$name" "$pid" "$port" miss "$WORK/miss.txt" $CONCURRENCY -n 1
    run_dnsperf "$name" "$pid" "$port" 10k "$WORK/hit.txt" $CONCURRENCY -Q 10000
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    timeout 30 tail --pid="$1" -f /dev/null 2>/dev/null || kill -9 "$1" 2>/dev/null || true
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
nsd -d -c "$WORK/nsd.conf" &
NSD_PID=$!
PIDS+=("$NSD_PID")
wait_ready "$PORT_NSD" nsd "$NSD_PID"
log "nsd ready; measuring dnsperf's own ceiling against it"
run_dnsperf nsd-direct "$NSD_PID" "$PORT_NSD" hit "$WORK/warm.txt" $CONCURRENCY

# ---------------------------------------------------------------------------
# schoolgate.
# ---------------------------------------------------------------------------
sg_config() { # port sample dir
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
rate_limit_qps = 1000000000
allowed_sample = $2

[store]
path = "$3/events.sqlite"
spool_dir = "$3/spool"
dead_letter = "$3/dead-letter.jsonl"
EOF
}

run_schoolgate() { # label port sample
    local label=$1 port=$2 sample=$3 dir="$WORK/$1"
    mkdir -p "$dir"
    sg_config "$port" "$sample" "$dir" > "$dir/schoolgate.toml"
    log "starting $label (allowed_sample = $sample)"
    "$SG_BIN" "$dir/schoolgate.toml" --ut1-dir "$DATA/lists/ut1" \
        "$DATA/lists/blocklistproject/drugs.txt.gz=drugs" \
        "$DATA/lists/blocklistproject/gambling.txt.gz=gambling" \
        "$DATA/lists/blocklistproject/piracy.txt.gz=piracy" \
        "$DATA/lists/porntop/adult.txt.gz=pornography" \
        "$WORK/synthetic.txt=malware" > "$dir/stdout" 2> "$dir/stderr" &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$port" "$label" "$pid"
    log "$label: $(grep -m1 '^policy:' "$dir/stderr"), RSS $(rss_mb "$pid") MB"
    bench_server "$label" "$pid" "$port"
    stop "$pid"
    log "$label counters: $(tail -1 "$dir/stderr")"
    if [ -f "$dir/events.sqlite" ]; then
        log "$label events stored: $(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('select count(*) from events').fetchone()[0])" "$dir/events.sqlite" 2>/dev/null || echo '?')"
    fi
}

run_schoolgate schoolgate "$PORT_SG" 1
run_schoolgate schoolgate-sampled "$PORT_SG_SAMPLED" 100

# ---------------------------------------------------------------------------
# unbound.
# ---------------------------------------------------------------------------
cat > "$WORK/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$PORT_UNBOUND
  port: $PORT_UNBOUND
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
log "starting unbound (loading $TOTAL_NAMES local zones)"
unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.log" 2>&1 &
UNBOUND_PID=$!
PIDS+=("$UNBOUND_PID")
wait_ready "$PORT_UNBOUND" unbound "$UNBOUND_PID"
log "unbound ready, RSS $(rss_mb "$UNBOUND_PID") MB"
bench_server unbound "$UNBOUND_PID" "$PORT_UNBOUND"
stop "$UNBOUND_PID"

# ---------------------------------------------------------------------------
# dnsmasq.
# ---------------------------------------------------------------------------
cat > "$WORK/dnsmasq.conf" <<EOF
port=$PORT_DNSMASQ
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
user=root
pid-file=
server=127.0.0.1#$PORT_NSD
cache-size=100000
conf-file=$WORK/dnsmasq-block.conf
EOF
log "starting dnsmasq"
dnsmasq -k --conf-file="$WORK/dnsmasq.conf" --log-facility=- > "$WORK/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
PIDS+=("$DNSMASQ_PID")
wait_ready "$PORT_DNSMASQ" dnsmasq "$DNSMASQ_PID"
log "dnsmasq ready, RSS $(rss_mb "$DNSMASQ_PID") MB"
bench_server dnsmasq "$DNSMASQ_PID" "$PORT_DNSMASQ"
stop "$DNSMASQ_PID"

# ---------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------
TABLE="$WORK/table.md"
{
    echo "dnsperf $CONCURRENCY, ${DURATION} s per run, 2 cores shared by dnsperf, NSD and the server; $TOTAL_NAMES blocked names"
    echo
    echo "| server | workload | queries/s | p50 ms | p99 ms | server CPU µs/query | RSS MB (peak) | lost |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s (%s) | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$RESULTS"
} > "$TABLE"
cat "$TABLE"
if [ -n "$OUT" ]; then cp "$TABLE" "$OUT"; fi
