"""mxf-remoted renews MTA-STS policies before they expire, so deliveries find them cached.

RFC 8461 §5.1 lets a sender refresh a policy proactively; for a warm server it is what
keeps the first delivery after ``max_age`` from waiting on an HTTPS fetch, and keeps a
policy in force while its host is briefly unreachable.  Every policy a delivery used is
remembered (the cache directory, the domain, which nameservers and CAs that delivery
had); once per ``REFRESH_INTERVAL`` the ones whose cached copy ends within
``refresh_ahead`` are fetched again through the same flow a delivery uses
(``stsflow.StsFlow``, asked to fetch even when the TXT ``id`` is unchanged), one at a
time, and stored.  A failed refresh leaves the cached copy as it was, until it expires.
A domain whose cached copy is gone, or that has not been delivered to since its policy
expired, is forgotten.  The number remembered is bounded (least recently used first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from mxf_remote.mtasts import CachedPolicy, PolicyCache

REFRESH_INTERVAL = 600.0
"""Seconds between two rounds."""
MAX_REMEMBERED = 10_000


def refresh_ahead(cached: CachedPolicy) -> float:
    """How long before its expiry a policy is renewed: a quarter of its lifetime, and at
    least two rounds (so one failed round does not let it lapse)."""
    return max((cached.expires - cached.fetched) / 4, 2 * REFRESH_INTERVAL)


class Remembered(NamedTuple):
    """What a refresh needs from the delivery that used the policy."""

    nameservers: tuple[str, ...]
    dane: bool
    environ: Mapping[str, str]
    """``SSL_CERT_DIR``/``SSL_CERT_FILE``: the CAs that delivery trusted."""
    timeout_dns: float


class PolicyRefresher:
    """The policies deliveries used, renewed in the background."""

    def __init__(
        self,
        lookup_for: Callable[[list[str], bool], Any],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lookup_for = lookup_for
        self._wall = wall
        self._known: OrderedDict[tuple[str, str], Remembered] = OrderedDict()
        self.refreshed = 0
        """Policies renewed so far (for the log and the tests)."""

    def remember(self, cache_dir: str, domain: str, remembered: Remembered) -> None:
        """A delivery used the policy of ``domain`` from ``cache_dir``."""
        key = (cache_dir, domain)
        self._known[key] = remembered
        self._known.move_to_end(key)
        while len(self._known) > MAX_REMEMBERED:
            self._known.popitem(last=False)

    def due(self) -> list[tuple[str, str]]:
        """The (directory, domain) to renew now; forgets the ones with nothing cached."""
        now = self._wall()
        due = []
        for key in list(self._known):
            cached = PolicyCache(key[0]).load(key[1])
            if cached is None or not cached.fresh(now):
                del self._known[key]
            elif cached.expires - now <= refresh_ahead(cached):
                due.append(key)
        return due

    async def refresh_due(self) -> int:
        """Renew every policy that is due, one after the other; how many were renewed."""
        from mxf_remote.stsflow import StsFlow

        renewed = 0
        for cache_dir, domain in self.due():
            source = self._known.get((cache_dir, domain))
            if source is None:
                continue
            flow = StsFlow(
                domain,
                cache_dir,
                self._lookup_for(list(source.nameservers), source.dane),
                changed=lambda: None,
                queries=[],
                clock=lambda: 0.0,
                timeout_dns=source.timeout_dns,
                environ=source.environ,
                refresh=True,
                report=False,  # no delivery's session: nothing for TLS-RPT
                wall=self._wall,
            )
            view = await flow.run()
            if view.source == "fetched":
                renewed += 1
        self.refreshed += renewed
        return renewed

    async def run(self, interval: float = REFRESH_INTERVAL) -> None:
        """Round after round until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug must not end the renewals for good
                from mxf_remote.server import log

                log(f"policy renewal: internal error: {type(error).__name__}: {error}")
