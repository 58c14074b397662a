"""sgbench: schoolgate side by side with Squid, e2guardian, squidGuard, unbound and dnsmasq.

# Layout
- `cli.py`: the command line and the order of the run (install, build, lists, workloads, report)
- `machine.py`: what /proc says: process CPU and peak RSS, machine CPU, load average, model
- `servers.py`: starting servers in the foreground by PID, readiness, stopping them all
- `blocklist.py`: the shared blocklist (real lists + synthetic extension), query and URL files
- `peers.py`: one configuration writer per system, all from the shared blocklist
- `workloads.py`: classifier, DNS, HTTP proxy, CONNECT, logging cost
- `tunnel_client.py`: the CONNECT load generator (run as a subprocess, so its CPU is its own)
- `report.py`: medians over repetitions, the table, the section appended to RESULTS.md
"""
