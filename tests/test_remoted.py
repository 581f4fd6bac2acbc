"""mxf-remoted and mxf-remote's launcher: real server process, real sockets, real faults.

The whole end-to-end suite also runs through one server (``tox -e warm``, ``pytest
--warm``); this module checks what only the warm path has: that the server is used,
what the client inherits compared with the in-process path, the fall-backs when the
server is absent, foreign, stale, silent or busy, and the faults -- the server killed
mid-race, the launcher killed mid-race, SIGTERM with deliveries in progress, a peer of
another uid.  Each ends in one well-formed report and nothing left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxf_remote import report
from tests.infra.knot import KnotServer
from tests.infra.netns import silence
from tests.remotedkit import RemotedServer
from tests.remotekit import MXF_REMOTE, Delivery, QmailHome, run_remote, write_recorder

pytestmark = [pytest.mark.knot, pytest.mark.cold_only("starts servers of its own")]

SMTP_PORT = 2525
ZONES = {
    "warm.test": """
ok          MX    10 mx.ok
mx.ok       A     127.0.7.1
mx.ok       AAAA  fd6d:7866::701
silent      MX    10 mx.silent
mx.silent   A     127.0.7.2
slow        MX    10 mx.slow
slow        MX    20 mx2.slow
mx.slow     A     127.0.7.2
mx2.slow    A     127.0.7.1
mx.tls      A     127.0.7.4
""",
}
LISTENERS = [("127.0.7.1", SMTP_PORT), ("fd6d:7866::701", SMTP_PORT)]
SILENT = "127.0.7.2"


@pytest.fixture(scope="module")
def server(netns: None) -> Iterator[RemotedServer]:
    """One mxf-remoted for the module (tests that break it make their own)."""
    started = RemotedServer()
    yield started
    assert started.stop() == 0
    assert "internal error" not in started.log_text(), started.log_text()
    started.close()


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """SMTP run by the recorder; timeoutconnect 3 s."""
    recorder = write_recorder(tmp_path)
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:{recorder}\n")
    qmail.control("timeoutconnect", "3\n")
    return qmail


def through(server: RemotedServer | str, home: QmailHome) -> QmailHome:
    """``home`` with control/remotedsocket naming ``server``'s socket (or a path)."""
    home.use_remoted(server if isinstance(server, str) else server.socket)
    return home


def deliver(home: QmailHome, host: str, knot: KnotServer, **kwargs: object) -> Delivery:
    """One delivery as qmail-rspawn would start it."""
    return run_remote(home, host, env=knot.env, **kwargs)  # type: ignore[arg-type]


def served(delivery: Delivery) -> bool:
    """True when mxf-remoted raced for the delivery (its trace names the server)."""
    return any(e["event"] == "start" and "server" in e for e in delivery.trace)


def start_delivery(home: QmailHome, host: str, knot: KnotServer) -> subprocess.Popen[bytes]:
    """A delivery in the background (its message on fd 0)."""
    message = home.root / "message"
    message.write_bytes(b"Subject: x\n\nbody\n")
    with message.open("rb") as stdin:
        return subprocess.Popen(
            [MXF_REMOTE, host, "s@x.test", "r@x.test"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={
                "PATH": os.environ["PATH"],
                "MXF_QMAIL": str(home.root),
                "MXF_TEST_RECORD": str(home.root / "record.json"),
                **knot.env,
            },
        )


def through_a_fake_server(
    home: QmailHome, knot: KnotServer, serve: Callable[[socket.socket], None]
) -> Delivery:
    """One delivery through a fake mxf-remoted that does ``serve`` with the launcher's
    connection (and keeps it open until the delivery is over)."""
    path = str(home.root / "fake.sock")
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(path)
    fake.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        connection, _ = fake.accept()
        held.append(connection)
        serve(connection)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        return deliver(through(path, home), "ok.warm.test", knot)
    finally:
        thread.join(10)
        for connection in held:
            connection.close()
        fake.close()


@pytest.mark.usefixtures("listeners")
class TestServed:
    """Deliveries go through the server, and the client cannot tell."""

    def test_a_delivery_is_raced_by_the_server(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """Handed off to the winner; the trace, written by the server, says so."""
        delivery = deliver(through(server, home), "ok.warm.test", knot)
        assert delivery.stdout == b"Krecorder got it\n\0"
        assert (delivery.stderr, delivery.returncode) == (b"", 0)
        assert served(delivery)
        assert delivery.record is not None
        assert delivery.record["heard"] == "hello from the server\n"

    def test_the_client_inherits_what_it_would_in_process(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """argv, environment, fds 0 1 2 6 7, fd 0 at offset 0, the mask: as in process."""
        cold = deliver(home, "ok.warm.test", knot, extra_args=("x@y",))
        warm = deliver(through(server, home), "ok.warm.test", knot, extra_args=("x@y",))
        assert not served(cold) and served(warm)
        assert cold.record is not None and warm.record is not None
        for key in (
            "argv",
            "fds",
            "fd0_offset",
            "sigmask",
            "fd6_blocking",
            "fd7_blocking",
            "fd6_fd7_same_socket",
            "fd6_cloexec",
        ):
            assert warm.record[key] == cold.record[key], key
        cold_env, warm_env = dict(cold.record["env"]), dict(warm.record["env"])
        for env in (cold_env, warm_env):
            env.pop("TCPLOCALPORT")
        assert warm_env == cold_env
        assert warm.record["fds"] == [0, 1, 2, 6, 7]

    def test_a_report_comes_from_the_server(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """A host that does not exist: the same #5.1.2 as in process, printed by the launcher."""
        delivery = deliver(through(server, home), "nowhere.warm.test", knot)
        assert delivery.stdout == report.no_such_host("nowhere.warm.test").encode()
        assert served(delivery)

    def test_control_files_are_read_per_delivery(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """An admin's edit of control/protocols takes effect on the next delivery."""
        through(server, home)
        assert deliver(home, "ok.warm.test", knot).handed_off
        home.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:/nonexistent/client\n")
        assert deliver(home, "ok.warm.test", knot).stdout == report.NO_PROTOCOL.encode()

    def test_our_smtp_client_runs_in_the_launchers_process(
        self, server: RemotedServer, tmp_path: Path, knot: KnotServer
    ) -> None:
        """mxf-remote-smtpc to a real SMTP server: delivered, without a second interpreter."""
        from tests.sinkkit import SmtpSink

        sink = SmtpSink("127.0.7.3", SMTP_PORT)
        try:
            home = QmailHome(tmp_path / "smtp")
            home.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:mxf-remote-smtpc\n")
            home.control("me", "warm.test\n")
            home.control("smtproutes", f":[127.0.7.3]:{SMTP_PORT}\n")
            delivery = deliver(through(server, home), "ok.warm.test", knot)
            assert delivery.stdout.startswith(b"r\0K127.0.7.3 accepted message.")
            handoff = next(e for e in delivery.trace if e["event"] == "handoff")
            assert handoff["in_process"] == "smtp"
            assert [a.recipients for a in sink.arrivals] == [["rcpt@example.test"]]
        finally:
            sink.close()


class TestStartTls:
    """The default SMTP (STARTTLS through our ucspitlsc): the server forks the TLS engine."""

    @pytest.mark.parametrize("exec_clients", [False, True], ids=["warm-engine", "exec"])
    def test_starttls_delivery(self, tmp_path: Path, knot: KnotServer, exec_clients: bool) -> None:
        """Delivered over TLS, byte for byte; the engine comes from the server's TLS
        forker unless --exec-clients; no engine is left behind."""
        from tests.sinkkit import SmtpSink
        from tests.tlskit import Certs

        (tmp_path / "certs").mkdir()
        certs = Certs(tmp_path / "certs")
        sink = SmtpSink("127.0.7.4", SMTP_PORT, certs.named_context("mx.tls.warm.test"))
        own: RemotedServer | None = None
        try:
            own = RemotedServer(
                *(["--exec-clients"] if exec_clients else []), directory=tmp_path / "server"
            )
            home = QmailHome(tmp_path / "qmail")
            home.control("protocols", f"smtp:{SMTP_PORT}:0:N:Y:mxf-remote-smtpc\n")
            home.control("me", "warm.test\n")
            home.control("smtproutes", f":mx.tls.warm.test:{SMTP_PORT}\n")
            message = b"Subject: tls\n\n.dot\nbody\n"
            delivery = deliver(through(own, home), "ok.warm.test", knot, message=message)
            assert delivery.stdout.startswith(b"r\0K127.0.7.4 accepted message."), delivery
            handoff = next(e for e in delivery.trace if e["event"] == "handoff")
            assert handoff["tls_engine"] == ("" if exec_clients else "mxf-remoted")
            (arrival,) = sink.arrivals
            assert arrival.tls is not None
            assert arrival.content == message.replace(b"\n", b"\r\n")
            forkers = _children_of(own.pid)  # the TLS forker, without --exec-clients
            assert len(forkers) == (0 if exec_clients else 1)
            deadline = time.monotonic() + 5
            while any(_children_of(f) for f in forkers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [engine for f in forkers for engine in _children_of(f)] == []
        finally:
            if own is not None:
                own.close()
            sink.close()


class TestForkerGone:
    """Without its TLS forker, the server hands STARTTLS back to be exec'd."""

    def test_delivered_by_the_exec_path(self, tmp_path: Path, knot: KnotServer) -> None:
        """The forker killed: the next STARTTLS delivery still goes out over TLS."""
        from tests.sinkkit import SmtpSink
        from tests.tlskit import Certs

        (tmp_path / "certs").mkdir()
        certs = Certs(tmp_path / "certs")
        sink = SmtpSink("127.0.7.4", SMTP_PORT, certs.named_context("mx.tls.warm.test"))
        own: RemotedServer | None = None
        try:
            own = RemotedServer(directory=tmp_path / "server")
            (forker,) = _children_of(own.pid)
            os.kill(forker, signal.SIGKILL)
            home = QmailHome(tmp_path / "qmail")
            home.control("protocols", f"smtp:{SMTP_PORT}:0:N:Y:mxf-remote-smtpc\n")
            home.control("me", "warm.test\n")
            home.control("smtproutes", f":mx.tls.warm.test:{SMTP_PORT}\n")
            delivery = deliver(through(own, home), "ok.warm.test", knot)
            assert delivery.stdout.startswith(b"r\0K127.0.7.4 accepted message."), delivery
            handoff = next(e for e in delivery.trace if e["event"] == "handoff")
            assert handoff["tls_engine"] == ""
            (arrival,) = sink.arrivals
            assert arrival.tls is not None
        finally:
            if own is not None:
                own.close()
            sink.close()


def _children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (zombies included)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listing:
            found += [int(child) for child in listing.read().split()]
    return found


@pytest.mark.usefixtures("listeners")
class TestFallBack:
    """When the server cannot take the delivery, it is delivered in process, at once."""

    def test_no_socket_at_that_path(self, home: QmailHome, knot: KnotServer) -> None:
        """control/remotedsocket names nothing: delivered in process."""
        delivery = deliver(through(str(home.root / "nothing.sock"), home), "ok.warm.test", knot)
        assert delivery.handed_off and not served(delivery)

    def test_a_stale_socket_file(self, home: QmailHome, knot: KnotServer) -> None:
        """A socket file nobody listens on: delivered in process."""
        path = home.root / "stale.sock"
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
        delivery = deliver(through(str(path), home), "ok.warm.test", knot)
        assert delivery.handed_off and not served(delivery)

    def test_a_socket_of_another_user(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """A socket owned by uid 65534: never used, delivered in process."""
        if os.geteuid() != 0:
            pytest.skip("needs root to give a socket to another user")
        os.chown(server.socket, 65534, 65534)
        try:
            delivery = deliver(through(server, home), "ok.warm.test", knot)
        finally:
            os.chown(server.socket, 0, 0)
        assert delivery.handed_off and not served(delivery)

    @pytest.mark.parametrize("answer", [b"", b"B"], ids=["silent", "busy"])
    def test_a_server_that_does_not_take_it(
        self, home: QmailHome, knot: KnotServer, answer: bytes
    ) -> None:
        """Accepts and says nothing (or says busy): delivered in process within a second."""

        def serve(connection: socket.socket) -> None:
            if answer:
                connection.sendall(answer)

        delivery = through_a_fake_server(home, knot, serve)
        assert delivery.handed_off and not served(delivery)
        assert delivery.seconds < 5

    @pytest.mark.parametrize(
        "result", [b"x", b"9:R" + b"Zpartial", b"5:Qjunk,"], ids=["garbage", "cut", "unknown"]
    )
    def test_a_server_that_takes_it_then_talks_nonsense(
        self, home: QmailHome, knot: KnotServer, result: bytes
    ) -> None:
        """Accepted, then garbage, a cut result or an unknown kind: one Z, nothing else."""

        def serve(connection: socket.socket) -> None:
            connection.recv(65536)
            connection.sendall(b"A2:30," + result)
            connection.shutdown(socket.SHUT_WR)

        delivery = through_a_fake_server(home, knot, serve)
        assert delivery.stdout.startswith(b"ZThe mxf-remoted server gave no usable answer: ")
        assert delivery.stdout.count(b"\0") == 1 and delivery.stdout.endswith(b"\n\0")
        assert (delivery.stderr, delivery.returncode, delivery.handed_off) == (b"", 0, False)

    def test_a_relative_socket_path_is_a_control_file_error(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """control/remotedsocket that is not an absolute path: Z naming file and line."""
        home.control("remotedsocket", "remoted.sock\n")
        delivery = deliver(home, "ok.warm.test", knot)
        assert (
            delivery.stdout
            == report.control_error(
                "control/remotedsocket line 1: 'remoted.sock' is not an absolute path"
            ).encode()
        )


class TestFaults:
    """Whatever dies, one well-formed report, nothing doubled, nothing left behind."""

    def test_the_server_killed_mid_race(
        self, silent_hosts: None, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """SIGKILL while it races a silent exchanger: the launcher's Z, then a restart serves."""
        silence(SILENT)
        doomed = RemotedServer(directory=tmp_path / "doomed")
        try:
            through(doomed, home)
            delivery = start_delivery(home, "silent.warm.test", knot)
            time.sleep(0.5)
            doomed.kill()
            stdout, stderr = delivery.communicate(timeout=10)
            assert (stdout, stderr, delivery.returncode) == (
                report.server_gone("the server closed the connection").encode(),
                b"",
                0,
            )
            doomed.restart()
            assert "another server" not in doomed.log_text()
        finally:
            doomed.close()

    def test_the_launcher_killed_mid_race(
        self, silent_hosts: None, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """SIGKILL to mxf-remote: the server stops that race, keeps no descriptor, serves on."""
        silence(SILENT)
        through(server, home)
        home.control("timeoutconnect", "60\n")  # the race would hold its sockets a minute
        deliver(home, "ok.warm.test", knot)  # the c-ares channel for knot exists from here
        before = server.descriptor_targets()
        delivery = start_delivery(home, "silent.warm.test", knot)
        time.sleep(0.5)
        delivery.kill()
        delivery.communicate(timeout=10)
        deadline = time.monotonic() + 5
        while len(server.descriptor_targets()) > len(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.descriptor_targets()) <= len(before), (
            before,
            server.descriptor_targets(),
        )

    @pytest.mark.usefixtures("listeners")
    def test_sigterm_lets_deliveries_in_progress_finish(
        self, silent_hosts: None, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """SIGTERM during a race past a silent best MX: that delivery is K, the server exits 0."""
        silence(SILENT)
        stopping = RemotedServer(directory=tmp_path / "stopping")
        try:
            through(stopping, home)
            delivery = start_delivery(home, "slow.warm.test", knot)
            time.sleep(0.1)
            stopping.process.send_signal(signal.SIGTERM)
            stdout, _ = delivery.communicate(timeout=10)
            assert stdout == b"Krecorder got it\n\0"
            assert stopping.process.wait(10) == 0
            assert not os.path.exists(stopping.socket)
            assert "stopped after 1 deliveries" in stopping.log_text()
        finally:
            shutil.rmtree(stopping.root, ignore_errors=True)

    def test_a_peer_of_another_uid_is_refused(self, server: RemotedServer) -> None:
        """SO_PEERCRED: a client running as uid 65534 is disconnected without an answer."""
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            pytest.skip("needs root and setpriv to become another user")
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.sendall(b'1:x,'); got=s.recv(10)\n"
            "except OSError:\n"
            "    got=b''\n"
            "print(repr(got))\n"
        )
        os.chmod(server.root, 0o755)
        os.chmod(server.socket, 0o666)
        try:
            done = subprocess.run(
                [
                    setpriv,
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "/usr/bin/python3",
                    "-c",
                    code,
                    server.socket,
                ],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        finally:
            os.chmod(server.socket, 0o600)
            os.chmod(server.root, 0o700)
        assert done.stdout.strip() == "b''", done.stderr
        assert "refused a connection from uid 65534" in server.log_text()


class TestHistory:
    """The server remembers silent addresses, and the probe shows what it remembers."""

    def test_a_timeout_is_remembered_and_shown_by_the_probe(
        self, silent_hosts: None, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """A race lost to silence: the server's history has it; the probe prints and plans by it."""
        import json
        import sys

        silence(SILENT)
        own = RemotedServer(directory=tmp_path / "server")
        try:
            through(own, home)
            home.control("timeoutconnect", "1\n")
            delivery = deliver(home, "silent.warm.test", knot)
            assert delivery.stdout == report.NO_CONNECTION.encode()
            probe = os.path.join(os.path.dirname(sys.executable), "mxf-remote-probe")
            env = {"PATH": os.environ["PATH"], "MXF_QMAIL": str(home.root), **knot.env}
            done = subprocess.run(
                [probe, "--json", "ok.warm.test"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
            history = json.loads(done.stdout)["history"]
            assert [(e["address"], e["port"], e["failures"], e["penalized"]) for e in history] == [
                (SILENT, SMTP_PORT, 1, False)
            ]
            text = subprocess.run(
                [probe, "ok.warm.test"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            ).stdout
            assert f"{SILENT} port {SMTP_PORT}: 1 failure(s)" in text
        finally:
            own.close()

    def test_without_a_server_the_probe_has_no_history(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """No control/remotedsocket: the probe's JSON history is null."""
        import json
        import sys

        probe = os.path.join(os.path.dirname(sys.executable), "mxf-remote-probe")
        env = {"PATH": os.environ["PATH"], "MXF_QMAIL": str(home.root), **knot.env}
        done = subprocess.run(
            [probe, "--json", "nowhere.warm.test"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert json.loads(done.stdout)["history"] is None


@pytest.mark.usefixtures("listeners")
class TestLoad:
    """Many launchers at once through one server."""

    def test_a_hundred_concurrent_deliveries(
        self, server: RemotedServer, home: QmailHome, knot: KnotServer
    ) -> None:
        """100 launchers at once: 100 handoffs, each once; the server keeps no descriptor."""
        through(server, home)
        deliver(home, "ok.warm.test", knot)  # the c-ares channel for knot exists from here
        before = server.descriptors()
        runs = [start_delivery(home, "ok.warm.test", knot) for _ in range(100)]
        results = [run.communicate(timeout=60) for run in runs]
        assert [stdout for stdout, _ in results] == [b"Krecorder got it\n\0"] * 100
        assert all(run.returncode == 0 for run in runs)
        time.sleep(0.2)
        assert server.descriptors() <= before
