"""``mxf-remote host sender recip...``: the dispatcher's main, wiring the phases.

    argv, env -> control -> destination -> [event loop: resolve + race] -> handoff | report

Every path ends in ``handoff.hand_off`` (exec of the protocol client) or in
``output.finish`` (one NUL-terminated report, exit 0).  Anything unexpected is caught
at the top and deferred with ``Zmxf-remote internal error``: a Python traceback exits 1,
which qmail-rspawn turns into a bounce.

A closed fd 1 or fd 2 is plugged with ``/dev/null`` before anything else opens a
descriptor: otherwise the next socket would get that number, the report could be
written into a DNS or SMTP connection, and libuv aborts on a socket below 3.  The
report then goes nowhere and the exit is 0, as qmail-remote's write to a closed fd 1.

Imports are lean on purpose: this process starts once per delivery.  asyncio, aiodns
and uvloop are imported only when the loop phase begins.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

from mxf_remote import trace as _trace
from mxf_remote.output import descriptor_open, finish, plug_closed_outputs
from mxf_remote.report import Report


def main() -> NoReturn:
    """Console entry point: never raises, never returns."""
    try:
        deliver(sys.argv)
    except BaseException as error:
        from mxf_remote.report import internal_error

        finish(internal_error(error).encode())


def _stop(report: Report, trace: _trace.Trace | None = None) -> NoReturn:
    if trace is not None:
        trace.mark("report", letter=report.letter, text=report.text.decode("latin-1"))
        _flush_trace(trace)
    finish(report.encode())


def _flush_trace(trace: _trace.Trace) -> None:
    path = os.environ.get("MXF_TRACE")
    if path:
        trace.append_to(path)


def deliver(argv: list[str]) -> NoReturn:
    """Everything mxf-remote does for one delivery."""
    from mxf_remote import report

    inherited_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    plug_closed_outputs()
    arguments = argv[1:]
    if len(arguments) < 3:
        _stop(report.USAGE)
    if not descriptor_open(0):
        _stop(report.NO_MESSAGE)
    trace = _trace.Trace(enabled=bool(os.environ.get("MXF_TRACE")))
    trace.mark("start", argv=arguments[:3])

    from mxf_remote.control import program_directory, qmail_home
    from mxf_remote.prelude import Prepared, prepare

    beside = program_directory(argv[0])  # before chdir: argv[0] may be relative
    home = os.path.abspath(qmail_home())
    try:
        os.chdir(home)  # the client runs in the qmail home, as qmail-remote does
    except OSError:
        _stop(report.NO_HOME, trace)
    prepared = prepare(arguments[0], os.environ, beside=beside, home=home, sender=arguments[1])
    if not isinstance(prepared, Prepared):
        _stop(prepared.report, trace)
    trace.event("control_read", protocols=[p.service for p in prepared.destination.protocols])

    from mxf_remote.dispatch import run_dispatch
    from mxf_remote.race import Won

    dispatched = run_dispatch(
        prepared.destination,
        prepared.control,
        prepared.nameservers,
        local=prepared.local,
        clock=_trace.now_ms,
    )
    if trace.enabled:
        from mxf_remote.timeline import dispatch_events

        trace.merge(dispatch_events(dispatched))
    outcome = dispatched.outcome
    if isinstance(outcome, Won):
        from mxf_remote.handoff import hand_off, tls_environment_of

        policy = dispatched.requirement.kind
        trace.mark(
            "handoff",
            program=outcome.attempt.protocol.program,
            **({"tls_policy": policy} if policy else {}),
        )
        _flush_trace(trace)
        hand_off(
            outcome.connection,
            outcome.attempt,
            arguments,
            environ=os.environ,
            inherited_mask=inherited_mask,
            tls=tls_environment_of(dispatched, prepared),
            requirement=dispatched.requirement,
        )

    from mxf_remote.explain import explain_failure

    _stop(explain_failure(dispatched.plan, outcome), trace)
