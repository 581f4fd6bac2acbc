"""International names end to end: knot -> mxf-remote -> mxf-remote-smtpc -> aiosmtpd.

The zone holds A-labels only (``xn--fa-hia`` is ``faß``), as real DNS does; the host,
the sender and the recipient are given in UTF-8, as qmail queues them.  A decoy,
``fass`` (IDNA 2003's spelling of ``faß``), has an exchanger of its own that must never
get the mail.  aiosmtpd offers SMTPUTF8 (its ``Controller`` does by default), so the
envelope goes out and is stored as UTF-8.  Reports name the host as it was given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clientkit import fold
from tests.deliverykit import clear_text_home, deliver
from tests.infra.knot import KnotServer
from tests.remotekit import QmailHome
from tests.sinkkit import SINK_ACCEPTED, SmtpSink

pytestmark = [pytest.mark.knot]

EXCHANGER = "127.0.12.1"
EXCHANGER6 = "fd6d:7866::c01"
DECOY = "127.0.12.2"

ZONE = f"""
xn--fa-hia                MX    10 xn--mx-cja.xn--fa-hia
xn--mx-cja.xn--fa-hia     A     {EXCHANGER}
xn--mx-cja.xn--fa-hia     AAAA  {EXCHANGER6}
fass                      MX    10 mx.fass
mx.fass                   A     {DECOY}
xn--bcher-kva             A     {EXCHANGER}
"""
ZONES = {"idn.test": ZONE, "wild.test": f"* A {DECOY}\n"}

SENDER = "\u7528\u6237@\u4f8b\u5b50.example"
"""用户@例子.example"""
RECIPIENT = "j\u00f6rg@fa\u00df.idn.test"
"""jörg@faß.idn.test"""


SINK_ADDRESSES = (EXCHANGER, EXCHANGER6, DECOY)
"""Where the module's sink (conftest.py) listens, on port 25."""


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home: clear-text QMTP (slice 1) and SMTP by bare program name."""
    return clear_text_home(tmp_path)


def accepted(address: str) -> bytes:
    """The reports of a delivery to one recipient that ``address`` accepted."""
    said = f"K{address} accepted message.\nRemote host said: {SINK_ACCEPTED}\n"
    return b"r\0" + said.encode() + b"\0"


@pytest.mark.usefixtures("netns")
class TestIdnDelivery:
    """A UTF-8 domain is resolved by its A-labels and the UTF-8 envelope is delivered."""

    def test_sharp_s_is_delivered_to_its_a_label_exchanger(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """faß.idn.test: MX of xn--fa-hia (IPv6 first), SMTPUTF8 envelope stored as UTF-8."""
        delivery = deliver(home, "fa\u00df.idn.test", knot, recipients=(RECIPIENT,), sender=SENDER)
        assert delivery.stdout == accepted(EXCHANGER6)
        assert fold(delivery.stdout).startswith(b"K")
        arrival = arrivals.arrival()
        assert (arrival.exchanger, arrival.sender, arrival.recipients) == (
            EXCHANGER6,
            SENDER,
            [RECIPIENT],
        )
        assert arrival.mail_options[-1] == "SMTPUTF8"
        assert arrivals.no_arrival()

    def test_upper_case_and_a_trailing_dot(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """FAß.IDN.TEST. reaches the same exchanger; the ASCII envelope has no SMTPUTF8."""
        delivery = deliver(home, "FA\u00df.IDN.TEST.", knot, recipients=("bob@example.org",))
        assert delivery.stdout == accepted(EXCHANGER6)
        arrival = arrivals.arrival()
        assert (arrival.exchanger, arrival.recipients) == (EXCHANGER6, ["bob@example.org"])
        assert "SMTPUTF8" not in arrival.mail_options

    def test_an_implicit_mx_in_unicode(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """bücher.idn.test has no MX: its own A record (xn--bcher-kva) gets the mail."""
        delivery = deliver(
            home, "b\u00fccher.idn.test", knot, recipients=("b\u00fccher@b\u00fccher.idn.test",)
        )
        assert delivery.stdout == accepted(EXCHANGER)
        arrival = arrivals.arrival()
        assert (arrival.exchanger, arrival.recipients) == (
            EXCHANGER,
            ["b\u00fccher@b\u00fccher.idn.test"],
        )

    def test_a_name_no_idn_can_be_bounces_naming_the_host(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """a\u05d0.wild.test breaks the bidi rule: D #5.1.2, never asked (the wildcard)."""
        delivery = deliver(home, "a\u05d0.wild.test", knot, recipients=("x@example.org",))
        assert delivery.stdout == (
            b"DSorry, I couldn't find any host named a??.wild.test. (#5.1.2)\n\0"
        )
        assert arrivals.no_arrival()

    def test_an_unknown_code_point_defers(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """A code point this Python does not know yet: Z #4.1.2, not a bounce."""
        from tests.test_cares import unassigned_code_point

        host = f"a{unassigned_code_point()}.wild.test"
        delivery = deliver(home, host, knot, recipients=("x@example.org",))
        assert delivery.stdout == b"ZSorry, I couldn't find any host by that name. (#4.1.2)\n\0"
        assert arrivals.no_arrival()

    def test_a_relay_in_unicode(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """smtproutes ``routed.test:mxé.faß.idn.test``: the relay is resolved by A-labels."""
        home.control("smtproutes", "routed.test:mx\u00e9.fa\u00df.idn.test\n")
        delivery = deliver(home, "routed.test", knot, recipients=("bob@routed.test",))
        assert delivery.stdout == accepted(EXCHANGER6)
        assert arrivals.arrival().recipients == ["bob@routed.test"]
