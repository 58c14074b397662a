"""Servers started in the foreground, tracked by PID, and always stopped.

Every server is started in a session of its own (so its workers and helpers
share its process group), logs to a file in the work directory, and is stopped
by its PID: SIGTERM, then SIGKILL after a grace period. e2guardian ignores
SIGTERM when run with -N, so it gets SIGKILL at once and its PID file is removed
(otherwise the next start refuses to run). `stop_all()` runs on exit whatever
happened, including Ctrl-C.
"""

import os
import random
import signal
import socket
import struct
import subprocess
import time

from . import machine


class StartError(RuntimeError):
    pass


_running = []


class Server:
    def __init__(self, name, argv, log, ready, *, kill_at_once=False, pid_files=(),
                 timeout=180, env=None, cwd=None):
        """`ready` is a callable returning True once the server answers."""
        self.name, self.argv, self.log = name, list(argv), log
        self.ready, self.kill_at_once = ready, kill_at_once
        self.pid_files, self.timeout = list(pid_files), timeout
        self.env, self.cwd = env, cwd
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        for f in self.pid_files:
            if os.path.exists(f):
                os.unlink(f)
        logf = open(self.log, "ab")
        logf.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
        logf.flush()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env, cwd=self.cwd,
            )
        except OSError as e:
            raise StartError(f"{self.name}: cannot run {self.argv[0]}: {e}") from e
        finally:
            logf.close()
        _running.append(self)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise StartError(
                    f"{self.name} exited with status {self.proc.returncode} while starting; "
                    f"last lines of {self.log}:\n{tail(self.log)}")
            try:
                if self.ready():
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > self.timeout:
                raise StartError(
                    f"{self.name} did not answer within {self.timeout} s; "
                    f"last lines of {self.log}:\n{tail(self.log)}")
            time.sleep(0.1)
        self.start_secs = time.monotonic() - t0
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise StartError(
                f"{self.name} died during the run (status {self.proc.returncode}); "
                f"last lines of {self.log}:\n{tail(self.log)}")

    def stop(self):
        if self.proc is None:
            return
        # Children that left the process group (NSD's) are found by parentage,
        # before the parent goes and they are re-parented.
        family = [(p, _cmdline(p)) for p in machine.tree(self.proc.pid) if p != self.proc.pid]
        if self.proc.poll() is None:
            sig = signal.SIGKILL if self.kill_at_once else signal.SIGTERM
            _signal_group(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Helpers that outlived their parent are still in its process group.
        _signal_group(self.proc.pid, signal.SIGKILL)
        for p, cmd in family:
            if cmd and _cmdline(p) == cmd:  # still the same process
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in self.pid_files:
            if os.path.exists(f):
                os.unlink(f)
        if self in _running:
            _running.remove(self)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_all():
    for s in list(reversed(_running)):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            print(f"compare: stopping {s.name}: {e}")


def started_pids():
    return [s.pid for s in _running]


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-6000:]
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# Readiness probes.

def tcp_ready(port, host="127.0.0.1"):
    def probe():
        with socket.create_connection((host, port), timeout=0.5):
            return True
    return probe


def port_free(port, host="127.0.0.1"):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def dns_query(name, qtype=1):
    qid = random.randrange(65536)
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    return qid, header + q + struct.pack(">HH", qtype, 1)


def dns_ask(port, name, timeout=0.5):
    """(rcode, answer count) for an A query, or None on timeout."""
    qid, packet = dns_query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    rid, flags, _, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        return None
    return flags & 0xF, an


def dns_ready(port, name):
    def probe():
        return dns_ask(port, name) is not None
    return probe
