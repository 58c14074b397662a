"""What /proc says about processes and the machine.

Server CPU is read from /proc/PID/stat (utime + stime of every process in the
server's tree, plus what the root reaped from children), so it counts only the
server, whatever else runs on the same two cores. Peak RSS is VmHWM, summed over
the tree (nginx and squid run more than one process).
"""

import os
import platform
import subprocess

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _children():
    """Map of ppid -> [pid] over every live process."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid):
    """`pid` and its live descendants."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    """CPU time (user + system) of the process trees rooted at `pids`, in seconds.
    The roots also count the CPU of children they have reaped."""
    total = 0
    for root in pids:
        for p in tree(root):
            try:
                f = _stat_fields(p)
            except OSError:
                continue
            # Fields after the name: state=0, ppid=1, ... utime=11, stime=12,
            # cutime=13, cstime=14.
            total += int(f[11]) + int(f[12])
            if p == root:
                total += int(f[13]) + int(f[14])
    return total / TICK


def peak_rss_kib(pids):
    """Sum of VmHWM over the process trees rooted at `pids`, in KiB."""
    total = 0
    for root in pids:
        for p in tree(root):
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                continue
    return total


def machine_busy_seconds():
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / TICK


def loadavg():
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return float(one), float(five), float(fifteen)


def cores():
    return os.cpu_count() or 1


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def package_version(pkg):
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
    )
    return r.stdout.strip() if r.returncode == 0 else "?"


class Window:
    """One measurement window: server CPU, machine CPU and wall time between
    `start()` and `stop()`."""

    def __init__(self, server_pids, upstream_pids=()):
        self.server_pids = list(server_pids)
        self.upstream_pids = list(upstream_pids)

    def start(self):
        import time

        self.t0 = time.monotonic()
        self.cpu0 = cpu_seconds(self.server_pids)
        self.up0 = cpu_seconds(self.upstream_pids)
        self.busy0 = machine_busy_seconds()
        return self

    def stop(self):
        import time

        self.elapsed = time.monotonic() - self.t0
        self.server_cpu = cpu_seconds(self.server_pids) - self.cpu0
        self.upstream_cpu = cpu_seconds(self.upstream_pids) - self.up0
        self.busy = machine_busy_seconds() - self.busy0
        self.load1 = loadavg()[0]
        return self
