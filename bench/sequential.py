"""Baseline (a): a sequential, qmail-remote-style connector (never part of mxf-remote).

``python bench/sequential.py HOST``, with ``MXF_QMAIL`` and ``MXF_NAMESERVERS`` as for
mxf-remote.  What qmail-remote does, step by step and one thing at a time:

* a blocking MX lookup (UDP to the first nameserver, like libc's ``res_query``);
* for each exchanger in preference order: its AAAA, then its A (blocking, one after
  the other);
* for each protocol the exchanger's MXPS slice allows (``control/protocols``, the same
  rule as mxf-remote, so that the MXPS scenario compares like with like), each address
  in turn: a blocking ``connect`` with the whole per-address timeout
  (``control/timeoutconnect`` when the file exists, else 5 s instead of qmail's 60 so
  that a benchmark finishes).

On the first connection it prints ``{"handoff": <CLOCK_MONOTONIC seconds>, ...}`` and
exits 0: the moment qmail-remote would start speaking SMTP.  Nothing connected: exit 1.
Imports are stdlib only (plus the test suite's DNS wire helper), so its start-up is
much cheaper than any asyncio program's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.infra.dnswire import query_udp

DEFAULT_TIMEOUT = 5.0


def nameserver() -> tuple[str, int]:
    """The first server of ``MXF_NAMESERVERS`` (``ip:port`` or ``[v6]:port``)."""
    first = os.environ["MXF_NAMESERVERS"].split(",")[0].strip()
    if first.startswith("["):
        host, _, port = first[1:].partition("]:")
        return host, int(port or 53)
    host, _, port = first.partition(":")
    return host, int(port or 53)


def protocols(home: str) -> list[tuple[int, int]]:
    """``(port, slice)`` of each line of control/protocols."""
    found = []
    with open(os.path.join(home, "control", "protocols")) as table:
        for line in table:
            fields = line.strip().split(":")
            if len(fields) == 6 and not line.startswith("#"):
                found.append((int(fields[1]), int(fields[2])))
    return found


def ports_for(preference: int, table: list[tuple[int, int]]) -> list[int]:
    """MXPS: the slice's protocols, then the slice-0 ones."""
    wanted = preference & 15 if 12800 <= preference <= 13055 else 0
    serving = [port for port, s in table if s == wanted]
    fallback = [port for port, s in table if s == 0]
    return serving + fallback if wanted and serving else fallback


def timeout(home: str) -> float:
    """control/timeoutconnect, else 5 s."""
    try:
        with open(os.path.join(home, "control", "timeoutconnect")) as f:
            return float(f.readline().strip())
    except OSError:
        return DEFAULT_TIMEOUT


def main() -> int:
    """Connect like qmail-remote; print the handoff time."""
    host = sys.argv[1]
    home = os.environ.get("MXF_QMAIL", "/var/qmail")
    server, port = nameserver()
    table = protocols(home)
    per_address = timeout(home)
    answer = query_udp(server, port, host, "MX", timeout=5.0)
    exchangers = sorted(answer.answer_data("MX"))  # type: ignore[type-var]
    for preference, name in exchangers:  # type: ignore[misc]
        addresses = []
        for rtype in ("AAAA", "A"):
            addresses += [str(a) for a in query_udp(server, port, name, rtype).answer_data(rtype)]
        for service_port in ports_for(preference, table):
            for address in addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(per_address)
                    try:
                        sock.connect((address, service_port))
                    except OSError:
                        continue
                    print(
                        json.dumps(
                            {"handoff": time.monotonic(), "address": address, "port": service_port}
                        )
                    )
                    return 0
    print(json.dumps({"failed": time.monotonic()}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
