"""Session set-up: a private network namespace, and hygiene checks around every test.

The whole test session moves into a network namespace of its own before any test runs
(``tests/infra/netns.py``): silent hosts are made there with nftables, test servers
listen on loopback addresses that are not interface addresses, and nothing outside the
namespace is touched.  This must happen while the process is single-threaded, which is
why it runs when pytest imports this file.  Where no namespace can be made, tests that
need one are skipped with the reason.

Shared module-scoped servers, each made from a variable of the module that uses it:

* ``knot``: a ``KnotServer`` serving the module's ``ZONES`` (origin → zone text), and
  answering SERVFAIL for its ``SERVFAIL_ZONES`` when it has them;
* ``dnssec_lab``: a ``DnssecLab`` (knotd signing, unbound validating) serving the module's
  ``DNSSEC_ZONES`` (origin → zone text), signing its ``DNSSEC_SIGNED`` and publishing a
  wrong DS for its ``DNSSEC_BROKEN_DS`` when it has them;
* ``listeners``: ``remotekit.Listeners`` greeting on the module's ``LISTENERS``
  (``(address, port)`` pairs);
* ``sink`` (and ``arrivals``, the same emptied for each test): one aiosmtpd on port 25 of
  each of the module's ``SINK_ADDRESSES``.

Both need the private network namespace (the ``netns`` fixture).  A module that needs
something else (a knot with other options, listeners per test) defines its own fixture
of the same name, which takes precedence.

Hygiene (after aiohappyeyeballs' conftest, plus what exec/fd work needs): a test fails
if it leaves a thread, a child process or an open file descriptor behind.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.infra.netns import enter_private_netns, nft_available

if TYPE_CHECKING:
    from tests.infra.dnsseclab import DnssecLab
    from tests.infra.knot import KnotServer
    from tests.remotekit import Listeners
    from tests.sinkkit import SmtpSink

NETNS_PROBLEM = enter_private_netns()
NFT_PROBLEM = nft_available() if NETNS_PROBLEM is None else NETNS_PROBLEM


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--warm``: run the deliveries through one mxf-remoted (the warm path)."""
    parser.addoption(
        "--warm",
        action="store_true",
        help="deliver through one mxf-remoted started for the session (control/remotedsocket)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--warm``, skip the tests marked ``cold_only`` (with their reason)."""
    if not config.getoption("--warm"):
        return
    for item in items:
        marker = item.get_closest_marker("cold_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"in-process path only: {marker.args[0]}"))


@pytest.fixture(scope="session", autouse=True)
def warm_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under ``--warm``: one mxf-remoted for the session, used by every QmailHome."""
    if not request.config.getoption("--warm"):
        yield
        return
    from tests import remotekit
    from tests.remotedkit import RemotedServer

    server = RemotedServer()
    remotekit.WARM_SOCKET = server.socket
    try:
        yield
    finally:
        remotekit.WARM_SOCKET = None
        status = server.stop()
        log = server.log_text()
        server.close()
        assert status == 0 and "internal error" not in log, log


@pytest.fixture(scope="session")
def netns() -> None:
    """Skip unless the session runs in its own network namespace."""
    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")


def _module_setting(request: pytest.FixtureRequest, name: str) -> Any:
    """The requesting test module's variable ``name`` (the test errors when it has none)."""
    if not hasattr(request.module, name):
        pytest.fail(
            f"{request.module.__name__} uses the {request.fixturename!r} fixture"
            f" but does not define {name}",
            pytrace=False,
        )
    return getattr(request.module, name)


@pytest.fixture(scope="module")
def knot(request: pytest.FixtureRequest, netns: None) -> Iterator[KnotServer]:
    """knotd serving the module's ``ZONES`` (and SERVFAIL for its ``SERVFAIL_ZONES``)."""
    from tests.infra.knot import KnotServer

    zones = _module_setting(request, "ZONES")
    servfail = getattr(request.module, "SERVFAIL_ZONES", ())
    with KnotServer(zones, servfail_zones=servfail) as server:
        yield server


@pytest.fixture(scope="module")
def dnssec_lab(request: pytest.FixtureRequest, netns: None) -> Iterator[DnssecLab]:
    """knotd signing and unbound validating the module's ``DNSSEC_ZONES``."""
    from tests.infra.dnsseclab import DnssecLab, missing_tools

    problem = missing_tools()
    if problem is not None:
        pytest.skip(f"no DNSSEC lab: {problem}")
    zones = _module_setting(request, "DNSSEC_ZONES")
    signed = _module_setting(request, "DNSSEC_SIGNED")
    broken = getattr(request.module, "DNSSEC_BROKEN_DS", ())
    with DnssecLab(zones, signed=signed, broken_ds=broken) as lab:
        yield lab


@pytest.fixture(scope="module")
def listeners(request: pytest.FixtureRequest, netns: None) -> Iterator[Listeners]:
    """Listeners that greet, on each ``(address, port)`` of the module's ``LISTENERS``."""
    from tests.remotekit import Listeners

    where = _module_setting(request, "LISTENERS")
    servers = Listeners()
    try:
        for address, port in where:
            servers.listen(address, port)
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def sink(request: pytest.FixtureRequest, netns: None) -> Iterator[SmtpSink]:
    """One aiosmtpd (``sinkkit.SmtpSink``) on port 25 of each of the module's
    ``SINK_ADDRESSES``."""
    from tests.sinkkit import SmtpSink

    server = SmtpSink()
    try:
        for address in _module_setting(request, "SINK_ADDRESSES"):
            server.listen(address, 25)
        yield server
    finally:
        server.close()


@pytest.fixture
def arrivals(sink: SmtpSink) -> SmtpSink:
    """The module's sink, emptied for this test."""
    sink.arrivals.clear()
    return sink


@pytest.fixture
def silent_hosts(netns: None) -> Iterator[None]:
    """Skip unless SYN-dropping rules can be made; remove every rule afterwards."""
    if NFT_PROBLEM is not None:
        pytest.skip(f"cannot make silent hosts: {NFT_PROBLEM}")
    from tests.infra.netns import unsilence_all

    try:
        yield
    finally:
        unsilence_all()


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as listing:
                found.update(int(pid) for pid in listing.read().split())
        except OSError:
            continue
    return found


T = TypeVar("T")

PERMANENT_THREAD_SUFFIXES = ("(_run_safe_shutdown_loop)",)
"""pycares starts one daemon thread, once per process, to destroy closed channels."""


def _settle(snapshot: Callable[[], set[T]], before: set[T], seconds: float = 2.0) -> set[T]:
    """What ``snapshot`` has beyond ``before``, after giving it time to wind down."""
    extra = snapshot() - before
    deadline = time.monotonic() + seconds
    while extra and time.monotonic() < deadline:
        gc.collect()  # only when something is left: a collection per test costs ~20 ms
        extra = snapshot() - before
        if extra:
            time.sleep(0.02)
    return extra


@pytest.fixture(autouse=True)
def hygiene() -> Iterator[None]:
    """Fail a test that leaves threads, child processes or descriptors behind."""
    threads = set(threading.enumerate())
    children = _children()
    fds = _open_fds()
    yield
    left_threads = {
        t
        for t in _settle(lambda: set(threading.enumerate()), threads)
        if not t.name.endswith(PERMANENT_THREAD_SUFFIXES)
    }
    left_children = _settle(_children, children)
    left_fds = _settle(_open_fds, fds)
    problems = []
    if left_threads:
        problems.append(f"threads left running: {sorted(t.name for t in left_threads)}")
    if left_children:
        problems.append(f"child processes left: {sorted(left_children)}")
    if left_fds:
        targets = []
        for fd in sorted(left_fds):
            try:
                targets.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
            except OSError:
                targets.append(str(fd))
        problems.append(f"descriptors left open: {targets}")
    if problems:
        pytest.fail("; ".join(problems))
