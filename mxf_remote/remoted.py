"""``mxf-remoted``'s entry point: start the TLS forker while the process is still small.

``tlsforker`` must be forked before the server loads asyncio, uvloop, aiodns and its
caches, so that what it forks per delivery stays small; the server itself
(``server.py``) is imported only after that fork.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

USAGE = "usage: mxf-remoted [--exec-clients]"


def main() -> NoReturn:
    """Entry point of ``mxf-remoted``."""
    options = sys.argv[1:]
    if any(option != "--exec-clients" for option in options):
        raise SystemExit(USAGE)
    tls_jobs = None
    if "--exec-clients" not in options:
        from mxf_remote import tlsforker

        tls_jobs = tlsforker.start()
    from mxf_remote.server import run

    run(options, tls_jobs)
