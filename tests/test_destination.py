"""Tests for mxf_remote/destination.py: what a delivery is addressed to, parsed once."""

from __future__ import annotations

from mxf_remote.control import Protocol, Route, parse_routes
from mxf_remote.destination import Destination, Relay, make_destination, parse_relay


def protocol(service: str, port: int, mxps: int) -> Protocol:
    """An installed protocol."""
    return Protocol(service, port, mxps, False, False, service, program_path=f"/bin/{service}")


QMTPS = protocol("qmtps", 6209, -1)
QMTP = protocol("qmtp", 209, 1)
SMTP = protocol("smtp", 25, 0)
DEFAULT = (QMTPS, QMTP, SMTP)


def relay(protocol: Protocol, written: str, port: int | None = None) -> Relay:
    """The Relay a route to a DNS name parses into."""
    name = written.rstrip(".").lower()
    return Relay(protocol, written, name, None, port or protocol.default_port)


class TestMakeDestination:
    """Routes first (a literal can be a routes key), then literal, then DNS."""

    def test_dns(self) -> None:
        """A domain without routes goes to DNS."""
        destination = make_destination("Example.COM.", DEFAULT, {})
        assert destination == Destination("Example.COM.", DEFAULT)
        assert destination.literal is None
        assert destination.relays == ()
        assert destination.name == "example.com"
        assert destination.needs_dns

    def test_literal(self) -> None:
        """A literal without routes is a literal destination and needs no DNS."""
        destination = make_destination("[IPv6:2001:db8::1]", DEFAULT, {})
        assert destination.literal == "2001:db8::1"
        assert destination.relays == ()
        assert not destination.needs_dns

    def test_routes_first(self) -> None:
        """A route for the host makes it routed, in protocol order, each relay parsed."""
        routes = {
            "smtp": parse_routes([":relay-s"], "smtproutes"),
            "qmtp": parse_routes(["example.com:relay-q:2209"], "qmtproutes"),
        }
        destination = make_destination("EXAMPLE.com", DEFAULT, routes)
        assert destination.relays == (relay(QMTP, "relay-q", 2209), relay(SMTP, "relay-s"))
        assert destination.protocols == DEFAULT
        assert destination.host == "EXAMPLE.com"
        assert destination.needs_dns

    def test_literal_can_be_routed(self) -> None:
        """A literal host can be a routes key, as in qmail."""
        routes = {"smtp": parse_routes(["[192.0.2.9]:relay"], "smtproutes")}
        destination = make_destination("[192.0.2.9]", DEFAULT, routes)
        assert destination.relays == (relay(SMTP, "relay"),)
        assert destination.literal is None

    def test_default_route_covers_literals(self) -> None:
        """The default route applies to literal hosts too."""
        routes = {"smtp": parse_routes([":relay"], "smtproutes")}
        assert make_destination("192.0.2.9", DEFAULT, routes).relays == (relay(SMTP, "relay"),)

    def test_empty_relay_is_no_route(self) -> None:
        """An empty relay means DNS for this host."""
        routes = {"smtp": parse_routes([".af.mil:", ":heaven.af.mil"], "smtproutes")}
        assert make_destination("inside.af.mil", DEFAULT, routes).relays == ()
        assert make_destination("example.com", DEFAULT, routes).relays == (
            relay(SMTP, "heaven.af.mil"),
        )

    def test_routes_of_other_services_ignored(self) -> None:
        """A routes table for a protocol not in use does not count."""
        routes = {"lmtp": parse_routes([":relay"], "lmtproutes")}
        assert make_destination("example.com", DEFAULT, routes).relays == ()

    def test_empty_table(self) -> None:
        """An empty routes file routes nothing."""
        assert make_destination("example.com", DEFAULT, {"smtp": {}}).relays == ()

    def test_only_literal_relays_need_no_dns(self) -> None:
        """Routed to literals only: no DNS at all; one named relay: DNS."""
        literal = {"smtp": parse_routes([":[192.0.2.25]:2525"], "smtproutes")}
        assert not make_destination("example.com", DEFAULT, literal).needs_dns
        mixed = {**literal, "qmtp": parse_routes([":relay.example"], "qmtproutes")}
        assert make_destination("example.com", DEFAULT, mixed).needs_dns


class TestParseRelay:
    """A relay is parsed once: name or literal, and the port to use."""

    def test_name_is_normalised_and_written_form_kept(self) -> None:
        """``Relay.Example.``: looked up as relay.example, reported as written."""
        assert parse_relay(SMTP, Route("Relay.Example.", None)) == Relay(
            SMTP, "Relay.Example.", "relay.example", None, 25
        )

    def test_ipv6_literal_with_port(self) -> None:
        """``[2001:db8::25]:2525`` is a literal at port 2525, no name."""
        assert parse_relay(SMTP, Route("[2001:db8::25]", 2525)) == Relay(
            SMTP, "[2001:db8::25]", None, "2001:db8::25", 2525
        )

    def test_bare_dotted_quad_is_a_literal(self) -> None:
        """A bare dotted quad is a literal (qmail's rule), at the protocol's port."""
        assert parse_relay(QMTP, Route("192.0.2.7", None)) == Relay(
            QMTP, "192.0.2.7", None, "192.0.2.7", 209
        )

    def test_bad_literal_is_a_name(self) -> None:
        """``[IPv6:zzz]`` is no address: it is looked up as a name, like qmail would."""
        parsed = parse_relay(SMTP, Route("[IPv6:zzz]", None))
        assert (parsed.literal, parsed.name) == (None, "[ipv6:zzz]")
