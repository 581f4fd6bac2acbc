"""One delivery's MTA-STS policy (RFC 8461 §5): found, fetched or cached, while the race runs.

The flow, started at the same moment as the MX question so that it costs no round trip:

1. ``TXT _mta-sts.<domain>``.  No valid ``v=STSv1`` record (or the lookup failed): the
   cached policy if it is still fresh (§5.1: a domain that drops the record keeps its
   policy until ``max_age``), else no policy.
2. A record whose ``id`` equals the cached policy's, and that policy still fresh: use it
   at once.
3. Otherwise fetch it: ``mta-sts.<domain>``'s AAAA and A, then one HTTPS GET
   (``stsfetch.py``), all in parallel with the race.  Fetched and valid: cache it
   (``mtasts.PolicyCache``, one file per domain, written atomically) and use it.  Failed:
   record ``sts-policy-fetch-error``/``sts-webpki-invalid``/``sts-policy-invalid`` for
   TLS-RPT, then fall back to a fresh cached policy, else to none.

Until the flow ends, the view is ``pending``: SMTP attempts race anyway (the handoff waits
for the policy), attempts without TLS wait.  The first delivery to a new domain must not
wait longer than the connect phase: ``give_up`` (called by the dispatcher at the race's
deadline) settles the view as the fallback while the fetch goes on -- to its end in
``mxf-remoted`` (its result is cached for the next delivery), cancelled in a one-shot
``mxf-remote`` that is about to exec.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from mxf_remote.knowledge import Status
from mxf_remote.mtasts import (
    CachedPolicy,
    Policy,
    PolicyCache,
    PolicyError,
    parse_policy,
    parse_sts_record,
    policy_domain,
    policy_strings,
)
from mxf_remote.resolution import Lookup, Query
from mxf_remote.tlspolicy import StsView

FETCH_TIMEOUT = 10.0
"""Seconds for the whole HTTPS fetch (RFC 8461 §3.3 leaves it to the sender; the
reference resolver uses 4 s for a warm daemon, a cold one is bounded by the connect phase
anyway)."""


class StsFlow:
    """The MTA-STS policy of one destination domain, as it becomes known."""

    def __init__(
        self,
        domain: str,
        cache_dir: str,
        lookup: Lookup,
        *,
        changed: Callable[[], None],
        queries: list[Query],
        clock: Callable[[], float],
        timeout_dns: float,
        fetch_timeout: float = FETCH_TIMEOUT,
        wall: Callable[[], float] = time.time,
        background: set[asyncio.Task[Any]] | None = None,
        environ: Mapping[str, str] | None = None,
        refresh: bool = False,
        report: bool = True,
    ) -> None:
        self.domain = policy_domain(domain) or ""
        self._environ = environ if environ is not None else {}
        """The delivery's environment: its ``SSL_CERT_DIR``/``SSL_CERT_FILE`` say which CAs
        the policy host's certificate must come from."""
        self._refresh = refresh
        """Fetch even when the cached policy has the TXT record's id (``stsrefresh``)."""
        self._report = report
        """Record a failed fetch for TLS-RPT (not for the probe: it delivers nothing, and a
        spool file it made as root could not be appended to by the delivery user)."""
        self.cache = PolicyCache(cache_dir)
        self.cache_dir = cache_dir
        self._lookup = lookup
        self._changed = changed
        self._queries = queries
        self._clock = clock
        self._timeout_dns = timeout_dns
        self._fetch_timeout = fetch_timeout
        self._wall = wall
        self._background = background
        self._task: asyncio.Task[None] | None = None
        self._view = StsView("pending", self.domain)
        self._cached: CachedPolicy | None = None

    def view(self) -> StsView:
        """What is known now (``tlspolicy.StsView``)."""
        return self._view

    @property
    def pending(self) -> bool:
        """True until the policy (or its absence) is known, or ``give_up`` was called."""
        return self._view.state == "pending"

    def start(self) -> None:
        """Ask the TXT question (with MX, in the first flight) and go on from there."""
        if not self.domain:  # not a name a policy can be published for
            self._view = StsView("none", self.domain, source="not a domain name")
            return
        self._task = asyncio.get_running_loop().create_task(self._guarded())

    async def run(self) -> StsView:
        """The whole flow, awaited (``stsrefresh`` renews a policy this way)."""
        if not self.domain:
            return StsView("none", self.domain, source="not a domain name")
        await self._guarded()
        return self._view

    def give_up(self) -> None:
        """The connect phase is over: settle for the fallback, let the fetch go on."""
        if self.pending:
            self._settle_fallback("policy not fetched in time")

    async def close(self) -> None:
        """Stop the flow, or hand an unfinished fetch to ``background`` (mxf-remoted)."""
        task = self._task
        if task is None or task.done():
            return
        if self._background is not None:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # -- the flow ----------------------------------------------------------------------

    async def _ask(self, name: str, rtype: str) -> tuple[Status, tuple[Any, ...]]:
        query = Query(name, rtype, self._clock())
        self._queries.append(query)
        try:
            async with asyncio.timeout(self._timeout_dns):
                answer = await self._lookup(name, rtype)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a timeout or a resolver bug: a temporary failure
            query.error = repr(error)
            return Status.TEMPFAIL, ()
        query.answered, query.status, query.records = self._clock(), answer.status, answer.records
        query.cached, query.secure = answer.cached, answer.secure
        return answer.status, answer.records

    async def _guarded(self) -> None:
        """``_run``, a bug in which costs the policy, never the delivery: an exception left
        in a task would be printed on stderr -- the report pipe -- when it is collected."""
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._settle_fallback(f"internal error: {type(error).__name__}: {error}")

    async def _run(self) -> None:
        self._cached = self.cache.load(self.domain)
        status, records = await self._ask(f"_mta-sts.{self.domain}", "TXT")
        record = parse_sts_record(records) if status is Status.OK else None
        if record is None:
            why = "TXT lookup failed" if status is Status.TEMPFAIL else "no MTA-STS record"
            self._settle_fallback(why)
            return
        cached = self._cached
        same = cached is not None and cached.id == record.id and cached.fresh(self._wall())
        if cached is not None and same and not self._refresh:
            self._settle(cached.policy, "cache")
            return
        policy = await self._fetch()
        if policy is not None:
            self.cache.store(self.domain, record.id, policy, self._wall())
            self._settle(policy, "fetched")

    async def _fetch(self) -> Policy | None:
        """The policy from the policy host; None after recording why not."""
        from mxf_remote import stsfetch

        host = f"mta-sts.{self.domain}"
        answers = await asyncio.gather(self._ask(host, "AAAA"), self._ask(host, "A"))
        addresses = [a for status, records in answers if status is Status.OK for a in records]
        try:
            if not addresses:
                raise stsfetch.FetchError(stsfetch.FETCH_ERROR, f"{host} has no address")
            try:
                context = stsfetch.default_context(self._environ)
            except (OSError, ssl.SSLError) as error:
                why = f"cannot load the system's CA certificates: {error}"
                raise stsfetch.FetchError(stsfetch.FETCH_ERROR, why) from None
            body = await stsfetch.fetch_policy(
                self.domain, addresses, context=context, timeout=self._fetch_timeout
            )
            return parse_policy(body)
        except stsfetch.FetchError as error:
            self._failed(error.result_type, error.text)
        except PolicyError as error:
            self._failed("sts-policy-invalid", str(error))
        return None

    def _failed(self, result_type: str, text: str) -> None:
        why = f"{result_type}: {text}"  # the fallback view's source: the probe shows it
        if self._report and self.cache_dir:
            from mxf_remote import tlsrpt

            policy: dict[str, object] = {
                "policy-type": "sts",
                "policy-string": [],
                "policy-domain": self.domain,
            }
            tlsrpt.record(
                self.cache_dir,
                policy,
                result_type,
                sending_ip="",
                receiving_ip="",
                receiving_mx="",
                reason=text,
            )
        self._settle_fallback(why)

    def _settle_fallback(self, why: str) -> None:
        cached = self._cached
        if cached is not None and cached.fresh(self._wall()):
            self._settle(cached.policy, f"cache ({why})")
        else:
            self._set(StsView("none", self.domain, source=why))

    def _settle(self, policy: Policy, source: str) -> None:
        self._set(StsView("policy", self.domain, policy, source))

    def _set(self, view: StsView) -> None:
        if self.pending:  # after give_up, a late result only feeds the cache
            self._view = view
            self._changed()


def sts_policy_json(view: StsView) -> dict[str, object]:
    """The RFC 8460 §4.4 ``policy`` object of a policy view (for TLS-RPT)."""
    policy = view.policy
    return {
        "policy-type": "sts",
        "policy-string": [] if policy is None else policy_strings(policy),
        "policy-domain": view.domain,
        "mx-host": [] if policy is None else list(policy.mx),
    }
