"""A demonstration delivery, end to end on loopback: ``tox -e demo``.

It builds a tiny world in a private network namespace and runs the real ``mxf-remote``
in it, twice:

* a real DNS server (knot) serves ``demo.test``: MX 10 ``mx1`` and MX 20 ``mx2``, both
  with an IPv6 and an IPv4 address;
* ``mx1`` is silent (nftables drops its SYNs, as a dead or firewalled host does);
* ``mx2`` listens on port 2525;
* the protocol program is a sink standing in for ``mxf-remote-smtpc``: it shows what it
  was handed (argv, the UCSPI environment, fds 6/7) and prints a K report.

The first delivery goes to ``demo.test`` (best exchanger silent), the second straight to
``mx2.demo.test`` for comparison.  For each, the plan and timeline come from the
``MXF_TRACE`` events, and the handoff latency is measured from the moment the demo
started the process to the moment mxf-remote called ``execve``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.infra.netns import enter_private_netns, nft_available, silence

NETNS_PROBLEM = enter_private_netns()  # first: the process must still be single-threaded

from tests.infra.knot import KnotServer  # noqa: E402
from tests.remotekit import MXF_REMOTE, Listeners  # noqa: E402

PORT = 2525
ZONE = """
@      MX   10 mx1
@      MX   20 mx2
mx1    AAAA fd6d:7866::201
mx1    A    127.0.2.1
mx2    AAAA fd6d:7866::202
mx2    A    127.0.2.2
"""

SINK = r"""
import fcntl, os, sys
env = os.environ

def open_fds():
    found = []
    for fd in range(64):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        found.append(fd)
    return found

print_lines = [
    "sink: exec'd as " + " ".join(sys.argv),
    "sink: PROTO=%s TCPREMOTEIP=%s TCPREMOTEPORT=%s TCPLOCALIP=%s"
    % (env["PROTO"], env["TCPREMOTEIP"], env["TCPREMOTEPORT"], env["TCPLOCALIP"]),
    "sink: MXFHOST=%s MXFPROTOCOL=%s" % (env["MXFHOST"], env["MXFPROTOCOL"]),
    "sink: open descriptors %s" % open_fds(),
]
os.write(7, b"hello from the client\n")
print_lines.append("sink: the exchanger said " + repr(os.read(6, 100).decode()))
with open(env["DEMO_SINK_LOG"], "w") as log:
    log.write("\n".join(print_lines) + "\n")
os.write(1, ("K%s accepted the demo message.\n\0" % env["TCPREMOTEIP"]).encode())
"""


def deliver(home: Path, host: str, env: dict[str, str]) -> None:
    """Run mxf-remote for ``host``, then show plan, timeline, handoff and report."""
    trace_path = home / "trace.jsonl"
    sink_log = home / "sink.log"
    for path in (trace_path, sink_log):
        path.unlink(missing_ok=True)
    message = home / "message"
    message.write_bytes(b"Subject: demo\n\nHello.\n")
    full_env = {
        **os.environ,
        **env,
        "MXF_QMAIL": str(home),
        "MXF_TRACE": str(trace_path),
        "DEMO_SINK_LOG": str(sink_log),
    }
    print(f"\n=== mxf-remote {host} demo@example.org postmaster@{host}")
    with open(message, "rb") as stdin:
        started = time.monotonic()
        done = subprocess.run(
            [MXF_REMOTE, host, "demo@example.org", f"postmaster@{host}"],
            stdin=stdin,
            capture_output=True,
            env=full_env,
            timeout=60,
            check=False,
        )
        wall = time.monotonic() - started
    events = [json.loads(line) for line in trace_path.read_text().splitlines()]
    print("timeline (ms since mxf-remote's main module loaded):")
    for event in events:
        details = {k: v for k, v in event.items() if k not in ("t", "event", "mono")}
        text = " ".join(f"{k}={v}" for k, v in details.items())
        print(f"  {event['t']:8.1f}  {event['event']:<24} {text[:110]}")
    attempts = [e for e in events if e["event"] == "attempt"]
    print("plan as raced (attempts in start order):")
    for number, attempt in enumerate(attempts, 1):
        print(
            f"  {number}. {attempt['protocol']} {attempt['exchanger']} "
            f"[{attempt['address']}]:{attempt['port']} (from {attempt['source']})"
        )
    if sink_log.exists():
        print(sink_log.read_text(), end="")
    handoff = [e for e in events if e["event"] == "handoff"]
    if handoff:
        latency = (handoff[0]["mono"] - started) * 1000
        print(
            f"handoff latency: {latency:.0f} ms from process start to execve "
            f"(whole delivery {wall * 1000:.0f} ms)"
        )
        if len(attempts) > 1:
            print(
                f"  ({len(attempts) - 1} silent address(es) ahead of the winner, "
                "each cost one connectdelay of 250 ms, not timeoutconnect)"
            )
    print(f"report on fd 1: {done.stdout!r}; on fd 2: {done.stderr!r}; exit {done.returncode}")


def main() -> int:
    """Build the demo world and deliver into it."""
    if NETNS_PROBLEM is not None:
        print(
            f"demo: cannot make a private network namespace ({NETNS_PROBLEM}); "
            "run it as root (tox -e demo)",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="mxf-demo-") as tmp:
        home = Path(tmp)
        (home / "control").mkdir()
        sink = home / "sink"
        sink.write_text(f"#!{sys.executable}\n{SINK}")
        sink.chmod(0o755)
        (home / "control" / "protocols").write_text(f"smtp:{PORT}:0:N:N:{sink}\n")
        nft = nft_available()
        if nft is None:
            silence("fd6d:7866::201", PORT)
            silence("127.0.2.1", PORT)
            print("mx1.demo.test (fd6d:7866::201, 127.0.2.1) is silent: its SYNs are dropped")
        else:
            print(f"demo: no nftables ({nft}); mx1 will refuse instead of being silent")
        listeners = Listeners()
        listeners.listen("fd6d:7866::202", PORT)
        listeners.listen("127.0.2.2", PORT)
        print("mx2.demo.test (fd6d:7866::202, 127.0.2.2) listens on port 2525")
        try:
            with KnotServer({"demo.test": ZONE}) as knot:
                print(f"knot serves demo.test on {', '.join(knot.nameservers)}")
                deliver(home, "demo.test", knot.env)
                deliver(home, "mx2.demo.test", knot.env)
        finally:
            listeners.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
