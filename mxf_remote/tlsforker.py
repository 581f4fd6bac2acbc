"""A small process that forks the warm path's TLS engines, so the big server never forks.

``warmtls`` runs the UCSPI-TLS engine of a warm STARTTLS delivery in a forked process.
Forked from mxf-remoted itself, each engine costs the kernel a copy of the page tables of
a process that has loaded asyncio, uvloop, aiodns and a DNS cache -- measured, that fork
was most of the engine's cost (bench/results/warm.md).  So mxf-remoted forks this
*forker* first thing, before it loads any of that: a process with ``ssl`` and the
engine's modules loaded and nothing else, which forks one engine per job it is sent.

A job is one SOCK_SEQPACKET message from the server: netstrings of the UCSPI-TLS
client's command line, the client's environment and the pid of the launcher the engine
serves, with four descriptors attached (the connection, the engine's end of the control
socket, and the engine's ends of the two pipes).  The forker forks, the child runs
``tls.engine.ucspitlsc_engine`` and ``_exit``s; the forker closes its copies and waits
for the next job.  Engines are waited for as they end (so their CPU shows in the
forker's cutime, for the benchmarks).  The forker
ends when the server's end of the socket closes; if it is gone, the server delivers
that pair by exec'ing the TLS client, as without the warm path.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from mxf_remote import remotedwire

JOB_DESCRIPTORS = 4
MAX_JOB = 1 << 20


def start() -> socket.socket:
    """Fork the forker; the server's end of the job socket."""
    server_end, forker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:  # pragma: no cover - the forker process, which _exits
        server_end.close()
        status = 0
        try:
            serve(forker_end)
        except BaseException:
            status = 1
        os._exit(status)
    forker_end.close()
    return server_end


def submit(
    jobs: socket.socket, argv: list[str], env: dict[str, str], prog_pid: int, fds: list[int]
) -> bool:
    """Send one job; False when the forker is gone (the caller then execs the client)."""
    entries = [os.fsencode(key) + b"=" + os.fsencode(value) for key, value in env.items()]
    message = remotedwire.netstring(
        remotedwire.netstrings([os.fsencode(argument) for argument in argv])
        + remotedwire.netstrings(entries)
        + remotedwire.netstring(b"%d" % prog_pid)
    )
    descriptors = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, descriptors)]
    try:
        jobs.sendmsg([message], rights)
    except OSError:
        return False
    return True


def _reap(signum: int, frame: object) -> None:  # pragma: no cover - in the forker
    """Wait for every engine that has ended (their CPU then shows in our cutime/cstime)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wants_dane_ta(env: dict[str, str]) -> bool:
    """The job needs the X.509 library: a DANE-TA (usage 2) record in ``MXFDANE``, or the
    WebPKI verdict of MTA-STS ``testing`` (``MXFWEBPKI=report``, ``tls/webpki.py``)."""
    if env.get("MXFWEBPKI") == "report":
        return True
    return any(record.strip().startswith("2 ") for record in env.get("MXFDANE", "").split(";"))


def _load_dane_ta() -> None:  # pragma: no cover - runs in the forker process
    """Load ``cryptography.x509`` here, once, after the first DANE-TA job.

    A DANE-TA check needs path validation, which ``ssl`` cannot do; importing the X.509
    library costs an engine about 40 ms (bench/results/tls_policy.md).  Loaded in the
    forker, every later engine inherits it through ``fork``.  Not before the first such
    job: a server whose destinations never use DANE-TA never pays its memory.
    """
    try:
        import cryptography.hazmat.backends.openssl.backend  # the first check loads it
        import cryptography.x509
        import cryptography.x509.oid  # noqa: F401

        from mxf_remote.tls import dane, webpki  # noqa: F401
    except ImportError:
        return


def serve(jobs: socket.socket) -> None:  # pragma: no cover - runs in the forker process
    """Fork an engine per job until the server goes away."""
    signal.signal(signal.SIGCHLD, _reap)  # waited for, so their CPU counts in ours
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the server's terminal is its own
    import ssl  # noqa: F401 - loaded once here, so no engine pays for it

    from mxf_remote.tls import context, engine, pump  # noqa: F401 - the same
    from mxf_remote.tls.options import UsageError, parse_options

    while True:
        data, ancillary, _, _ = jobs.recvmsg(MAX_JOB, socket.CMSG_SPACE(4 * JOB_DESCRIPTORS))
        fds = [
            int.from_bytes(payload[i : i + 4], sys.byteorder)
            for level, kind, payload in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
            for i in range(0, len(payload) - len(payload) % 4, 4)
        ]
        if not data:
            return
        try:
            argv_raw, env_raw, pid_raw = remotedwire.split(remotedwire.unwrap(data))
            argv = [os.fsdecode(a) for a in remotedwire.split(argv_raw)]
            env = {
                os.fsdecode(key): os.fsdecode(value)
                for key, _, value in (e.partition(b"=") for e in remotedwire.split(env_raw))
            }
            options = parse_options(argv[1:])
            prog_pid = int(pid_raw)
        except (remotedwire.Malformed, UsageError, ValueError):
            options = None
        if options is not None and len(fds) == JOB_DESCRIPTORS and os.fork() == 0:
            jobs.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            connection, control, app_r, app_w = fds
            # Two descriptors, as ucspitlsc's 6 and 7: the pump polls the read and the
            # write descriptor each for its own event, which one descriptor cannot carry.
            options.rfd, options.wfd = connection, os.dup(connection)
            engine.ucspitlsc_engine(
                options,
                env,
                parent_pid=prog_pid,
                ctl=control,
                app_r=app_r,
                app_w=app_w,
                prog_is_parent=False,
            )
        for fd in fds:
            os.close(fd)
        if options is not None and _wants_dane_ta(env):
            _load_dane_ta()
