"""Benchmark: mxf-remote-tlsc's byte pump against an in-process Python TLS client.

    python3 bench/tls_pump.py [--mb 200] [--runs 3]

Both push the same number of megabytes to the same TLS sink (a separate process on
127.0.0.1 that counts the bytes and answers with the count):

* **tlsc**: ``mxf-remote-tlsc -- prog`` with the connection on fds 6/7; prog (a small
  Python script) writes an 8-byte length and the data to its cleartext fd 7 and reads
  the answer from fd 6.
  The engine is prog's child, so prog reaps it with ``wait4`` and reports the engine's
  own CPU time (user + system).  Wall time runs from prog's first write to the answer.
* **baseline**: ``ssl.SSLContext.wrap_socket`` + ``sendall`` in this process, the
  cheapest way Python can push TLS; its CPU time is this process's.

Printed: MB/s, CPU seconds per MB, the engine's share (its CPU over the baseline's), and
the machine's state during the runs (``machine.py``).
This is a measurement, not a test: nothing is asserted.  All processes share the
machine's cores, so the sink competes with both clients alike.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme
from machine import Watch

SINK = r"""
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1])
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
buffer = bytearray(1 << 20)
while True:
    conn, _ = listener.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            header = b""
            while len(header) < 8:
                header += tls.recv(8 - len(header))
            expected = int.from_bytes(header, "big")
            total = 0
            while total < expected:
                count = tls.recv_into(buffer, min(len(buffer), expected - total))
                if not count:
                    break
                total += count
            tls.sendall(f"{total}\n".encode())
    except (ssl.SSLError, OSError):
        pass
"""

PROG = r"""
import json, os, sys, time
size = int(sys.argv[1])
block = memoryview(os.urandom(1 << 20))
children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
started = time.perf_counter()
cpu_started = time.process_time()
os.write(7, size.to_bytes(8, "big"))
left = size
while left:
    view = block[: min(left, len(block))]
    while view:
        view = view[os.write(7, view):]
    left -= min(left, len(block))
answer = b""
while chunk := os.read(6, 4096):
    answer += chunk
wall = time.perf_counter() - started
prog_cpu = time.process_time() - cpu_started
os.close(6)
os.close(7)
_, _, usage = os.wait4(int(children[0]), 0)
with open(os.environ["BENCH_OUT"], "w") as f:
    json.dump({"wall": wall, "answer": answer.decode().strip(), "prog_cpu": prog_cpu,
               "engine_cpu": usage.ru_utime + usage.ru_stime}, f)
"""

LAUNCH = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 6)
os.dup2(fd, 7)
os.close(fd)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def tlsc_command() -> list[str]:
    script = Path(sys.executable).parent / "mxf-remote-tlsc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "mxf_remote.tls.tlsc"]


def run_tlsc(port: int, size: int, workdir: Path) -> dict[str, float]:
    prog = workdir / "prog.py"
    prog.write_text(PROG)
    out = workdir / "out.json"
    conn = socket.create_connection(("127.0.0.1", port), timeout=60)
    conn.setblocking(True)
    argv = [
        sys.executable,
        "-S",
        "-c",
        LAUNCH,
        str(conn.fileno()),
        *tlsc_command(),
        "-k",
        "sink.example.test",
        "--",
        sys.executable,
        str(prog),
        str(size),
    ]
    env = {**os.environ, "BENCH_OUT": str(out), "TCPREMOTEIP": "127.0.0.1"}
    proc = subprocess.run(
        argv, pass_fds=[conn.fileno()], env=env, capture_output=True, timeout=600, check=False
    )
    conn.close()
    if proc.returncode or proc.stdout:
        raise SystemExit(f"tlsc run failed: {proc.returncode} {proc.stdout!r} {proc.stderr!r}")
    result: dict[str, float] = json.loads(out.read_text())
    if int(result.pop("answer")) != size:  # type: ignore[call-overload]
        raise SystemExit("the sink did not receive every byte")
    return result


def run_baseline(port: int, size: int, cafile: Path) -> dict[str, float]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(cafile))
    block = memoryview(os.urandom(1 << 20))
    raw = socket.create_connection(("127.0.0.1", port), timeout=600)
    with context.wrap_socket(raw, server_hostname="sink.example.test") as tls:
        started = time.perf_counter()
        cpu_started = time.process_time()
        tls.sendall(size.to_bytes(8, "big"))
        left = size
        while left:
            tls.sendall(block[: min(left, len(block))])
            left -= min(left, len(block))
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    if int(answer) != size:
        raise SystemExit("the sink did not receive every byte (baseline)")
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="megabytes per run (200)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (3); best shown")
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ca = trustme.CA()
        cafile = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        keycert = workdir / "sink.pem"
        ca.issue_cert("sink.example.test").private_key_and_cert_chain_pem.write_to_path(
            str(keycert)
        )
        sink = subprocess.Popen(
            [sys.executable, "-c", SINK, str(keycert)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            with Watch() as watch:
                tlsc = [run_tlsc(port, size, workdir) for _ in range(args.runs)]
                base = [run_baseline(port, size, cafile) for _ in range(args.runs)]
        finally:
            sink.kill()
            sink.wait(10)
    best_t = min(tlsc, key=lambda r: r["wall"])
    best_b = min(base, key=lambda r: r["wall"])
    mb = args.mb
    print(
        f"TLS pump benchmark: {mb} MB per run, best of {args.runs}, "
        f"{ssl.OPENSSL_VERSION}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"{'client':<34}{'MB/s':>10}{'CPU s/MB':>12}")
    print(
        f"{'baseline (ssl socket sendall)':<34}{mb / best_b['wall']:>10.1f}"
        f"{best_b['cpu'] / mb:>12.5f}"
    )
    print(
        f"{'mxf-remote-tlsc engine':<34}{mb / best_t['wall']:>10.1f}"
        f"{best_t['engine_cpu'] / mb:>12.5f}"
    )
    print(f"{'  + prog writing to the pipe':<34}{'':>10}{best_t['prog_cpu'] / mb:>12.5f}")
    print(
        f"engine CPU / baseline CPU: {best_t['engine_cpu'] / best_b['cpu']:.2f}x; "
        f"throughput ratio: {best_b['wall'] / best_t['wall']:.2f}"
    )
    print(watch.line())


if __name__ == "__main__":
    main()
