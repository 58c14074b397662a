"""The CONNECT load generator: `python3 -m sgbench.tunnel_client MODE ...`.

Runs as a process of its own so the harness can count its CPU apart from the
servers'. Prints one JSON object.

- `bulk`: each thread opens one tunnel (CONNECT, then TLS to nginx) or a direct
  TLS connection, and downloads /big.bin (64 MiB) over and over on it until the
  time is up. An op is one MiB moved.
- `setup`: each thread, in a loop: new TCP connection, CONNECT, TLS handshake,
  GET /1k.html, close. An op is one whole tunnel; its latency is measured.
"""

import argparse
import json
import socket
import ssl
import sys
import threading
import time


def _read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the end of the response head")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("response head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def open_tls(proxy, target, ctx, timeout):
    if proxy:
        raw = socket.create_connection(proxy, timeout=timeout)
        host = f"{target[0]}:{target[1]}"
        raw.sendall(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head, rest = _read_head(raw)
        status = head.split(" ", 2)[1] if " " in head else "?"
        if status != "200":
            raw.close()
            raise ConnectionError(f"CONNECT answered {head.splitlines()[0]!r}")
        if rest:
            raise ConnectionError("bytes after the CONNECT answer")
    else:
        raw = socket.create_connection(target, timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname="origin.bench.test")


def get(sock, path, close, buf):
    conn = "close" if close else "keep-alive"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: origin.bench.test\r\nConnection: {conn}\r\n\r\n".encode())
    head, rest = _read_head(sock)
    status = head.split(" ", 2)[1]
    if status != "200":
        raise ConnectionError(f"GET {path} answered {head.splitlines()[0]!r}")
    length = None
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None:
        raise ConnectionError("no Content-Length")
    got = len(rest)
    view = memoryview(buf)
    while got < length:
        n = sock.recv_into(view, min(len(buf), length - got))
        if n == 0:
            raise ConnectionError("closed mid-body")
        got += n
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bulk", "setup"])
    ap.add_argument("--proxy", help="host:port of the proxy; direct when absent")
    ap.add_argument("--target", required=True, help="host:port of the TLS origin")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5)
    args = ap.parse_args()
    proxy = None
    if args.proxy:
        h, p = args.proxy.rsplit(":", 1)
        proxy = (h, int(p))
    th, tp = args.target.rsplit(":", 1)
    target = (th, int(tp))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + args.duration
    lock = threading.Lock()
    totals = {"bytes": 0, "ops": 0, "errors": 0, "first_error": None}
    latencies = []

    def error(e):
        with lock:
            totals["errors"] += 1
            if totals["first_error"] is None:
                totals["first_error"] = f"{type(e).__name__}: {e}"

    def bulk():
        buf = bytearray(1 << 20)
        moved = 0
        try:
            s = open_tls(proxy, target, ctx, 10)
            while time.monotonic() < deadline:
                moved += get(s, "/big.bin", False, buf)
            s.close()
        except Exception as e:  # reported, and the harness fails the run on it
            error(e)
        with lock:
            totals["bytes"] += moved

    def setup():
        buf = bytearray(1 << 16)
        mine = []
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                s = open_tls(proxy, target, ctx, 10)
                get(s, "/1k.html", True, buf)
                s.close()
            except Exception as e:
                error(e)
                continue
            mine.append(time.monotonic() - t0)
        with lock:
            latencies.extend(mine)
            totals["ops"] += len(mine)

    work = bulk if args.mode == "bulk" else setup
    t0 = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    out = dict(totals, elapsed=elapsed)
    if args.mode == "bulk":
        out["ops"] = totals["bytes"] / (1 << 20)
    else:
        latencies.sort()
        if latencies:
            out["p50_ms"] = latencies[len(latencies) // 2] * 1000
            out["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
