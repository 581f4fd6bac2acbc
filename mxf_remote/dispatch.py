"""The asynchronous phase: resolve and race, then leave nothing running.

``mxf-remote`` and ``mxf-remote-probe`` both call ``run_dispatch``; the first execs the
winner's protocol client, the second prints what happened.  The event loop is a phase,
not the program: ``run_dispatch`` creates it (uvloop when importable), runs one
coroutine, closes the c-ares resolver *before* the loop (otherwise c-ares' thread calls
back into a closed loop and writes noise on stderr, which is the report pipe), closes
the loop, and returns plain values.

The wiring, in one direction: resolution fills the knowledge and sets one ``changed``
event; ``LivePlan`` turns the knowledge into the current plan and the self-check's
verdicts; the race reads the ``LivePlan`` and wakes on ``changed``.

With DANE or MTA-STS (``tlspolicy.py``), one more step follows a won race: the winner's
TLS verdict may still wait for its TLSA answer (bounded by ``timeoutdns``) or for the
MTA-STS policy (bounded by the connect phase, ``timeoutconnect`` from the start).  A
winner its policy then refuses is closed and the race counts as lost; otherwise the
verdict's ``Requirement`` goes to the handoff.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from mxf_remote.addresses import Sources
from mxf_remote.control import Control
from mxf_remote.destination import Destination
from mxf_remote.knowledge import Answer, Status
from mxf_remote.plan import Attempt, Plan, build_plan, self_check_verdict
from mxf_remote.race import AttemptFate, Connection, Fate, Lost, Race, Won, tcp_connector
from mxf_remote.resolution import Lookup, Query, Resolution
from mxf_remote.tlspolicy import NO_REQUIREMENT, Refusal, Requirement, StsView, Verdict, Wait

if TYPE_CHECKING:
    from mxf_remote.stsflow import StsFlow

C = TypeVar("C", bound=Connection)


class Dispatched(NamedTuple, Generic[C]):
    """What the asynchronous phase found: the outcome, the final plan, every question."""

    outcome: Won[C] | Lost
    plan: Plan
    queries: tuple[Query, ...] = ()
    delays_over: tuple[tuple[str, float], ...] = ()
    """(name, ms): an A answer held for the Resolution Delay was released."""
    dns_expired_at: float | None = None
    """When ``timeoutdns`` ran out, if it did (ms)."""
    sources: Sources = Sources()
    """The source addresses the attempts were bound to (``control/outgoingip``/``6``)."""
    requirement: Requirement = NO_REQUIREMENT
    """What the winner's TLS client must enforce (DANE, MTA-STS); nothing when lost."""
    sts: StsView = StsView()
    """The MTA-STS policy as the delivery saw it (``off`` when not configured)."""
    tlsa: tuple[tuple[tuple[str, int], Answer[Any]], ...] = ()
    """The TLSA answers by (exchanger, port), with ``control/dane`` on."""


class LivePlan:
    """The plan as DNS answers arrive: what the race reads (``race.PlanSource``)."""

    def __init__(
        self,
        destination: Destination,
        resolution: Resolution,
        local: frozenset[str],
        penalized: Callable[[str, int], bool] | None = None,
        *,
        tls_policy: bool = False,
        sts: StsFlow | None = None,
    ) -> None:
        self._destination = destination
        self._resolution = resolution
        self._local = local
        self._penalized = penalized
        self._sts = sts
        self._tls = self.verdict if tls_policy or sts is not None else None

    def current(self) -> Plan:
        """The plan for what DNS has answered so far."""
        return build_plan(
            self._destination,
            self._resolution.knowledge,
            self._local,
            self._penalized,
            self._tls,
        )

    def sts_view(self) -> StsView:
        """The MTA-STS policy as known now."""
        return StsView() if self._sts is None else self._sts.view()

    def verdict(self, attempt: Attempt) -> Verdict:
        """The attempt's TLS verdict (``tlspolicy.verdict``); no requirement when off."""
        if self._tls is None:
            return NO_REQUIREMENT
        from mxf_remote.tlspolicy import verdict

        return verdict(attempt, self._resolution.knowledge, self.sts_view())

    def refuses(self, attempt: Attempt) -> bool:
        """True when the attempt's TLS policy refuses it now."""
        return isinstance(self.verdict(attempt), Refusal)

    @property
    def settled(self) -> bool:
        """True when no lookup is outstanding (the MTA-STS policy's included)."""
        return self._resolution.over and (self._sts is None or not self._sts.pending)

    def may_win(self, attempt: Attempt) -> bool | None:
        """The self-check's verdict on a connected attempt, and its TLS policy's.

        A connection whose TLS verdict still waits (its TLSA, the MTA-STS policy) is
        parked like one the self-check waits for: the race goes on meanwhile, so that a
        refusal when the answer comes leaves the other exchangers their chance.  At the
        race's deadline it wins, and the handoff waits for the verdict
        (``_winner_verdict``).
        """
        check = self_check_verdict(attempt, self._resolution.knowledge, self._local)
        if check is not False and isinstance(self.verdict(attempt), Wait):
            return None
        return check


async def dispatch(
    destination: Destination,
    control: Control,
    lookup: Lookup,
    *,
    local: frozenset[str],
    connect: Callable[[Attempt], Awaitable[C]],
    clock: Callable[[], float] | None = None,
    penalized: Callable[[str, int], bool] | None = None,
    background: set[asyncio.Task[Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    report: bool = True,
) -> Dispatched[C]:
    """Resolve and race for ``destination``; every lookup is stopped on return.

    ``background``: where mxf-remoted keeps an MTA-STS fetch that outlives the delivery
    (None: it is cancelled).  ``environ``: the delivery's environment (its
    ``SSL_CERT_DIR``/``SSL_CERT_FILE`` locate the CAs for the MTA-STS policy host).
    ``report``: record TLS-RPT outcomes (False for the probe, which delivers nothing).

    ``clock`` gives the milliseconds the outcome's and the queries' times are in (the
    trace's clock in production; the loop's, virtual in tests, by default).
    ``penalized``: mxf-remoted's connection history (``history.History.penalized``).
    ``connect`` binds to ``control.sources`` itself (``race.tcp_connector``); they are
    passed on in the result for the trace and the probe.
    """
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    resolution = Resolution(
        destination,
        lookup,
        timeout=control.timeout_dns,
        changed=changed.set,
        clock=clock,
        dane=control.dane,
    )
    sts = _sts_flow(
        destination,
        control=control,
        lookup=lookup,
        changed=changed,
        resolution=resolution,
        clock=clock,
        background=background,
        environ=environ,
        report=report,
    )
    plan = LivePlan(destination, resolution, local, penalized, tls_policy=control.dane, sts=sts)
    race: Race[C] = Race(
        plan,
        connect,
        changed=changed,
        connect_delay=control.connect_delay,
        timeout_connect=control.timeout_connect,
        clock=clock,
    )
    resolution.start()
    if sts is not None:
        sts.start()
    requirement = NO_REQUIREMENT
    try:
        outcome: Won[C] | Lost = await race.run()
        if isinstance(outcome, Won):
            deadline = started + control.timeout_connect
            decided = await _winner_verdict(outcome.attempt, plan, changed, sts, deadline)
            if isinstance(decided, Refusal):
                outcome = _refused(outcome, clock)
            else:
                requirement = decided
    finally:
        await resolution.close()
        if sts is not None:
            await sts.close()
    final = plan.current()
    if report and control.mtasts is not None and final.facts.refused:
        record_refusals(final, control.mtasts, destination.name)
    return Dispatched(
        outcome,
        final,
        tuple(resolution.queries),
        tuple(resolution.delays_over),
        resolution.expired_at,
        control.sources,
        requirement,
        plan.sts_view(),
        tuple(resolution.knowledge.tlsa.items()),
    )


def record_refusals(plan: Plan, spool: str, domain: str) -> None:
    """TLS-RPT lines for what the TLS policy refused with a result type (a TLSA lookup
    error is RFC 8460's ``dnssec-invalid``), one per exchanger and port."""
    from mxf_remote import tlsrpt
    from mxf_remote.cares import ascii_name

    name = ascii_name(domain)
    seen: set[tuple[str, int]] = set()
    for attempt, refusal in plan.facts.refused:
        where = (attempt.exchanger, attempt.port)
        if not refusal.result_type or where in seen:
            continue
        seen.add(where)
        policy: dict[str, object] = {
            "policy-type": refusal.policy,
            "policy-string": [],
            "policy-domain": name if isinstance(name, str) else domain,
        }
        tlsrpt.record(
            spool,
            policy,
            refusal.result_type,
            sending_ip="",
            receiving_ip=attempt.address,
            receiving_mx=attempt.exchanger,
            reason=refusal.text,
        )


def _sts_flow(
    destination: Destination,
    *,
    control: Control,
    lookup: Lookup,
    changed: asyncio.Event,
    resolution: Resolution,
    clock: Callable[[], float] | None,
    background: set[asyncio.Task[Any]] | None,
    environ: Mapping[str, str] | None,
    report: bool,
) -> StsFlow | None:
    """The MTA-STS flow, for a destination found through DNS when ``control/mtasts`` is set."""
    if control.mtasts is None or destination.literal is not None or destination.relays:
        return None
    from mxf_remote.cares import ascii_name
    from mxf_remote.stsflow import StsFlow

    domain = ascii_name(destination.name)  # an IDN publishes its policy under its A-labels
    return StsFlow(
        domain if isinstance(domain, str) else "",
        control.mtasts,
        lookup,
        changed=changed.set,
        queries=resolution.queries,
        clock=clock or (lambda: asyncio.get_running_loop().time() * 1000),
        timeout_dns=control.timeout_dns,
        background=background,
        environ=environ,
        report=report,
    )


async def _winner_verdict(
    attempt: Attempt,
    plan: LivePlan,
    changed: asyncio.Event,
    sts: StsFlow | None,
    deadline: float,
) -> Requirement | Refusal:
    """The winner's TLS verdict, once it no longer waits.

    A TLSA answer is bounded by ``timeoutdns`` (resolution's deadline turns it into a
    temporary failure, which DANE refuses); the MTA-STS policy by the connect phase, after
    which the flow settles for its fallback (``StsFlow.give_up``).
    """
    loop = asyncio.get_running_loop()
    while True:
        decided = plan.verdict(attempt)
        if not isinstance(decided, Wait):
            return decided
        if sts is not None and sts.pending and loop.time() >= deadline:
            sts.give_up()
            continue
        changed.clear()
        timer = loop.call_at(deadline, changed.set) if sts is not None and sts.pending else None
        try:
            await changed.wait()
        finally:
            if timer is not None:
                timer.cancel()


def _refused(won: Won[C], clock: Callable[[], float] | None) -> Lost:
    """A winner its TLS policy refused: closed, and the race lost."""
    won.connection.close()
    ended = clock() if clock is not None else asyncio.get_running_loop().time() * 1000
    fates = tuple(
        AttemptFate(f.attempt, f.start, ended, Fate.CUT_BY_TLS_POLICY, None, f.parked)
        if f.attempt == won.attempt
        else f
        for f in won.fates
    )
    return Lost(fates, False, ended)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's default loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_dispatch(
    destination: Destination,
    control: Control,
    nameservers: list[str],
    *,
    local: frozenset[str],
    clock: Callable[[], float],
    penalized: Callable[[str, int], bool] | None = None,
    report: bool = True,
) -> Dispatched[socket.socket]:
    """Run ``dispatch`` on a fresh loop with c-ares, and close everything before returning.

    ``penalized``: a connection history to order the plan by (the probe shows the
    server's).  ``report``: record TLS-RPT outcomes (the probe does not).
    """
    loop = new_event_loop()
    try:
        return loop.run_until_complete(
            _dispatch_with_cares(
                destination,
                control,
                nameservers,
                local=local,
                clock=clock,
                penalized=penalized,
                report=report,
            )
        )
    finally:
        loop.close()


def make_lookup(control: Control, nameservers: list[str]) -> Any:
    """The delivery's ``Lookup``: c-ares, or with ``control/dane`` on the AD-aware stub.

    DANE needs to know which answers the validating resolver authenticated; c-ares can
    neither ask for nor report that (dane-mta-sts.md §1), so every question of the
    delivery goes through ``dnssec.DnssecLookup`` then -- never a mix, in which an
    unvalidated answer could race a validated one.
    """
    if control.dane:
        from mxf_remote.dnssec import DnssecLookup

        return DnssecLookup(nameservers)
    from mxf_remote.cares import CaresLookup

    return CaresLookup(nameservers, asyncio.get_running_loop())


async def no_lookup(name: str, rtype: str) -> Answer[object]:
    """The lookup of a destination that needs no DNS (never asked anything)."""
    return Answer(Status.TEMPFAIL)


async def _dispatch_with_cares(
    destination: Destination,
    control: Control,
    nameservers: list[str],
    *,
    local: frozenset[str],
    clock: Callable[[], float],
    penalized: Callable[[str, int], bool] | None,
    report: bool,
) -> Dispatched[socket.socket]:
    if not destination.needs_dns:  # a literal: spare the c-ares import and channel
        return await dispatch(
            destination,
            control,
            no_lookup,
            local=local,
            connect=tcp_connector(control.sources),
            clock=clock,
            penalized=penalized,
            environ=os.environ,  # a one-shot process: the delivery's own environment
            report=report,
        )
    lookup = make_lookup(control, nameservers)
    try:
        return await dispatch(
            destination,
            control,
            lookup,
            local=local,
            connect=tcp_connector(control.sources),
            clock=clock,
            penalized=penalized,
            environ=os.environ,  # a one-shot process: the delivery's own environment
            report=report,
        )
    finally:
        await lookup.close()
