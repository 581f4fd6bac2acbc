"""One delivery inside ``mxf-remoted``: prepare, race, and answer the launcher.

The steps are mxf-remote's own (``remote.deliver``), with the launcher's arguments and
environment instead of this process's: ``prelude.prepare``, the dispatch on the server's
loop (its c-ares channel for the launcher's nameservers), the report choice, and the
trace (``MXF_TRACE`` of the launcher, times counted from the launcher's start).  What
differs is the end: instead of exec'ing the client, the server sends the launcher the
report, or the client's argv and environment with the winning connection.

The launcher is watched while the race runs: if it goes away (qmail-rspawn killed it),
the race is cancelled at once and its sockets closed.  Every race both reads and feeds
the server's connection history (``history.py``): addresses that failed lately go
behind their siblings in the plan.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import TYPE_CHECKING, Any, NamedTuple

from mxf_remote import remotedwire, report, warmtls
from mxf_remote.dispatch import dispatch, no_lookup
from mxf_remote.prelude import Prepared, prepare
from mxf_remote.race import Won, tcp_connector
from mxf_remote.server import MARGIN_SECONDS, now_since
from mxf_remote.trace import Trace

if TYPE_CHECKING:
    from mxf_remote.dispatch import Dispatched
    from mxf_remote.server import Server

FD = struct.Struct("i")


class Request(NamedTuple):
    """A launcher's request, decoded."""

    started: float
    """The launcher's CLOCK_MONOTONIC at its start."""
    beside: str
    """Where the launcher's mxf-remote is: programs named by a bare name are looked up there."""
    arguments: list[str]
    """``host sender recip...``."""
    env: dict[str, str]
    """The launcher's environment."""
    pid: int = 0
    """The launcher's pid (SO_PEERCRED), which a TLS engine forked for it watches."""

    @classmethod
    def from_wire(cls, message: bytes) -> Request:
        """Decode a request (``remotedwire.Malformed`` when it is not one)."""
        started, beside, argv, environ = remotedwire.decode_request(message)
        env = {
            os.fsdecode(key): os.fsdecode(value)
            for key, _, value in (entry.partition(b"=") for entry in environ if b"=" in entry)
        }
        return cls(started, os.fsdecode(beside), [os.fsdecode(a) for a in argv], env)


async def serve_delivery(server: Server, connection: socket.socket, request: Request) -> None:
    """Serve one request: the report, or the connection for the client."""
    arguments, env = request.arguments, request.env
    trace = Trace(enabled=bool(env.get("MXF_TRACE")), clock=lambda: now_since(request.started))
    trace.mark("start", argv=arguments[:3], server=os.getpid())
    loop = asyncio.get_running_loop()
    if len(arguments) < 3:
        await _accept(connection, MARGIN_SECONDS)
        await _report(connection, report.USAGE, trace, env)
        return
    prepared = prepare(arguments[0], env, beside=request.beside, sender=arguments[1])
    if not isinstance(prepared, Prepared):
        await _accept(connection, MARGIN_SECONDS)
        await _report(connection, prepared.report, trace, env)
        return
    control = prepared.control
    await _accept(connection, control.timeout_dns + control.timeout_connect + MARGIN_SECONDS)
    trace.event("control_read", protocols=[p.service for p in prepared.destination.protocols])
    nameservers = prepared.nameservers
    lookup = server.lookup_for(nameservers, dane=control.dane) if nameservers else no_lookup
    racing = loop.create_task(
        dispatch(
            prepared.destination,
            control,
            lookup,
            local=prepared.local,
            connect=tcp_connector(control.sources),
            clock=trace.clock,
            penalized=server.history.penalized,
            background=server.background,
            environ=env,
        )
    )
    loop.add_reader(connection.fileno(), racing.cancel)  # the launcher left: stop racing
    try:
        dispatched = await racing
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the server itself is cancelling us
        return  # the launcher went away: nothing to answer
    finally:
        loop.remove_reader(connection.fileno())
    server.history.learn(dispatched.outcome.fates)
    if dispatched.sts.state == "policy" and control.mtasts is not None:
        from mxf_remote.stsrefresh import Remembered

        trust = {k: v for k, v in env.items() if k in ("SSL_CERT_DIR", "SSL_CERT_FILE")}
        source = Remembered(tuple(nameservers), control.dane, trust, control.timeout_dns)
        server.policies.remember(control.mtasts, dispatched.sts.domain, source)
    await _answer(connection, dispatched, request, prepared, trace, server=server)


async def _answer(
    connection: socket.socket,
    dispatched: Dispatched[socket.socket],
    request: Request,
    prepared: Prepared,
    trace: Trace,
    *,
    server: Server,
) -> None:
    home = prepared.home
    from mxf_remote.timeline import dispatch_events

    arguments, env = request.arguments, request.env
    trace.merge(dispatch_events(dispatched))
    outcome = dispatched.outcome
    if not isinstance(outcome, Won):
        from mxf_remote.explain import explain_failure

        await _report(connection, explain_failure(dispatched.plan, outcome), trace, env)
        return
    from mxf_remote.handoff import client_argv, client_environment, tls_environment_of

    winner = outcome.connection
    try:
        client = client_argv(outcome.attempt, arguments, dispatched.requirement)
        try:
            local, remote = winner.getsockname()[:2], winner.getpeername()[:2]
        except OSError as error:  # the peer reset the connection between connect and now
            reason = f"connection lost before exec: {error.strerror}"
            await _report(connection, report.cannot_run(client[0], reason), trace, env)
            return
        client_env = client_environment(
            env, outcome.attempt, local, remote, tls_environment_of(dispatched, prepared)
        )
        in_process, extra = b"", list[int]()
        if not server.exec_clients:
            in_process = in_process_client(client, request.beside)
            jobs = server.tls_jobs
            if jobs is not None and warmtls.eligible(client, request.beside) and request.pid:
                fd = winner.fileno()
                engine = warmtls.start_engine(jobs, client, fd, client_env, request.pid)
                if engine is not None:
                    client, client_env, extra = engine
                    in_process = b"smtp"
        trace.mark(
            "handoff",
            program=outcome.attempt.protocol.program,
            in_process=in_process.decode(),
            tls_engine="mxf-remoted" if extra else "",
            **({"tls_policy": policy} if (policy := dispatched.requirement.kind) else {}),
        )
        _write_trace(trace, env)
        message = remotedwire.encode_handoff(
            os.fsencode(home),
            [os.fsencode(argument) for argument in client],
            [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in client_env.items()],
            in_process,
        )
        await _send_with_descriptors(connection, message, [winner.fileno(), *extra])
    finally:
        winner.close()
        for fd in extra:
            os.close(fd)


IN_PROCESS_PROGRAMS = {"mxf-remote-smtpc": b"smtp", "mxf-remote-qmtpc": b"qmtp"}


def in_process_client(argv: list[str], beside: str) -> bytes:
    """Which of our clients the launcher may run in its own process for ``argv``, or b"".

    Only our own mxf-remote-smtpc or mxf-remote-qmtpc -- the one installed beside the
    launcher's mxf-remote, run without a TLS client around it: another program is a
    program the admin chose, and is exec'd as it always was.
    """
    program = argv[0]
    name = os.path.basename(program)
    if name not in IN_PROCESS_PROGRAMS:
        return b""
    if os.path.realpath(os.path.dirname(program)) != os.path.realpath(beside):
        return b""
    return IN_PROCESS_PROGRAMS[name]


async def _accept(connection: socket.socket, bound: float) -> None:
    """Tell the launcher we took the delivery, and how long it may take at most."""
    answer = remotedwire.ACCEPTED + remotedwire.netstring(b"%d" % int(bound + 1))
    await asyncio.get_running_loop().sock_sendall(connection, answer)


async def _report(
    connection: socket.socket, result: report.Report, trace: Trace, env: dict[str, str]
) -> None:
    trace.mark("report", letter=result.letter, text=result.text.decode("latin-1"))
    _write_trace(trace, env)
    message = remotedwire.netstring(remotedwire.REPORT + result.encode())
    await asyncio.get_running_loop().sock_sendall(connection, message)


def _write_trace(trace: Trace, env: dict[str, str]) -> None:
    path = env.get("MXF_TRACE")
    if trace.enabled and path:
        trace.append_to(path)


async def _send_with_descriptors(connection: socket.socket, message: bytes, fds: list[int]) -> None:
    """``message`` with ``fds`` attached to its first byte (SCM_RIGHTS)."""
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(FD.pack(fd) for fd in fds))]
    loop = asyncio.get_running_loop()
    while True:
        try:
            sent = connection.sendmsg([message[:1]], rights)
            break
        except BlockingIOError:
            writable: asyncio.Future[Any] = loop.create_future()
            loop.add_writer(connection.fileno(), writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(connection.fileno())
    await loop.sock_sendall(connection, message[sent:])
