"""The recording protocol program: what mxf-remote's handoff left, as JSON.

remotekit's ``write_recorder`` copies this file beside a ``/bin/sh`` wrapper (the wrapper
sees the signal dispositions before Python changes any) and execs it.  It records argv,
the environment, the open descriptors, fd 0's offset, the signal mask and fds 6/7 into
``$MXF_TEST_RECORD``, says a line to the listener on fd 7, keeps what it hears on fd 6,
and prints a K report.
"""

import fcntl
import json
import os
import signal
import sys


def open_fds() -> list[int]:
    """Every open descriptor below 1024."""
    found = []
    for fd in range(1024):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        found.append(fd)
    return found


def main() -> None:
    """Record, talk to the listener, report."""
    record: dict[str, object] = {
        "argv": sys.argv[1:],
        "env": dict(os.environ),
        "fds": open_fds(),
        "fd0_offset": os.lseek(0, 0, os.SEEK_CUR),
        "sigmask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "fd6_blocking": os.get_blocking(6),
        "fd7_blocking": os.get_blocking(7),
        "fd6_fd7_same_socket": os.fstat(6).st_ino == os.fstat(7).st_ino,
        "fd6_cloexec": bool(fcntl.fcntl(6, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
    }
    os.write(7, b"hello from the client\n")
    heard = b""
    while not heard.endswith(b"\n"):
        chunk = os.read(6, 100)
        if not chunk:
            break
        heard += chunk
    record["heard"] = heard.decode()
    with open(os.environ["MXF_TEST_RECORD"], "w") as out:
        json.dump(record, out)
    os.write(1, b"Krecorder got it\n\0")


if __name__ == "__main__":
    main()
