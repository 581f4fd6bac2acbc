"""TXT through ``CaresLookup`` (mxf_remote/cares.py): one ``bytes`` per record.

A TXT record is one or more character-strings (RFC 1035 §3.3.14); MTA-STS and TLS-RPT
records (RFC 8461 §3.1, RFC 8460 §3) are read with the strings of one record joined, and
pycares 5 hands them over joined already (``TXTRecordData.data``).  Served by a real knot.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pycares
import pytest

from mxf_remote.cares import CaresLookup
from mxf_remote.knowledge import Answer, Status
from tests.infra.knot import KnotServer

pytestmark = pytest.mark.knot

LONG = "x" * 255
ZONES = {
    "txt.test": "\n".join(
        [
            '_mta-sts TXT "v=STSv1; id=20261201T000000;"',
            'split TXT "v=TLSRPTv1; " "rua=mailto:tlsrpt@txt.test"',
            'empty TXT "" "after an empty string"',
            'nothing TXT ""',
            'two TXT "first record"',
            'two TXT "second record"',
            r'octets TXT "caf\195\169 \000 \"quoted\""',
            f'long TXT "{LONG}" "{LONG}" "tail"',
            "noaddress A 192.0.2.1",
            "alias CNAME _mta-sts",
        ]
    )
}


@pytest.fixture(scope="module", autouse=True)
def pycares_shutdown_thread() -> None:
    """pycares' one daemon thread, started before any test's hygiene snapshot."""
    pycares.Channel().close()


def ask_txt(knot: KnotServer, name: str) -> Answer[Any]:
    """``name`` TXT through one ``CaresLookup`` on a fresh loop."""

    async def main() -> Answer[Any]:
        lookup = CaresLookup(knot.nameservers, asyncio.get_running_loop())
        try:
            return await lookup(name, "TXT")
        finally:
            await lookup.close()

    return asyncio.run(asyncio.wait_for(main(), 20))


class TestTxt:
    """Each TXT record is its character-strings joined, as bytes."""

    def test_one_string(self, knot: KnotServer) -> None:
        """An MTA-STS record: its text."""
        answer = ask_txt(knot, "_mta-sts.txt.test")
        assert answer == Answer(Status.OK, (b"v=STSv1; id=20261201T000000;",))
        assert answer.ttl == 300

    def test_strings_of_one_record_are_joined(self, knot: KnotServer) -> None:
        """Two character-strings: one value, no separator added."""
        answer = ask_txt(knot, "split.txt.test")
        assert answer.records == (b"v=TLSRPTv1; rua=mailto:tlsrpt@txt.test",)

    def test_an_empty_string_adds_nothing(self, knot: KnotServer) -> None:
        """A zero-length character-string: nothing joined for it."""
        assert ask_txt(knot, "empty.txt.test").records == (b"after an empty string",)

    def test_a_record_of_one_empty_string(self, knot: KnotServer) -> None:
        """TXT "": one record, empty."""
        assert ask_txt(knot, "nothing.txt.test") == Answer(Status.OK, (b"",))

    def test_two_records_stay_two(self, knot: KnotServer) -> None:
        """Two TXT records: two values (in any order)."""
        answer = ask_txt(knot, "two.txt.test")
        assert sorted(answer.records) == [b"first record", b"second record"]

    def test_any_octet_comes_through(self, knot: KnotServer) -> None:
        """UTF-8, a NUL and quotes: the octets as they are, nothing decoded."""
        assert ask_txt(knot, "octets.txt.test").records == ('café \0 "quoted"'.encode(),)

    def test_a_record_longer_than_one_string(self, knot: KnotServer) -> None:
        """Three strings, 514 octets in all: joined whole."""
        assert ask_txt(knot, "long.txt.test").records == ((LONG * 2 + "tail").encode(),)

    def test_a_chain_to_a_txt_record(self, knot: KnotServer) -> None:
        """A CNAME to the MTA-STS name: its record."""
        assert ask_txt(knot, "alias.txt.test").records == (b"v=STSv1; id=20261201T000000;",)

    def test_nodata_and_nxdomain(self, knot: KnotServer) -> None:
        """A name without TXT: NODATA; no name: NXDOMAIN."""
        assert ask_txt(knot, "noaddress.txt.test") == Answer(Status.NODATA)
        assert ask_txt(knot, "_mta-sts.nothere.txt.test") == Answer(Status.NXDOMAIN)
