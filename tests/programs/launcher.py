"""Start a program with descriptors moved onto chosen numbers, as mxf-remote's handoff does.

Usage: ``python -S launcher.py N SRC:DST... PROGRAM ARG...`` (N pairs).  Each SRC is first
copied above every DST (so no move clobbers a source still to be moved), the sources are
closed, the copies are moved onto their DSTs, and PROGRAM is exec'd from PATH.  tlskit's
``launch`` runs it.
"""

import fcntl
import os
import sys


def main(args: list[str]) -> None:
    """Move the descriptors, then exec the program."""
    n = int(args[0])
    pairs = [(int(a), int(b)) for a, b in (x.split(":") for x in args[1 : 1 + n])]
    above = max(dst for _, dst in pairs) + 1  # copies above every target: none gets clobbered
    high = [(fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, above), dst) for src, dst in pairs]
    for src in {src for src, _ in pairs}:
        os.close(src)
    for fd, dst in high:
        os.dup2(fd, dst)
    for fd, _ in high:
        os.close(fd)
    argv = args[1 + n :]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
