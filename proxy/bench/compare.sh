#!/usr/bin/env bash
# Load benchmark: schoolgate's proxy side by side with Squid 5.7 and e2guardian 5.3
# (Debian packages), all with the same blocklist, all against one local nginx.
#
#   proxy/bench/compare.sh            # 30 s per run, 50 connections
#   QUICK=1 proxy/bench/compare.sh    # 10 s per run
#   DUR=30 CONNS=50 REPEAT=3 proxy/bench/compare.sh
#   SYSTEMS="schoolgate" KEEP=1 proxy/bench/compare.sh   # one system, keep the work dir
#
# Measures, per system and workload (1 KiB and 100 KiB responses through the
# proxy with wrk, absolute-form requests via a Lua script): requests/s, p50/p99
# latency, proxy CPU time per request (utime+stime from /proc/PID/stat over the
# run, divided by the requests wrk completed) and peak RSS (VmHWM). Then CONNECT
# tunnel throughput: one bulk transfer through `curl -p` against the same
# transfer direct. Everything runs on 127.0.0.1, every server in the foreground
# started by this script and stopped by PID on exit. schoolgate runs with its
# event pipeline on (every request is an event into SQLite), keyword rules on;
# `schoolgate-nojournal` is the same with `[store] journal = false` (no per-event
# write-ahead journal on the request path).
#
# The blocklist is built from /work/shared/data (or $DATA): UT1 gambling and the
# Block List Project gambling, drugs and piracy lists, deduplicated.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${DATA:-$ROOT/../shared/data}"
[ -d "$DATA" ] || DATA=/work/shared/data
DUR="${DUR:-30}"
CONNS="${CONNS:-50}"
REPEAT="${REPEAT:-1}"
[ -n "${QUICK:-}" ] && DUR=10
NGINX_PORT=18080
SG_PORT=13130
SQUID_PORT=13128
E2G_PORT=18082

need() { command -v "$1" >/dev/null 2>&1; }
for pkg in wrk:wrk nginx:nginx squid:squid e2guardian:e2guardian curl:curl; do
  bin="${pkg%%:*}"
  if ! need "$bin" && ! [ -x "/usr/sbin/$bin" ]; then
    echo "installing ${pkg#*:}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg#*:}" >/dev/null
  fi
done
export PATH="$PATH:/usr/sbin"

# Lowercase only: e2guardian lowercases the paths in its list files.
WORK="/tmp/sg-bench-$$-$(date +%s)"
mkdir -m 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  rm -f "$WORK/e2g.pid"
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 1 "${2:-300}"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  return 1
}

echo "== building schoolgate (release)" >&2
SG_BIN="$ROOT/target/release/examples/serve"
if ! (cd "$ROOT" && cargo build --release -q -p schoolgate-proxy --example serve); then
  [ -x "$SG_BIN" ] || exit 1
  echo "   build failed: using the existing $SG_BIN" >&2
fi

echo "== blocklist" >&2
{
  zcat "$DATA/lists/ut1/gambling.txt.gz"
  for l in gambling drugs piracy; do zcat "$DATA/lists/blocklistproject/$l.txt.gz"; done
} | tr 'A-Z' 'a-z' | sed 's/\.$//' | grep -E '^[a-z0-9._-]+$' | sort -u >"$WORK/blocked-all.txt"
# Squid refuses a list holding both a domain and one of its subdomains: keep the
# parents only (they cover the subdomains in all three systems).
awk -F. 'NR == FNR { set[$0] = 1; next }
  { p = $0; drop = 0
    while ((i = index(p, ".")) > 0) { p = substr(p, i + 1); if (p in set) { drop = 1; break } }
    if (!drop) print }' "$WORK/blocked-all.txt" "$WORK/blocked-all.txt" >"$WORK/blocked.txt"
BLOCKED_N=$(wc -l <"$WORK/blocked.txt")
BLOCKED_ONE=$(grep -m1 -E '^[a-z0-9-]+\.[a-z]+$' "$WORK/blocked.txt")
echo "   $BLOCKED_N domains (e.g. $BLOCKED_ONE)" >&2

# ---------------------------------------------------------------- nginx origin
mkdir -p "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'a' >"$WORK/www/1k.html"
head -c 102400 /dev/zero | tr '\0' 'b' >"$WORK/www/100k.bin"
truncate -s 1G "$WORK/www/big.bin"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  types { text/html html; application/octet-stream bin; }
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
EOF
mkdir -p "$WORK/nginx-tmp"
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
PIDS+=($!)
wait_port $NGINX_PORT

# ------------------------------------------------------------- wrk Lua script
cat >"$WORK/abs.lua" <<'EOF'
-- A forward proxy needs absolute-form request lines.
wrk.path = os.getenv("SG_TARGET")
wrk.headers["Host"] = os.getenv("SG_HOST")
EOF

# ----------------------------------------------------------- server starters
# start_schoolgate [JOURNAL]: JOURNAL=false turns off the event pipeline's
# per-event write-ahead journal (events still go to SQLite through the queue).
start_schoolgate() {
  rm -rf "$WORK/sg"
  mkdir -p "$WORK/sg"
  cat >"$WORK/sg/school.toml" <<EOF
[policy]
default_role = "guest"

[roles.pupil]
block = ["gambling", "pornography"]
safesearch = "strict"

[roles.guest]
block = ["gambling", "pornography"]

[[networks]]
cidr = "127.0.0.0/8"
role = "pupil"

[listen]
proxy = "127.0.0.1:$SG_PORT"

[proxy]
connect_ports = [443, $NGINX_PORT]
max_connections_per_client = 10000

[store]
path = "$WORK/sg/events.sqlite"
spool_dir = "$WORK/sg/spool"
dead_letter = "$WORK/sg/dead-letter.jsonl"
journal = ${1:-true}

[[lists]]
name = "bench/blocked"
format = "domains"
path = "$WORK/blocked.txt"
category = "gambling"
EOF
  "$SG_BIN" "$WORK/sg/school.toml" 2>"$WORK/sg/log" &
  PID=$!
  PIDS+=($PID)
  wait_port $SG_PORT
}

start_squid() {
  sed 's/^/./' "$WORK/blocked.txt" >"$WORK/squid-blocked.txt"
  cat >"$WORK/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $WORK/squid.pid
cache_log $WORK/squid-cache.log
access_log none
cache deny all
cache_mem 8 MB
max_filedescriptors 16384
coredump_dir $WORK
shutdown_lifetime 1 seconds
acl blocked dstdomain "$WORK/squid-blocked.txt"
acl SSL_ports port 443 $NGINX_PORT
acl CONNECT method CONNECT
http_access deny blocked
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
EOF
  chmod 644 "$WORK"/squid*
  squid -N -f "$WORK/squid.conf" 2>"$WORK/squid-stderr.log" &
  PID=$!
  PIDS+=($PID)
  wait_port $SQUID_PORT
}

start_e2guardian() {
  cp -r /etc/e2guardian "$WORK/e2g"
  grep -rl /etc/e2guardian "$WORK/e2g" | xargs sed -i "s#/etc/e2guardian#$WORK/e2g#g"
  local conf="$WORK/e2g/e2guardian.conf"
  sed -i -e "s/^filterip =.*/filterip = 127.0.0.1/" \
    -e "s/^filterports =.*/filterports = $E2G_PORT/" \
    -e "s/^transparenthttpsport/#transparenthttpsport/" \
    -e "s/^loglevel =.*/loglevel = 0/" \
    -e "s/^nologger =.*/nologger = on/" \
    -e "s/^nodaemon =.*/nodaemon = on/" "$conf"
  echo "pidfilename = '$WORK/e2g.pid'" >>"$conf"
  cat "$WORK/blocked.txt" >>"$WORK/e2g/lists/bannedsitelist"
  chmod -R a+rX "$WORK/e2g"
  mkdir -p /var/log/e2guardian
  e2guardian -N -c "$conf" >"$WORK/e2g-stderr.log" 2>&1 &
  PID=$!
  PIDS+=($PID)
  wait_port $E2G_PORT 900 || { tail -5 "$WORK/e2g-stderr.log" >&2; return 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# run_wrk NAME PROXYPORT|direct PATH -> one table row
run_wrk() {
  local name=$1 port=$2 path=$3 out
  local url="http://127.0.0.1:$NGINX_PORT$path"
  local before after
  [ "$port" = direct ] || before=$(cpu_ticks "$PID")
  if [ "$port" = direct ]; then
    out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$url")
  else
    out=$(SG_TARGET="$url" SG_HOST="127.0.0.1:$NGINX_PORT" \
      wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$WORK/abs.lua" "http://127.0.0.1:$port")
  fi
  local rps p50 p99 total errs cpu rss
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  if [ "$port" = direct ]; then
    cpu="-"
    rss="-"
  else
    after=$(cpu_ticks "$PID")
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$total" \
      'BEGIN { if (n > 0) printf "%.0f", (a - b) / t / n * 1e6; else print "-" }')
    rss=$(( $(hwm_kb "$PID") / 1024 ))
  fi
  printf "| %s | %s | %s | %s / %s | %s µs | %s MB |%s\n" "$name" "${path#/}" "$rps" "$p50" "$p99" \
    "$cpu" "$rss" "${errs:+ non-2xx: $errs}"
}

connect_mbps() {
  local port=$1 speed
  if [ "$port" = direct ]; then
    speed=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$NGINX_PORT/big.bin")
  else
    speed=$(curl -s -p -x "http://127.0.0.1:$port" -o /dev/null -w '%{speed_download}' \
      "http://127.0.0.1:$NGINX_PORT/big.bin")
  fi
  awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1048576 }'
}

sanity() {
  local name=$1 port=$2 ok blocked
  ok=$(curl -s -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$port" "http://127.0.0.1:$NGINX_PORT/1k.html")
  blocked=$(curl -s -x "http://127.0.0.1:$port" "http://$BLOCKED_ONE/" -o "$WORK/blocked-$name.html" -w '%{http_code}')
  echo "   $name: allowed -> $ok, http://$BLOCKED_ONE/ -> $blocked ($(grep -o -i -m1 'blocked\|denied\|access has been' "$WORK/blocked-$name.html" | head -1))" >&2
}

stop_current() {
  kill "$PID" 2>/dev/null || true
  sleep 1
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -f "$WORK/e2g.pid"
}

ROWS=()
CONNECT_ROWS=()
echo "== direct to nginx" >&2
for _ in $(seq 1 "$REPEAT"); do
  ROWS+=("$(run_wrk "nginx direct" direct /1k.html)")
  ROWS+=("$(run_wrk "nginx direct" direct /100k.bin)")
done
DIRECT_MBPS=$(connect_mbps direct)
CONNECT_ROWS+=("| direct (no proxy) | $DIRECT_MBPS MB/s | 100% |")

for sys in ${SYSTEMS:-schoolgate schoolgate-nojournal squid e2guardian}; do
  echo "== $sys" >&2
  started=0
  case $sys in
    schoolgate) start_schoolgate true && started=1; port=$SG_PORT ;;
    schoolgate-nojournal) start_schoolgate false && started=1; port=$SG_PORT ;;
    squid) start_squid && started=1; port=$SQUID_PORT ;;
    e2guardian) start_e2guardian && started=1; port=$E2G_PORT ;;
  esac
  if [ $started = 0 ]; then
    echo "   $sys did not start: skipped" >&2
    ROWS+=("| $sys | - | did not start | - | - | - |")
    stop_current
    continue
  fi
  sanity "$sys" "$port"
  for _ in $(seq 1 "$REPEAT"); do
    ROWS+=("$(run_wrk "$sys" "$port" /1k.html)")
    ROWS+=("$(run_wrk "$sys" "$port" /100k.bin)")
  done
  mbps=$(connect_mbps "$port")
  CONNECT_ROWS+=("| $sys | $mbps MB/s | $(awk -v a="$mbps" -v b="$DIRECT_MBPS" 'BEGIN { printf "%.0f%%", a / b * 100 }') |")
  stop_current
  if [ "${sys%%-*}" = schoolgate ]; then
    echo "   $sys $(grep -o 'stats.*' "$WORK/sg/log" | cut -c1-300)" >&2
  fi
done

echo
echo "wrk -t2 -c$CONNS -d${DUR}s, $BLOCKED_N blocked domains, $(nproc) cores, $(date -u +%F)"
echo
echo "| system | response | req/s | p50 / p99 | proxy CPU per request | peak RSS |"
echo "|---|---|---|---|---|---|"
printf "%s\n" "${ROWS[@]}"
echo
echo "CONNECT tunnel throughput (one 1 GiB transfer, curl -p):"
echo
echo "| system | throughput | vs direct |"
echo "|---|---|---|"
printf "%s\n" "${CONNECT_ROWS[@]}"
