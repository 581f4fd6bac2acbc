"""STARTTLS on the warm path: mxf-remoted forks the TLS engine, the launcher runs the client.

With the default ``control/protocols``, SMTP runs as ``mxf-remote-ucspitlsc -k NAME --
mxf-remote-smtpc ...``.  Exec'd cold, that is two interpreter starts (the TLS client and
the SMTP client) and an engine that imports ``ssl`` (14 ms of CPU) for every delivery.
mxf-remoted has ``ssl`` loaded already, so for that exact pair -- our ucspitlsc around our
smtpc, both installed beside the launcher's mxf-remote -- it does what ucspitlsc does,
without either start:

* it has the UCSPI-TLS engine (``tls.engine.ucspitlsc_engine``, the very code
  ucspitlsc's child runs) started on the winning connection, with ucspitlsc's own
  command line and the launcher's environment (``CAFILE``, ``CADIR``...), and with the
  control socket and the two pipes of UCSPI-TLS -- forked by ``tlsforker``, a small
  process with ``ssl`` loaded, rather than by the server itself (cheaper by a fork of
  a big process);
* it hands the launcher the connection *and* the program's ends of those three, which
  the launcher puts on descriptors 8, 9 and 10 (``SSLCTLFD``, ``SSLREADFD``,
  ``SSLWRITEFD``) before it runs mxf-remote-smtpc in its own process.

From there everything is as with ucspitlsc: the client speaks clear SMTP on fds 6/7,
writes ``Y`` on ``SSLCTLFD`` after a 220 to STARTTLS, and the engine does the handshake
and pumps.  The engine is the forker's child, not the client's: it watches the launcher
through a pidfd (as ucspitlsc's engine watches its parent) and ends with it.  If the
server dies, the engine lives on until the delivery ends.
"""

from __future__ import annotations

import os
import socket

from mxf_remote.tls.options import TLS_CONFIG_VARIABLES, UsageError, parse_options

ENGINE_DESCRIPTORS = (8, 9, 10)
"""Where the launcher puts the program's ends: SSLCTLFD, SSLREADFD, SSLWRITEFD."""
OURS = ("mxf-remote-ucspitlsc", "mxf-remote-smtpc")


def eligible(argv: list[str], beside: str) -> bool:
    """True for ``<beside>/mxf-remote-ucspitlsc ... -- <beside>/mxf-remote-smtpc ...``."""
    if "--" not in argv:
        return False
    prog = argv[argv.index("--") + 1 :]
    if not prog:
        return False
    where = os.path.realpath(beside)
    return all(
        os.path.basename(path) == name and os.path.realpath(os.path.dirname(path)) == where
        for path, name in zip((argv[0], prog[0]), OURS, strict=True)
    )


def start_engine(
    jobs: socket.socket, argv: list[str], connection: int, env: dict[str, str], prog_pid: int
) -> tuple[list[str], dict[str, str], list[int]] | None:
    """Have the forker (``tlsforker``) start the engine for ``argv`` on ``connection``.

    Returns prog's argv, prog's environment, and the three descriptors to hand over (to
    go on ENGINE_DESCRIPTORS); None when the command line is not one ucspitlsc would take
    or the forker is gone (the launcher then execs ucspitlsc, as without the warm path).
    """
    from mxf_remote import tlsforker

    try:
        options = parse_options(argv[1:])
    except UsageError:
        return None
    control_prog, control_engine = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    control_prog_fd, control_engine_fd = control_prog.detach(), control_engine.detach()
    to_prog_r, to_prog_w = os.pipe()
    from_prog_r, from_prog_w = os.pipe()
    engine_ends = [connection, control_engine_fd, from_prog_r, to_prog_w]
    submitted = tlsforker.submit(jobs, argv, env, prog_pid, engine_ends)
    for fd in engine_ends[1:]:
        os.close(fd)
    if not submitted:
        for fd in (control_prog_fd, to_prog_r, from_prog_w):
            os.close(fd)
        return None
    prog_env = dict(env)
    if not options.keep_env:
        for name in TLS_CONFIG_VARIABLES:
            prog_env.pop(name, None)
    for name, fd in zip(("SSLCTLFD", "SSLREADFD", "SSLWRITEFD"), ENGINE_DESCRIPTORS, strict=True):
        prog_env[name] = str(fd)
    return options.prog, prog_env, [control_prog_fd, to_prog_r, from_prog_w]
