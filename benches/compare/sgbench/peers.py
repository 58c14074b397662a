"""One configuration writer per system, all fed the same shared blocklist.

Every server listens on 127.0.0.1 only, on the ports below (chosen away from the
usual ones so a developer's own squid or unbound does not collide; `cli` checks
they are free first), runs in the foreground, and writes its state and logs
under the work directory. Each `start_*` returns the started `Server`s.
"""

import glob
import gzip
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request

from . import blocklist
from .servers import Server, dns_ready, tcp_ready

PORTS = {
    "nsd": 24053,
    "schoolgate_dns": 24153,
    "unbound": 24253,
    "dnsmasq": 24353,
    "nginx": 24080,
    "nginx_tls": 24443,
    "schoolgate_proxy": 24128,
    "squid": 24328,
    "e2guardian": 24380,
    "haproxy": 24428,
    "clickhouse_http": 24123,
    "clickhouse_tcp": 24900,
    "clickhouse_interserver": 24909,
}


def _dir(work, name, owner=None):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    if owner:
        shutil.chown(d, owner, owner)
    return d


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# Origins: NSD (authoritative for bench.test) and nginx (the web server).

def start_nsd(work):
    d = _dir(work, "nsd")
    _write(os.path.join(d, "bench.test.zone"), """$ORIGIN bench.test.
$TTL 3600
@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 3600
@ IN NS ns.bench.test.
ns IN A 127.0.0.1
* IN A 192.0.2.1
""")
    conf = _write(os.path.join(d, "nsd.conf"), f"""server:
  ip-address: 127.0.0.1@{PORTS['nsd']}
  port: {PORTS['nsd']}
  username: ""
  chroot: ""
  zonesdir: "{d}"
  database: ""
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  pidfile: "{d}/nsd.pid"
  logfile: "{d}/nsd.log"
  verbosity: 0
  server-count: 1
  # NSD rate-limits per source by default: dnsperf's timeouts would be NSD's.
  rrl-ratelimit: 0
  do-ip6: no
remote-control:
  control-enable: no
zone:
  name: "bench.test"
  zonefile: "bench.test.zone"
""")
    return Server("nsd", ["nsd", "-d", "-c", conf], os.path.join(d, "stdout.log"),
                  dns_ready(PORTS["nsd"], "ready.bench.test"),
                  pid_files=[f"{d}/nsd.pid"]).start()


def web_files(work):
    """A 1 KiB HTML page (text/html: e2guardian content-scans it, as it does every
    page in a school), a 100 KiB image (image/jpeg: nobody scans it, so it
    measures forwarding; e2guardian bans `.bin` downloads by default) and a
    64 MiB file for the tunnel throughput (inside TLS, so nobody sees its name)."""
    www = _dir(work, "www")
    para = ("<p>Photosynthesis is the process by which green plants use sunlight, "
            "water and carbon dioxide to make glucose and oxygen. Year 8 revision notes "
            "for the end of term science assessment.</p>\n")
    head = "<!doctype html><html><head><title>Revision</title></head><body>\n"
    tail = "</body></html>\n"
    body = head
    while len(body) + len(para) + len(tail) <= 1024:
        body += para
    body += " " * (1024 - len(body) - len(tail)) + tail
    _write(os.path.join(www, "1k.html"), body)
    with open(os.path.join(www, "100k.jpg"), "wb") as f:
        f.write(bytes(range(256)) * 400)
    big = os.path.join(www, "big.bin")
    if not os.path.exists(big) or os.path.getsize(big) != 64 << 20:
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(64):
                f.write(block)
    return www


def tls_cert(work):
    d = _dir(work, "tls")
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
                        "-subj", "/CN=origin.bench.test", "-addext",
                        "subjectAltName=DNS:origin.bench.test,IP:127.0.0.1",
                        "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


def start_nginx(work):
    d = _dir(work, "nginx")
    www = web_files(work)
    crt, key = tls_cert(work)
    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        _dir(d, t)
    conf = _write(os.path.join(d, "nginx.conf"), f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{PORTS['nginx']} backlog=4096;
    root {www};
  }}
  server {{
    listen 127.0.0.1:{PORTS['nginx_tls']} ssl backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_session_cache off;
    root {www};
  }}
}}
""")
    return Server("nginx", ["nginx", "-p", d, "-c", conf, "-e", f"{d}/error.log"],
                  os.path.join(d, "stdout.log"), tcp_ready(PORTS["nginx"]),
                  pid_files=[f"{d}/nginx.pid"]).start()


# schoolgate.

def schoolgate_config(work, name, *, lists, dns=False, proxy=False, allowed_sample=1,
                      allowed_repeat_secs=60, keywords=True, curated=True, record=True,
                      clickhouse=False):
    """A schoolgate config: role `pupil` for 127.0.0.1 blocking the pupil
    categories; `lists` is TOML text of [[lists]] entries. `record=False` keeps
    no events at all (`[store] record = false`): the filter without monitoring.
    `clickhouse=True` sends them to the benchmark's ClickHouse server instead of
    the embedded store."""
    d = _dir(work, name)
    state = _dir(d, "state")
    wipe_state(state)
    block = ", ".join(f'"{c}"' for c in blocklist.SG_BLOCKED)
    listen = []
    if dns:
        listen.append(f'dns = ["127.0.0.1:{PORTS["schoolgate_dns"]}"]')
    if proxy:
        listen.append(f'proxy = "127.0.0.1:{PORTS["schoolgate_proxy"]}"')
    text = f"""# Written by benches/compare: the benchmark's schoolgate.
[policy]
default_role = "guest"
node = "bench"
keywords = {str(keywords).lower()}
curated_lists = {str(curated).lower()}

[listen]
{chr(10).join(listen)}

[dns]
upstreams = ["127.0.0.1:{PORTS['nsd']}"]
# The load generator is one client asking tens of thousands of names a second.
rate_limit_qps = 0
cache_entries = 200000
allowed_sample = {allowed_sample}
allowed_repeat_secs = {allowed_repeat_secs}

[proxy]
connect_ports = [443, {PORTS['nginx_tls']}]

[store]
backend = "{'clickhouse' if clickhouse else 'embedded'}"
path = "{state}/events.sqlite"
spool_dir = "{state}/spool"
dead_letter = "{state}/dead-letter.jsonl"
record = {str(record).lower()}
{_clickhouse_store(name) if clickhouse else ""}

[dashboard]
state = "{state}/dashboard.sqlite"

[roles.guest]
block = [{block}]

[roles.pupil]
block = [{block}]

[[networks]]
cidr = "127.0.0.1/32"
role = "pupil"

{lists}
"""
    return _write(os.path.join(d, "schoolgate.toml"), text)


def _clickhouse_db(name):
    """The ClickHouse database of the schoolgate config called `name`."""
    return "bench_" + re.sub(r"[^a-z0-9]", "_", name.lower())


def _clickhouse_store(name):
    return f"""[store.clickhouse]
url = "http://127.0.0.1:{PORTS['clickhouse_http']}"
database = "{_clickhouse_db(name)}"
"""


def clickhouse_query(sql):
    """One query over ClickHouse's HTTP interface; the answer's text."""
    req = urllib.request.Request(f"http://127.0.0.1:{PORTS['clickhouse_http']}/",
                                 data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


# Where this run's ClickHouse keeps its parts, and why (for the report); set by
# the first `start_clickhouse`, undone by `unmount_clickhouse_fs`.
CLICKHOUSE_FS = {"note": None, "mount": None, "image": None}


def _mount_of(path):
    """(mount point, device, file system type) of the mount holding `path`."""
    path = os.path.realpath(path)
    best = ("/", "", "")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            rest = fields[fields.index("-") + 1:]
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, rest[1], rest[0])
    return best


def _has_journal(device):
    """True when the kernel keeps a journal (a jbd2 entry) for `device`."""
    name = os.path.basename(device)
    journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    return any(j.rsplit("-", 1)[0] == name for j in journals)


def _clickhouse_data_root(d):
    """The directory ClickHouse's data goes under.

    ClickHouse writes every insert as a new part of two files per column and
    deletes parts as it merges them. On ext4 without a journal (this project's
    VM disk), creating a file scans the recently deleted inodes one by one
    (`recently_deleted` under `find_inode_bit`), and with ClickHouse's file
    churn that scan took most of the server's CPU: measured in
    `benches/RESULTS.md`, "ClickHouse's slow inserts were the disk's file
    system". No server would run ClickHouse on such a file system, so there,
    when root, the data goes on a journaled ext4 image mounted by loop for the
    run; otherwise into the work directory as it is, said in the report."""
    if CLICKHOUSE_FS["note"] is not None:
        return CLICKHOUSE_FS["mount"] or d
    _, device, fstype = _mount_of(d)
    if fstype != "ext4" or _has_journal(device):
        CLICKHOUSE_FS["note"] = f"the work directory ({fstype})"
        return d
    if os.geteuid() != 0 or shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        CLICKHOUSE_FS["note"] = ("the work directory, on ext4 without a journal (not root or no "
                                 "losetup/mkfs.ext4 to mount a journaled image): inserts slowed "
                                 "by file creation")
        return d
    image, mount = os.path.join(d, "ext4.img"), os.path.join(d, "fs")
    os.makedirs(mount, exist_ok=True)
    subprocess.run(["umount", mount], stderr=subprocess.DEVNULL, check=False)  # a killed run's
    with open(image, "wb") as f:
        f.truncate(16 << 30)  # sparse: only what ClickHouse writes takes disk space
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    subprocess.run(["mount", "-o", "loop", image, mount], check=True)
    CLICKHOUSE_FS.update(mount=mount, image=image)
    CLICKHOUSE_FS["note"] = ("a journaled ext4 image mounted by loop (the work directory's disk "
                             "is ext4 without a journal, where file creation is slow)")
    return mount


def unmount_clickhouse_fs():
    """Undoes the mount `start_clickhouse` made, once its server has stopped."""
    if CLICKHOUSE_FS["mount"]:
        subprocess.run(["umount", CLICKHOUSE_FS["mount"]], check=False)
        os.remove(CLICKHOUSE_FS["image"])
        CLICKHOUSE_FS.update(mount=None, image=None)


def start_clickhouse(work):
    """Debian's clickhouse-server on 127.0.0.1 with its own data directory: the
    event store of a trust, here on the same cores as everything else."""
    d = _dir(work, "clickhouse")
    data = os.path.join(_clickhouse_data_root(d), "data")
    shutil.rmtree(data, ignore_errors=True)
    for sub in ("tmp", "user_files", "format_schemas"):
        os.makedirs(os.path.join(data, sub), exist_ok=True)
    conf = _write(os.path.join(d, "config.xml"), f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{PORTS['clickhouse_http']}</http_port>
  <tcp_port>{PORTS['clickhouse_tcp']}</tcp_port>
  <interserver_http_port>{PORTS['clickhouse_interserver']}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
  <format_schema_path>{data}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
  <timezone>UTC</timezone>
</yandex>
""")
    _write(os.path.join(d, "users.xml"), """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
""")

    def ready():
        try:
            return clickhouse_query("SELECT 1").strip() == "1"
        except (OSError, urllib.error.URLError):
            return False

    return Server("clickhouse", ["clickhouse-server", f"--config-file={conf}"],
                  os.path.join(d, "stdout.log"), ready, cwd=d).start()


def clickhouse_events(config):
    """Rows in the ClickHouse database of the schoolgate run from `config`."""
    db = _clickhouse_db(os.path.basename(os.path.dirname(config)))
    return int(clickhouse_query(f"SELECT count() FROM {db}.events").strip())


def shared_list_toml(shared_path):
    return f"""[[lists]]
name = "shared"
format = "domains"
category = "malware"
path = "{shared_path}"
"""


def ut1_list_toml(data_dir):
    only = ", ".join(f'"{c}"' for c in blocklist.UT1_BLOCKED)
    return f"""[[lists]]
name = "ut1"
format = "ut1"
path = "{data_dir}/lists/ut1"
only = [{only}]
"""


def wipe_state(state):
    """Every start begins with an empty event store and spool."""
    for f in glob.glob(os.path.join(state, "events.sqlite*")):
        os.unlink(f)
    shutil.rmtree(os.path.join(state, "spool"), ignore_errors=True)


def spool_left(config):
    """Bytes the schoolgate run from `config` left in its spool when it stopped
    (events the store had not taken yet: replayed at the next start), from the
    pipeline's last line in its log; 0 when there is no such line."""
    path = os.path.join(os.path.dirname(config), "stdout.log")
    try:
        with open(path, errors="replace") as f:
            lines = [line for line in f if "event pipeline stopped" in line]
    except OSError:
        return 0
    m = re.search(r"spool_bytes=(\d+)", lines[-1]) if lines else None
    return int(m.group(1)) if m else 0


def stored_events(config):
    """Events in the embedded store of the schoolgate run from `config`: the
    flagged rows of `events` and the rest, many to a row, in `event_blocks`."""
    import sqlite3
    path = os.path.join(os.path.dirname(config), "state", "events.sqlite")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT (SELECT count(*) FROM events) "
            "+ (SELECT coalesce(sum(events), 0) FROM event_blocks)").fetchone()[0]
    finally:
        con.close()


def start_schoolgate(binary, config, *, dns=False, proxy=False, name="schoolgate"):
    d = os.path.dirname(config)
    wipe_state(os.path.join(d, "state"))
    if dns:
        ready = dns_ready(PORTS["schoolgate_dns"], "ready.bench.test")
    else:
        ready = tcp_ready(PORTS["schoolgate_proxy"])
    # Warnings, and the event pipeline's lines (a stats line a minute, and
    # what it left in the spool when it stopped: see spool_left).
    env = dict(os.environ, RUST_LOG="warn,schoolgate::events=info")
    s = Server(name, [binary, "run", "--config", config], os.path.join(d, "stdout.log"),
               ready, env=env)
    s.start()
    if dns and proxy:
        _wait(tcp_ready(PORTS["schoolgate_proxy"]), s)
    return s


def _wait(probe, server, timeout=60):
    import time
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        server.check_alive()
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: second listener not ready")


# DNS peers.

def start_unbound(work, derived):
    d = _dir(work, "unbound")
    conf = _write(os.path.join(d, "unbound.conf"), f"""server:
  interface: 127.0.0.1@{PORTS['unbound']}
  port: {PORTS['unbound']}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  # One thread per core, as schoolgate's runtime has.
  num-threads: 2
  so-reuseport: yes
  msg-cache-size: 64m
  rrset-cache-size: 128m
  module-config: "iterator"
  # RFC 6761: unbound answers NXDOMAIN for all of test. unless told otherwise.
  local-zone: "test." nodefault
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  include: "{derived['unbound']}"
stub-zone:
  name: "bench.test"
  stub-addr: 127.0.0.1@{PORTS['nsd']}
""")
    return Server("unbound", ["unbound", "-d", "-c", conf], os.path.join(d, "stdout.log"),
                  dns_ready(PORTS["unbound"], "ready.bench.test"),
                  pid_files=[f"{d}/unbound.pid"]).start()


def start_dnsmasq(work, derived):
    d = _dir(work, "dnsmasq")
    conf = _write(os.path.join(d, "dnsmasq.conf"), f"""port={PORTS['dnsmasq']}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
user=root
pid-file={d}/dnsmasq.pid
log-facility=-
# dnsmasq's own advice: more than 10 000 costs more than it gains.
cache-size=10000
dns-forward-max=1000
server=/bench.test/127.0.0.1#{PORTS['nsd']}
conf-file={derived['dnsmasq']}
""")
    return Server("dnsmasq", ["dnsmasq", "-k", "-C", conf], os.path.join(d, "stdout.log"),
                  dns_ready(PORTS["dnsmasq"], "ready.bench.test"),
                  pid_files=[f"{d}/dnsmasq.pid"]).start()


# Proxy peers.

def start_squid(work, derived, *, port=None, name="squid"):
    port = port or PORTS["squid"]
    d = _dir(work, "squid", owner="proxy")
    conf = _write(os.path.join(d, "squid.conf"), f"""# Written by benches/compare.
http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
cache_store_log none
logfile_rotate 0
coredump_dir {d}
cache_effective_user proxy
# A filter, not a cache: every request goes to the origin, as through schoolgate.
cache deny all
cache_mem 8 MB
max_filedescriptors 16384
pinger_enable off
shutdown_lifetime 1 seconds
dns_v4_first on
acl blocked dstdomain "{derived['squid']}"
acl localnet src 127.0.0.0/8
acl CONNECT method CONNECT
http_access deny blocked
http_access allow localnet
http_access deny all
""")
    return Server(name, ["squid", "-N", "-f", conf], os.path.join(d, "stdout.log"),
                  tcp_ready(port), pid_files=[f"{d}/squid.pid"]).start()


def start_haproxy(work, threads):
    """HAProxy in front of nginx with `threads` threads, filtering nothing: what a
    fast general-purpose proxy gets through the same load generator, origin and
    cores. It answers the absolute-form requests wrk sends a proxy, and keeps
    its connections to nginx alive as schoolgate and Squid do."""
    d = _dir(work, "haproxy")
    conf = _write(os.path.join(d, f"haproxy-{threads}.cfg"), f"""# Written by benches/compare.
global
    nbthread {threads}
    # The file-descriptor limit here is 20,000: HAProxy wants eight per connection.
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:{PORTS['haproxy']}
    default_backend nginx
backend nginx
    server nginx 127.0.0.1:{PORTS['nginx']}
""")
    return Server(f"haproxy {threads}", ["haproxy", "-db", "-f", conf],
                  os.path.join(d, "stdout.log"), tcp_ready(PORTS["haproxy"])).start()


def start_e2guardian(work, shared_path):
    """e2guardian in front of Squid (its usual deployment). Its configuration is
    Debian's, copied and pointed at the work directory and the shared list."""
    d = os.path.join(work, "e2guardian")
    if os.path.exists(d):
        shutil.rmtree(d)
    shutil.copytree("/etc/e2guardian", d)
    for path in glob.glob(os.path.join(d, "**", "*"), recursive=True):
        if os.path.isfile(path) and not path.endswith((".gif", ".swf")):
            try:
                with open(path) as f:
                    text = f.read()
            except UnicodeDecodeError:
                continue
            if "/etc/e2guardian" in text:
                _write(path, text.replace("/etc/e2guardian", d))
    # The banned site list: the shared list (a site entry covers subdomains).
    shutil.copyfile(shared_path, os.path.join(d, "lists", "bannedsitelist"))
    main = os.path.join(d, "e2guardian.conf")
    with open(main) as f:
        text = f.read()
    settings = {
        "filterip": "127.0.0.1",
        "filterports": str(PORTS["e2guardian"]),
        "proxyip": "127.0.0.1",
        "proxyport": str(PORTS["squid"]),
        "pidfilename": f"'{d}/e2guardian.pid'",
        "loglocation": f"'{d}/access.log'",
        "nodaemon": "on",
        "filecachedir": f"'{d}'",
    }
    for key, value in settings.items():
        text, n = re.subn(rf"(?m)^#?\s*{key}\s*=.*$", f"{key} = {value}", text, count=1)
        if n == 0:
            text += f"\n{key} = {value}\n"
    # Transparent HTTPS would listen on 8443: not wanted here.
    text = re.sub(r"(?m)^transparenthttpsport\s*=.*$", "", text)
    _write(main, text)
    # e2guardian drops to its own user before opening its log.
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            shutil.chown(os.path.join(root, n), "e2guardian", "e2guardian")
    shutil.chown(d, "e2guardian", "e2guardian")
    return Server("e2guardian", ["e2guardian", "-N", "-c", main],
                  os.path.join(d, "stdout.log"), tcp_ready(PORTS["e2guardian"]),
                  kill_at_once=True, pid_files=[f"{d}/e2guardian.pid"]).start()


# squidGuard (the classifier workload).

def squidguard_setup(work, data_dir):
    """squidGuard's db from the UT1 categories the pupils' role blocks. Returns
    the config path. The Berkeley DB files are built once (`-C all`)."""
    d = _dir(work, "squidguard")
    db = _dir(d, "db")
    _dir(d, "log")
    dests = []
    for cat in blocklist.UT1_BLOCKED:
        lines = []
        for kind, suffix in (("domains", ".txt.gz"), ("urls", ".urls.txt.gz")):
            src = os.path.join(data_dir, "lists", "ut1", cat + suffix)
            if not os.path.exists(src):
                continue
            cd = _dir(db, cat)
            dst = os.path.join(cd, kind)
            if not os.path.exists(dst):
                with gzip.open(src, "rb") as fi, open(dst, "wb") as fo:
                    shutil.copyfileobj(fi, fo)
            lines.append(f"  {'domainlist' if kind == 'domains' else 'urllist'} {cat}/{kind}")
        if lines:
            dests.append((cat, lines))
    text = f"dbhome {db}\nlogdir {d}/log\n\n"
    for cat, lines in dests:
        text += f"dest {cat} {{\n" + "\n".join(lines) + "\n}\n\n"
    text += "acl {\n  default {\n    pass " + " ".join(f"!{c}" for c, _ in dests) + " all\n"
    text += "    redirect http://blocked.bench.test/?url=%u\n  }\n}\n"
    conf = _write(os.path.join(d, "squidGuard.conf"), text)
    if not glob.glob(os.path.join(db, "*", "*.db")):
        r = subprocess.run(["squidGuard", "-c", conf, "-C", "all"], capture_output=True,
                           text=True, timeout=1200)
        if r.returncode != 0 or not glob.glob(os.path.join(db, "*", "*.db")):
            raise RuntimeError(f"squidGuard -C all failed ({r.returncode}): {r.stderr[-2000:]}")
    return conf
