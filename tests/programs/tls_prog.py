"""The scripted program the TLS clients exec in tests (tlskit's ``Kit.prog``).

Usage: ``tls_prog.py MODE [ARG...]``.  It records what it was given -- argv, open
descriptors, the SSL/CA/TLS_ variables, where fd 1 goes, its engine's pid and
descriptors -- as JSON in ``$PROG_OUT``, and exercises the connection by MODE:

* ``hello``: write "hello\\n", read the echo, close the write side, read to EOF;
* ``bulk SIZE``: send SIZE bytes of a fixed pattern while reading everything back;
* ``eof-write`` / ``eof-read``: close the write side first / read to EOF first;
* ``exit`` / ``sleep``: nothing (``sleep`` lingers 30 s after recording);
* ``ucspi-y``, ``ucspi-Y``, ``ucspi-broken``, ``ucspi-decline``: UCSPI-TLS on
  ``$SSLCTLFD`` (start TLS, with or without the environment block; ask for TLS and get
  garbage; stay in clear), then ``hello`` over ``$SSLREADFD``/``$SSLWRITEFD``.

Then it prints ``$PROG_REPORT`` (NUL-terminated) when set, and exits ``$PROG_STATUS``.
"""

import contextlib
import hashlib
import json
import os
import sys
import threading
from typing import Any


def open_fds() -> list[int]:
    """Every open descriptor below 1024."""
    fds = []
    for fd in range(1024):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
    return fds


def engine() -> tuple[int | None, dict[str, str]]:
    """The pid of this process's first child (the TLS engine) and its descriptors."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    if not kids:
        return None, {}
    links = {}
    for fd in os.listdir(f"/proc/{kids[0]}/fd"):
        with contextlib.suppress(OSError):
            links[fd] = os.readlink(f"/proc/{kids[0]}/fd/{fd}")
    return kids[0], links


def read_all(fd: int) -> bytes:
    """Everything until EOF."""
    out = bytearray()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def write_all(fd: int, data: bytes) -> None:
    """All of ``data``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pattern(n: int) -> bytes:
    """``n`` bytes of a fixed pattern."""
    block = hashlib.sha256(b"mxf").digest() * 2048
    return (block * (n // len(block) + 1))[:n]


def parse_block(data: bytes) -> dict[str, str | None]:
    """A UCSPI-TLS environment block: NUL-terminated ``KEY=value`` entries, then a NUL."""
    entries: dict[str, str | None] = {}
    pos = 0
    while True:
        end = data.index(b"\0", pos)
        if end == pos:
            return entries
        key, sep, value = data[pos:end].partition(b"=")
        entries[key.decode()] = value.decode() if sep else None
        pos = end + 1


def line(fd: int) -> str:
    """One line (up to and including its LF), or what came before EOF."""
    out = b""
    while not out.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode()


def main() -> None:
    """Record, exercise the connection by mode, report, exit."""
    mode = sys.argv[1]
    result: dict[str, Any] = {
        "argv": sys.argv[2:],
        "pid": os.getpid(),
        "fds": open_fds(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("SSL", "CA", "TLS_"))},
        "fd1": os.readlink("/proc/self/fd/1"),
    }
    result["engine"], result["engine_fds"] = engine()
    rfd, wfd = 6, 7
    if mode.startswith("ucspi-"):
        ctl = int(os.environ["SSLCTLFD"])
        result["banner"] = line(6)
        action = mode.split("-", 1)[1]
        if action == "decline":
            os.close(ctl)
            write_all(7, b"PLAIN\r\n")
            result["reply"] = line(6)
            write_all(7, b"clear text\n")
            result["echo"] = line(6)
            import socket

            socket.socket(fileno=os.dup(7)).shutdown(socket.SHUT_WR)
            result["rest"] = read_all(6).decode()
            mode = "done"
        else:
            write_all(7, b"BROKEN\r\n" if action == "broken" else b"STARTTLS\r\n")
            result["reply"] = line(6)
            command = b"Y" if action in ("Y", "broken") else b"y"
            write_all(ctl, command)
            if command == b"Y":
                raw = read_all(ctl)
                result["block_raw"] = raw.hex()
                try:
                    result["block"] = parse_block(raw)
                except ValueError:
                    result["block"] = None
            else:
                result["ctl_after_y"] = read_all(ctl).hex()
            os.close(ctl)
            os.close(6)
            os.close(7)
            rfd, wfd = int(os.environ["SSLREADFD"]), int(os.environ["SSLWRITEFD"])
            failed = action == "broken" or (command == b"Y" and result["block"] is None)
            mode = "broken-read" if failed else "hello"
    if mode == "hello":
        write_all(wfd, b"hello\n")
        result["echo"] = line(rfd)
        os.close(wfd)
        result["rest"] = read_all(rfd).decode()
    elif mode == "broken-read":
        result["rest"] = read_all(rfd).decode()
    elif mode == "bulk":
        size = int(sys.argv[2])
        data = pattern(size)

        def send() -> None:
            write_all(wfd, data)
            os.close(wfd)

        writer = threading.Thread(target=send)
        writer.start()
        got = read_all(rfd)
        writer.join()
        result["sent"] = hashlib.sha256(data).hexdigest()
        result["received"] = hashlib.sha256(got).hexdigest()
        result["received_bytes"] = len(got)
    elif mode == "eof-write":
        write_all(wfd, b"hello")
        os.close(wfd)
        result["rest"] = read_all(rfd).decode()
    elif mode == "eof-read":
        result["rest"] = read_all(rfd).decode()
        try:
            write_all(wfd, b"after\n")
        except OSError as exc:
            result["write_error"] = exc.errno
        os.close(wfd)
    with open(os.environ["PROG_OUT"] + ".tmp", "w") as f:
        json.dump(result, f)
    os.rename(os.environ["PROG_OUT"] + ".tmp", os.environ["PROG_OUT"])
    if mode == "sleep":
        import time

        time.sleep(30)
    report = os.environ.get("PROG_REPORT")
    if report:
        os.write(1, report.encode() + b"\0")
    sys.exit(int(os.environ.get("PROG_STATUS", "0")))


if __name__ == "__main__":
    main()
