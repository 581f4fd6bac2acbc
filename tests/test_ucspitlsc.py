"""mxf-remote-ucspitlsc: the UCSPI-TLS client (STARTTLS), against a real loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxf_remote.tls.envblock import (
    IncompleteBlock,
    apply_env_block,
    encode_env_block,
    parse_env_block,
)
from tests import tlskit
from tests.tlskit import SERVER_NAME, Kit

UCSPI = "mxf-remote-ucspitlsc"
SSL_KEYS = [
    "SSL_PROTOCOL",
    "SSL_CIPHER",
    "SSL_TLS_SNI_SERVERNAME",
    "SSL_PEER_CERT_HASH",
    "SSL_PEER_CERT_SUBJECT",
]


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    """Certificates, the scripted prog, and servers that are closed afterwards."""
    kit = Kit(tmp_path)
    try:
        yield kit
    finally:
        kit.close()


def starttls(kit: Kit, action: str, *options: str, **env: str) -> tuple[dict, tlskit.Server]:
    """Run prog in ``ucspi-<action>`` mode under ucspitlsc against the STARTTLS server."""
    server = kit.server(tlskit.serve_starttls)
    status, output, record = kit.run(
        UCSPI, [*options, "-k", SERVER_NAME], server, f"ucspi-{action}", env=kit.env(**env)
    )
    assert (status, output) == (0, b"")
    assert record is not None
    return record, server


class TestEnvBlock:
    """The NUL-separated environment block."""

    def test_encoding(self) -> None:
        """KEY=value\\0 entries, bare KEY\\0 for unset, and one extra \\0 at the end."""
        block = encode_env_block([("SSL_PROTOCOL", "TLSv1.3"), ("SSL_TLS_SNI_SERVERNAME", None)])
        assert block == b"SSL_PROTOCOL=TLSv1.3\0SSL_TLS_SNI_SERVERNAME\0\0"
        assert encode_env_block([]) == b"\0"

    def test_cut_short_is_incomplete(self) -> None:
        """A block without its final NUL (EOF mid-block) is refused."""
        with pytest.raises(IncompleteBlock):
            parse_env_block(b"SSL_PROTOCOL=TLSv1.3\0")
        with pytest.raises(IncompleteBlock):
            parse_env_block(b"")

    def test_apply_sets_and_unsets(self) -> None:
        """Applying a block sets KEY=value entries and removes bare KEY entries."""
        env = {"SSL_TLS_SNI_SERVERNAME": "stale", "OTHER": "x"}
        apply_env_block(env, parse_env_block(b"A=1\0SSL_TLS_SNI_SERVERNAME\0B=\0\0"))
        assert env == {"OTHER": "x", "A": "1", "B": ""}

    @given(
        st.lists(
            st.tuples(
                st.text(
                    st.characters(blacklist_characters="=\0", blacklist_categories=["Cs"]),
                    min_size=1,
                ),
                st.none()
                | st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"])),
            )
        )
    )
    def test_round_trip(self, entries: list[tuple[str, str | None]]) -> None:
        """Whatever is encoded parses back to the same entries."""
        assert parse_env_block(encode_env_block(entries)) == entries


class TestProtocol:
    """y, Y and declining."""

    def test_prog_starts_at_once_with_raw_connection_and_variables(self, kit: Kit) -> None:
        """prog reads the server's banner on fd 6 itself; SSLCTLFD/SSLREADFD/SSLWRITEFD set."""
        record, _ = starttls(kit, "Y")
        assert record["banner"] == "220 ready\r\n"
        assert record["reply"] == "220 go ahead\r\n"
        env = record["env"]
        assert {"SSLCTLFD", "SSLREADFD", "SSLWRITEFD"} <= set(env)
        assert not any(key.startswith("SSL_") for key in env)

    def test_Y_returns_the_environment_block(self, kit: Kit) -> None:
        """After Y the control socket carries the SSL_* block, ending in \\0\\0, then EOF."""
        record, server = starttls(kit, "Y", CAFILE=str(kit.certs.cafile))
        raw = bytes.fromhex(record["block_raw"])
        assert raw.endswith(b"\0\0")
        block = record["block"]
        assert list(block) == SSL_KEYS
        assert block["SSL_PROTOCOL"] == "TLSv1.3"
        assert block["SSL_TLS_SNI_SERVERNAME"] == SERVER_NAME
        assert block["SSL_PEER_CERT_HASH"].startswith("SHA256:")
        assert block["SSL_PEER_CERT_SUBJECT"].startswith("/O=mxf test/")
        assert record["echo"] == "hello\n"
        assert server.result()["mode"] == "tls"
        assert server.sni == [SERVER_NAME]

    def test_y_starts_tls_without_a_block(self, kit: Kit) -> None:
        """After y the control socket is closed at once (no block) and TLS carries the data."""
        record, server = starttls(kit, "y")
        assert record["ctl_after_y"] == ""
        assert record["echo"] == "hello\n"
        assert server.result() == {"bytes": 6, "clean": False, "mode": "tls"}

    def test_closing_the_control_fd_declines(self, kit: Kit) -> None:
        """prog closes SSLCTLFD unused: the engine exits and prog talks in clear on 6/7."""
        record, server = starttls(kit, "decline")
        assert record["reply"] == "250 plain\r\n"
        assert record["echo"] == "clear text\n"
        assert server.result() == {"mode": "plain", "bytes": len("clear text\n")}
        assert tlskit.process_gone(record["engine"])

    def test_handshake_failure_is_eof_on_sslreadfd(self, kit: Kit) -> None:
        """Garbage instead of a ServerHello: the block is cut short and SSLREADFD hits EOF."""
        record, server = starttls(kit, "broken")
        assert record["block_raw"] == ""
        assert record["block"] is None
        assert record["rest"] == ""
        assert server.result() == {"mode": "broken"}

    def test_verification_failure_is_eof_on_sslreadfd(self, kit: Kit) -> None:
        """With CAFILE and a wrong -k name the handshake fails: EOF on both fds for prog."""
        server = kit.server(tlskit.serve_starttls)
        status, output, record = kit.run(
            UCSPI,
            ["-k", "wrong.example.test"],
            server,
            "ucspi-Y",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert (status, output) == (0, b"")
        assert record is not None
        assert record["block"] is None and record["rest"] == ""


class TestClosing:
    """EOF in each direction, and nothing left behind."""

    def test_eof_from_prog_then_from_peer(self, kit: Kit) -> None:
        """prog closes SSLWRITEFD: the server sees EOF, answers with close_notify, prog sees EOF."""
        record, server = starttls(kit, "Y")
        assert record["echo"] == "hello\n" and record["rest"] == ""
        assert server.result()["bytes"] == 6

    def test_close_notify_with_S(self, kit: Kit) -> None:
        """-S: prog's EOF reaches the server as a TLS close_notify."""
        _, server = starttls(kit, "y", "-S")
        assert server.result() == {"bytes": 6, "clean": True, "mode": "tls"}

    def test_no_engine_left_behind(self, kit: Kit) -> None:
        """After prog exits, its engine is gone."""
        record, _ = starttls(kit, "Y")
        assert record["engine"]
        assert tlskit.process_gone(record["engine"])

    def test_descriptors(self, kit: Kit) -> None:
        """prog has 0, 1, 2, 6, 7 and the three UCSPI-TLS fds, nothing else; the engine holds
        /dev/null on 0/1/2 and not the report pipe."""
        record, _ = starttls(kit, "Y")
        env = record["env"]
        expected = {0, 1, 2, 6, 7} | {int(env[k]) for k in ("SSLCTLFD", "SSLREADFD", "SSLWRITEFD")}
        assert set(record["fds"]) == expected and len(record["fds"]) == 8
        links = record["engine_fds"]
        assert [links[fd] for fd in ("0", "1", "2")] == ["/dev/null"] * 3
        assert record["fd1"] not in links.values()

    def test_usage_error_is_a_report(self, kit: Kit) -> None:
        """An unknown option: Z #4.3.0 on fd 1, exit 0, prog not run."""
        server = kit.server(tlskit.serve_starttls)
        status, output, record = kit.run(UCSPI, ["-q"], server, "ucspi-Y")
        assert (status, record) == (0, None)
        assert output == b"ZUnable to run mxf-remote-ucspitlsc: unknown option -q. (#4.3.0)\n\0"
