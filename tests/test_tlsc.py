"""mxf-remote-tlsc: implicit TLS in front of prog, against real TLS servers on loopback."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxf_remote.tls.certinfo import cert_hash, subject_oneline
from mxf_remote.tls.options import DEFAULT_HANDSHAKE_MS, UsageError, parse_options
from tests import tlskit
from tests.tlskit import SERVER_NAME, Kit

TLSC = "mxf-remote-tlsc"
MB = 1024 * 1024


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    """Certificates, the scripted prog, and servers that are closed afterwards."""
    kit = Kit(tmp_path)
    try:
        yield kit
    finally:
        kit.close()


def z_report(reason: str) -> bytes:
    return f"ZTLS handshake with 127.0.0.1 failed: {reason}. (#4.4.2)\n".encode() + b"\0"


class TestOptions:
    """The s6-tlsc command line."""

    def test_defaults_match_s6_except_the_timeout(self) -> None:
        """No options: -s -j -Y -z, fds 6/7, no SNI, and a 60 s handshake limit."""
        options = parse_options(["prog", "arg"])
        assert (options.close_notify, options.strict_eof, options.client_cert) == (
            False,
            False,
            False,
        )
        assert (options.keep_env, options.rfd, options.wfd) == (False, 6, 7)
        assert options.servername is None
        assert options.handshake_ms == DEFAULT_HANDSHAKE_MS == 60_000
        assert options.prog == ["prog", "arg"]

    def test_bundled_and_glued_options(self) -> None:
        """Letters bundle (-SJyZ) and arguments may be glued (-K500) or separate (-k name)."""
        options = parse_options(
            ["-SJyZ", "-v2", "-K500", "-k", "mx.example", "-6", "8", "-79", "--", "-prog"]
        )
        assert options.close_notify and options.strict_eof and options.client_cert
        assert options.keep_env and options.verbosity == 2 and options.handshake_ms == 500
        assert options.servername == "mx.example"
        assert (options.rfd, options.wfd) == (8, 9)
        assert options.prog == ["-prog"]

    def test_later_letter_wins(self) -> None:
        """-S then -s means -s, as with subgetopt."""
        assert not parse_options(["-S", "-s", "prog"]).close_notify

    def test_first_word_not_an_option_starts_prog(self) -> None:
        """Options after the program's name belong to the program."""
        assert parse_options(["prog", "-k", "x"]).prog == ["prog", "-k", "x"]

    def test_no_verify_cert_long_option(self) -> None:
        """--no-verify-cert (s6's long option) turns verification off."""
        assert not parse_options(["--no-verify-cert", "prog"]).verify

    @pytest.mark.parametrize(
        "args",
        [
            ["-x", "prog"],
            ["-K", "ten", "prog"],
            ["-k"],
            [],
            ["--"],
            ["-6", "7", "prog"],
            ["-6", "2", "-7", "8", "prog"],
            ["--servername", "x", "prog"],
        ],
    )
    def test_rejected(self, args: list[str]) -> None:
        """Unknown letters, bad numbers, missing arguments or prog, bad fds are usage errors."""
        with pytest.raises(UsageError):
            parse_options(args)


class TestHandoff:
    """After the handshake prog runs in our place with cleartext on 6/7 and SSL_* set."""

    def test_prog_talks_through_cleartext_fds(self, kit: Kit) -> None:
        """prog's bytes reach the TLS echo server and come back; SNI is the -k name."""
        server = kit.server(tlskit.serve_echo)
        status, output, record = kit.run(
            TLSC,
            ["-k", SERVER_NAME],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert (status, output) == (0, b"")
        assert record is not None
        assert record["echo"] == "hello\n" and record["rest"] == ""
        assert server.result()["bytes"] == 6
        assert server.sni == [SERVER_NAME]

    def test_ssl_environment(self, kit: Kit) -> None:
        """SSL_PROTOCOL, SSL_CIPHER, SSL_TLS_SNI_SERVERNAME, SSL_PEER_CERT_HASH/SUBJECT are set."""
        server = kit.server(tlskit.serve_echo)
        _, _, record = kit.run(
            TLSC,
            ["-k", SERVER_NAME],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert record is not None
        env = record["env"]
        der = kit.certs.leaf_der()
        assert env["SSL_PROTOCOL"] == "TLSv1.3"
        assert env["SSL_CIPHER"].startswith("TLS_")
        assert env["SSL_TLS_SNI_SERVERNAME"] == SERVER_NAME
        assert env["SSL_PEER_CERT_HASH"] == "SHA256:" + hashlib.sha256(der).hexdigest()
        assert env["SSL_PEER_CERT_SUBJECT"] == subject_oneline(der)
        assert env["SSL_PEER_CERT_SUBJECT"].startswith("/O=mxf test/OU=")

    def test_tls12_peer(self, kit: Kit) -> None:
        """A TLS 1.2 server is accepted and reported as such."""
        server = kit.server(tlskit.serve_echo, tls12=True)
        _, _, record = kit.run(TLSC, ["-k", SERVER_NAME], server, "hello")
        assert record is not None
        assert record["env"]["SSL_PROTOCOL"] == "TLSv1.2"
        assert record["echo"] == "hello\n"

    def test_without_k_no_sni_and_variable_removed(self, kit: Kit) -> None:
        """Without -k no SNI is sent and a stale SSL_TLS_SNI_SERVERNAME is removed."""
        server = kit.server(tlskit.serve_echo)
        _, _, record = kit.run(
            TLSC, [], server, "hello", env=kit.env(SSL_TLS_SNI_SERVERNAME="stale")
        )
        assert record is not None
        assert "SSL_TLS_SNI_SERVERNAME" not in record["env"]
        assert server.sni == [None]

    def test_same_pid_argv_and_exit_status(self, kit: Kit) -> None:
        """prog is exec'd in tlsc's process: same pid, its argv, its report and exit status."""
        server = kit.server(tlskit.serve_echo)
        argv = [*tlskit.client_command(TLSC), "--", *kit.prog_argv("exit", "host", "s@x", "r@y")]
        env = kit.env(PROG_STATUS="3", PROG_REPORT="K127.0.0.1 accepted message.\n")
        proc = tlskit.launch(argv, {6: (conn := server.connect()).fileno(), 7: conn.fileno()}, env)
        conn.close()
        output = tlskit.read_to_eof(proc)
        assert proc.wait(tlskit.TIMEOUT) == 3
        assert proc.stdout is not None
        proc.stdout.close()
        record = tlskit.prog_result(kit.tmp)
        assert record["pid"] == proc.pid
        assert record["argv"] == ["host", "s@x", "r@y"]
        assert output == b"K127.0.0.1 accepted message.\n\0"

    def test_tls_configuration_variables_removed_unless_Z(self, kit: Kit) -> None:
        """CAFILE and friends are removed from prog's environment by default, kept with -Z."""
        env = kit.env(CAFILE=str(kit.certs.cafile), TLS_UID="12345")
        _, _, record = kit.run(
            TLSC, ["-k", SERVER_NAME], kit.server(tlskit.serve_echo), "exit", env=env
        )
        assert record is not None
        assert "CAFILE" not in record["env"] and "TLS_UID" not in record["env"]
        _, _, record = kit.run(
            TLSC, ["-Z", "-k", SERVER_NAME], kit.server(tlskit.serve_echo), "exit", env=env
        )
        assert record is not None
        assert record["env"]["CAFILE"] == str(kit.certs.cafile)

    def test_other_descriptors_with_6_and_7_options(self, kit: Kit) -> None:
        """-6/-7 name other ciphertext descriptors; prog still gets cleartext on 6/7 only."""
        server = kit.server(tlskit.serve_echo)
        conn = server.connect()
        conn.setblocking(True)
        argv = [*tlskit.client_command(TLSC), "-6", "8", "-7", "9", "--", *kit.prog_argv("hello")]
        proc = tlskit.launch(argv, {8: conn.fileno(), 9: conn.fileno()}, kit.env())
        conn.close()
        assert tlskit.read_to_eof(proc) == b""
        assert proc.wait(tlskit.TIMEOUT) == 0
        assert proc.stdout is not None
        proc.stdout.close()
        record = tlskit.prog_result(kit.tmp)
        assert record["echo"] == "hello\n"
        assert record["fds"] == [0, 1, 2, 6, 7]

    def test_ciphertext_on_two_pipes(self, kit: Kit) -> None:
        """fds 6/7 may be two pipes rather than one socket: 1 MB goes through both ways."""
        server = kit.server(tlskit.serve_echo)
        relay = tlskit.PipeRelay(server.connect())
        argv = [*tlskit.client_command(TLSC), "--", *kit.prog_argv("bulk", str(MB))]
        proc = tlskit.launch(argv, {6: relay.rfd, 7: relay.wfd}, kit.env())
        os.close(relay.rfd)
        os.close(relay.wfd)
        try:
            assert tlskit.read_to_eof(proc) == b""
            assert proc.wait(tlskit.TIMEOUT) == 0
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
            relay.close()
        record = tlskit.prog_result(kit.tmp)
        assert record["received_bytes"] == MB
        assert record["received"] == record["sent"]


class TestPump:
    """Large transfers and half-closes, both ways."""

    def test_10_mb_both_ways_byte_for_byte(self, kit: Kit) -> None:
        """10 MB written by prog come back from the echo server identical."""
        server = kit.server(tlskit.serve_echo)
        status, output, record = kit.run(TLSC, ["-k", SERVER_NAME], server, "bulk", str(10 * MB))
        assert (status, output) == (0, b"")
        assert record is not None
        assert record["received_bytes"] == 10 * MB
        assert record["received"] == record["sent"]
        assert server.result()["bytes"] == 10 * MB

    def test_eof_from_prog_half_closes_without_close_notify_by_default(self, kit: Kit) -> None:
        """-s (default): prog's EOF becomes a TCP half-close; the answer still arrives."""
        server = kit.server(tlskit.serve_half_close)
        _, _, record = kit.run(TLSC, [], server, "eof-write")
        assert record is not None
        assert record["rest"] == "5 ragged\n"

    def test_eof_from_prog_sends_close_notify_with_S(self, kit: Kit) -> None:
        """-S: prog's EOF becomes a TLS close_notify; the answer still arrives."""
        server = kit.server(tlskit.serve_half_close)
        _, _, record = kit.run(TLSC, ["-S"], server, "eof-write")
        assert record is not None
        assert record["rest"] == "5 clean\n"

    def test_eof_from_peer_reaches_prog_which_can_still_write(self, kit: Kit) -> None:
        """The peer's close_notify is EOF on fd 6; what prog writes afterwards still arrives."""
        server = kit.server(tlskit.serve_bye)
        _, _, record = kit.run(TLSC, ["-S"], server, "eof-read")
        assert record is not None
        assert record["rest"] == "bye\n"
        assert server.result() == {"received": "after\n", "clean": True}

    def test_peer_eof_without_close_notify_is_eof_by_default(self, kit: Kit) -> None:
        """-j (default): a bare FIN from the peer is EOF for prog, which can still write."""
        server = kit.server(tlskit.serve_bye_ragged)
        _, _, record = kit.run(TLSC, [], server, "eof-read")
        assert record is not None
        assert record["rest"] == "bye\n" and "write_error" not in record
        assert server.result() == {"received": "after\n"}

    def test_peer_eof_without_close_notify_is_an_error_with_J(self, kit: Kit) -> None:
        """-J: prog still gets what came before the bare FIN, then both directions stop."""
        server = kit.server(tlskit.serve_bye_ragged)
        _, _, record = kit.run(TLSC, ["-J"], server, "eof-read")
        assert record is not None
        assert record["rest"] == "bye\n"
        assert record["write_error"] == errno.EPIPE
        assert server.result() == {"received": ""}


class TestVerification:
    """CAFILE/CADIR verify; without them TLS is opportunistic."""

    def test_cafile_and_right_name(self, kit: Kit) -> None:
        """With CAFILE and the certificate's name, prog runs."""
        server = kit.server(tlskit.serve_echo)
        status, output, record = kit.run(
            TLSC,
            ["-k", SERVER_NAME],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert (status, output) == (0, b"")
        assert record is not None and record["echo"] == "hello\n"

    def test_wrong_name_gives_z_report_and_no_prog(self, kit: Kit) -> None:
        """A name mismatch: prog is not run; exactly one Z report on fd 1; exit 0; no fd 2."""
        server = kit.server(tlskit.serve_echo)
        status, output, record = kit.run(
            TLSC,
            ["-k", "wrong.example.test"],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert status == 0
        assert record is None
        assert output == z_report(
            "certificate rejected: Hostname mismatch, certificate is not valid for"
            " 'wrong.example.test'"
        )

    def test_untrusted_chain_rejected_with_cafile(self, kit: Kit) -> None:
        """With CAFILE, a certificate from another CA aborts the handshake."""
        server = kit.server(tlskit.serve_echo, untrusted=True)
        status, output, record = kit.run(
            TLSC,
            ["-k", SERVER_NAME],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert (status, record) == (0, None)
        assert output.startswith(b"ZTLS handshake with 127.0.0.1 failed: certificate rejected: ")
        assert output.endswith(b". (#4.4.2)\n\0") and output.count(b"\0") == 1

    def test_cafile_without_k_checks_the_chain_only(self, kit: Kit) -> None:
        """With CAFILE but no -k the chain is verified and any name is accepted (as s6)."""
        server = kit.server(tlskit.serve_echo)
        _, output, record = kit.run(
            TLSC, [], server, "hello", env=kit.env(CAFILE=str(kit.certs.cafile))
        )
        assert output == b"" and record is not None

    def test_cadir(self, kit: Kit, tmp_path: Path) -> None:
        """CADIR with OpenSSL hash links verifies like CAFILE."""
        cadir = tmp_path / "certs"
        cadir.mkdir()
        hashed = subprocess.run(
            ["openssl", "x509", "-noout", "-subject_hash", "-in", str(kit.certs.cafile)],
            capture_output=True,
            text=True,
            timeout=tlskit.TIMEOUT,
            check=False,
        ).stdout.strip()
        if not hashed:
            pytest.skip("no openssl command to compute the hash link")
        (cadir / f"{hashed}.0").write_bytes(kit.certs.cafile.read_bytes())
        server = kit.server(tlskit.serve_echo)
        _, output, record = kit.run(
            TLSC, ["-k", SERVER_NAME], server, "hello", env=kit.env(CADIR=str(cadir))
        )
        assert output == b"" and record is not None and record["echo"] == "hello\n"

    def test_opportunistic_without_cafile(self, kit: Kit) -> None:
        """No CAFILE/CADIR: an untrusted certificate is accepted and its hash reported."""
        server = kit.server(tlskit.serve_echo, untrusted=True)
        status, output, record = kit.run(TLSC, ["-k", SERVER_NAME], server, "hello")
        assert (status, output) == (0, b"")
        assert record is not None and record["echo"] == "hello\n"
        assert record["env"]["SSL_PEER_CERT_HASH"] == cert_hash(kit.certs.leaf_der(untrusted=True))

    def test_no_verify_cert_overrides_cafile(self, kit: Kit) -> None:
        """--no-verify-cert: even with CAFILE, a wrong name is accepted."""
        server = kit.server(tlskit.serve_echo)
        _, output, record = kit.run(
            TLSC,
            ["--no-verify-cert", "-k", "wrong.example.test"],
            server,
            "hello",
            env=kit.env(CAFILE=str(kit.certs.cafile)),
        )
        assert output == b"" and record is not None

    def test_unreadable_cafile_is_a_configuration_report(self, kit: Kit) -> None:
        """A CAFILE that cannot be loaded: Z #4.3.0 naming it, prog not run."""
        server = kit.server(tlskit.serve_echo)
        missing = kit.tmp / "missing.pem"
        status, output, record = kit.run(
            TLSC, ["-k", SERVER_NAME], server, "hello", env=kit.env(CAFILE=str(missing))
        )
        assert (status, record) == (0, None)
        assert (
            output
            == (
                f"ZTLS client configuration error: cannot load CAFILE {missing}:"
                " No such file or directory. (#4.3.0)\n"
            ).encode()
            + b"\0"
        )

    def test_client_certificate_with_y(self, kit: Kit) -> None:
        """-y presents CERTFILE/KEYFILE to a server that requires a client certificate."""
        server = kit.server(tlskit.serve_echo)
        assert server.context is not None
        server.context.verify_mode = tlskit.ssl.CERT_REQUIRED
        server.context.load_verify_locations(cafile=str(kit.certs.cafile))
        pem = str(kit.certs.client_pem)
        _, output, record = kit.run(
            TLSC, ["-y", "-k", SERVER_NAME], server, "hello", env=kit.env(CERTFILE=pem, KEYFILE=pem)
        )
        assert output == b"" and record is not None and record["echo"] == "hello\n"

    def test_y_without_certfile_is_a_configuration_report(self, kit: Kit) -> None:
        """-y without CERTFILE/KEYFILE: Z #4.3.0, prog not run."""
        server = kit.server(tlskit.serve_echo)
        _, output, record = kit.run(TLSC, ["-y"], server, "hello")
        assert record is None
        assert output == (
            b"ZTLS client configuration error: -y needs CERTFILE and KEYFILE. (#4.3.0)\n\0"
        )


class TestFailures:
    """Every way of not running prog is one Z report on fd 1 and exit 0."""

    def test_stalled_handshake_times_out_with_K(self, kit: Kit) -> None:
        """A server that never answers the ClientHello: Z after -K ms, prog not run."""
        server = kit.server(tlskit.serve_stall, tls=False)
        started = time.monotonic()
        status, output, record = kit.run(TLSC, ["-K", "300", "-k", SERVER_NAME], server, "hello")
        assert time.monotonic() - started < 5
        assert (status, record) == (0, None)
        assert output == z_report("timed out after 300 ms")

    def test_peer_that_is_not_tls(self, kit: Kit) -> None:
        """A plain SMTP banner instead of a ServerHello: Z, prog not run."""
        server = kit.server(tlskit.serve_banner, tls=False)
        status, output, record = kit.run(TLSC, ["-k", SERVER_NAME], server, "hello")
        assert (status, record) == (0, None)
        assert output == z_report("wrong version number")

    def test_peer_closes_during_handshake(self, kit: Kit) -> None:
        """The server closes right after the ClientHello: Z naming the closed connection."""
        server = kit.server(lambda _server, conn: conn.recv(65536), tls=False)
        status, output, record = kit.run(TLSC, ["-k", SERVER_NAME], server, "hello")
        assert (status, record) == (0, None)
        assert output == z_report("connection closed by the server")

    def test_usage_error_is_a_report(self, kit: Kit) -> None:
        """An unknown option: Z #4.3.0 (never exit 100, which qmail-rspawn would bounce)."""
        server = kit.server(tlskit.serve_echo)
        status, output, record = kit.run(TLSC, ["-x"], server, "hello")
        assert (status, record) == (0, None)
        assert output == b"ZUnable to run mxf-remote-tlsc: unknown option -x. (#4.3.0)\n\0"

    def test_prog_that_cannot_be_executed(self, kit: Kit) -> None:
        """exec failure after the handshake: the qmail-remote 'Unable to run' report."""
        server = kit.server(tlskit.serve_echo)
        conn = server.connect()
        argv = [*tlskit.client_command(TLSC), "--", "/nonexistent/prog"]
        status, output = tlskit.run_client(argv, conn, kit.env())
        assert status == 0
        assert output == (
            b"ZUnable to run /nonexistent/prog: No such file or directory. (#4.3.0)\n\0"
        )

    def test_tcpremoteip_names_the_peer(self, kit: Kit) -> None:
        """The report names TCPREMOTEIP as mxf-remote set it."""
        server = kit.server(tlskit.serve_banner, tls=False)
        env = kit.env(TCPREMOTEIP="2001:db8::25")
        _, output, _ = kit.run(TLSC, [], server, "hello", env=env)
        assert output.startswith(b"ZTLS handshake with 2001:db8::25 failed: ")


class TestHygiene:
    """No descriptor leaks, no engine left behind, the report pipe is never held."""

    def test_prog_has_only_0_1_2_6_7(self, kit: Kit) -> None:
        """prog's open descriptors are exactly 0, 1, 2, 6 and 7."""
        _, _, record = kit.run(TLSC, [], kit.server(tlskit.serve_echo), "hello")
        assert record is not None
        assert record["fds"] == [0, 1, 2, 6, 7]

    def test_engine_holds_dev_null_not_the_report_pipe(self, kit: Kit) -> None:
        """The engine's fds 0/1/2 are /dev/null; none of its fds is prog's report pipe."""
        _, _, record = kit.run(TLSC, [], kit.server(tlskit.serve_echo), "hello")
        assert record is not None
        links = record["engine_fds"]
        assert [links[fd] for fd in ("0", "1", "2")] == ["/dev/null"] * 3
        assert record["fd1"].startswith("pipe:")
        assert record["fd1"] not in links.values()

    def test_engine_gone_after_prog_exits(self, kit: Kit) -> None:
        """Once prog has exited, its engine exits too (checked by pid)."""
        _, _, record = kit.run(TLSC, [], kit.server(tlskit.serve_echo), "hello")
        assert record is not None and record["engine"]
        assert tlskit.process_gone(record["engine"])

    def test_report_pipe_eof_when_prog_exits_with_connection_open(self, kit: Kit) -> None:
        """rspawn's view: prog exits without closing the session; fd 1 reaches EOF at once."""
        server = kit.server(tlskit.serve_echo)
        env = kit.env(PROG_REPORT="Kdone")
        started = time.monotonic()
        status, output, record = kit.run(TLSC, [], server, "exit", env=env)
        assert time.monotonic() - started < 5
        assert (status, output) == (0, b"Kdone\0")
        assert record is not None
        assert tlskit.process_gone(record["engine"])

    def test_engine_exits_when_prog_is_killed(self, kit: Kit) -> None:
        """SIGKILL to prog (the pid rspawn waits for): the engine goes away by itself."""
        server = kit.server(tlskit.serve_echo)
        conn = server.connect()
        conn.setblocking(True)
        argv = [*tlskit.client_command(TLSC), "--", *kit.prog_argv("sleep")]
        proc = tlskit.launch(argv, {6: conn.fileno(), 7: conn.fileno()}, kit.env())
        conn.close()
        try:
            deadline = time.monotonic() + tlskit.TIMEOUT
            while not (kit.tmp / "prog.json").exists():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            engine = tlskit.prog_result(kit.tmp)["engine"]
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(tlskit.TIMEOUT) == -signal.SIGKILL
            assert tlskit.read_to_eof(proc) == b""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(tlskit.TIMEOUT)
            assert proc.stdout is not None
            proc.stdout.close()
        assert tlskit.process_gone(engine)


class TestStartup:
    """The parent stays lean: ssl is loaded by the engine only."""

    def test_tlsc_module_does_not_import_ssl_or_asyncio(self) -> None:
        """Importing mxf_remote.tls.tlsc pulls in neither ssl nor asyncio."""
        code = (
            "import sys, mxf_remote.tls.tlsc, mxf_remote.tls.ucspitlsc;"
            "print(sorted(m for m in ('ssl', 'asyncio', 'socket') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=tlskit.TIMEOUT,
            check=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        assert "ssl" not in out.stdout and "asyncio" not in out.stdout
