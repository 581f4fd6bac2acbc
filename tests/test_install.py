"""Installing for qmail: README's steps as written, and mxf-remote run through a link.

Admins install ``mxf-remote`` as a symbolic link named ``qmail-remote``, in a directory
(``/var/qmail/bin``) that does not hold the clients, with a ``PATH`` that does not
contain the virtual environment.  With the default ``control/protocols`` (no file),
mxf-remote must find its clients beside the real program, symlinks resolved (spec §2),
and deliver.  Deliveries go to an aiosmtpd sink on a host literal, inside the session's
private network namespace, so no DNS is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remotekit import MXF_REMOTE, QmailHome
from tests.sinkkit import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- install-steps -->"
PLACEHOLDERS = {
    "/path/to/mxf-remote": "checkout",
    "/opt/mxf-remote": "venv",
    "/var/qmail": "qmail",
}
"""The paths README's steps name, and which temporary path each one becomes here."""

SINK = "127.0.8.1"
HOST = f"[{SINK}]"
SENDER = "alice@example.org"
RECIPIENT = "bob@example.test"
MESSAGE = b"Subject: installed\n\nthrough the link\n"
ACCEPTED = b"r\0K127.0.8.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
PATH_WITHOUT_VENV = "/usr/bin:/bin"
INSTALL_SECONDS = 300
DELIVERY_SECONDS = 60
CLIENTS = ("mxf-remote-smtpc", "mxf-remote-qmtpc", "mxf-remote-tlsc", "mxf-remote-ucspitlsc")
ORIGINAL = "#!/bin/sh\necho 'the original qmail-remote'\n"


def install_steps(readme: str) -> str:
    """The ```sh block that follows the ``install-steps`` marker in README.md."""
    assert readme.count(MARKER) == 1, f"README.md needs exactly one {MARKER} line"
    lines = readme.split(MARKER, 1)[1].strip("\n").splitlines()
    assert lines[0] == "```sh", "the install-steps marker must be followed by a ```sh block"
    return "\n".join(lines[1 : lines.index("```")]) + "\n"


def localized(steps: str, paths: dict[str, Path]) -> str:
    """README's steps with its paths replaced by ``paths`` (placeholder name -> path)."""
    for placeholder, name in PLACEHOLDERS.items():
        assert placeholder in steps, f"README's install steps no longer name {placeholder}"
        steps = steps.replace(placeholder, str(paths[name]))
    for path in re.findall(r"(?<![\w./-])/[^\s'\";|&)]+", steps):
        assert any(path.startswith(str(mine)) for mine in paths.values()), (
            f"README's install steps name {path}, which the test would not redirect"
        )
    return steps


def qmail_home(root: Path) -> QmailHome:
    """A qmail home without ``control/protocols``: the default protocols apply."""
    qmail = QmailHome(root)
    qmail.control("me", "me.example\n")
    qmail.control("timeoutconnect", "10\n")
    qmail.control("timeoutremote", "30\n")
    return qmail


def run_through(
    program: Path | str,
    qmail: QmailHome,
    *args: str,
    timeout: float = DELIVERY_SECONDS,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``program`` (a link) as qmail-rspawn would: the message on fd 0, a bare PATH."""
    assert not any(shutil.which(client, path=PATH_WITHOUT_VENV) for client in CLIENTS)
    message = qmail.root / "message"
    message.write_bytes(MESSAGE)
    with message.open("rb") as stdin:
        return subprocess.run(
            [str(program), *args],
            stdin=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={"PATH": PATH_WITHOUT_VENV, "MXF_QMAIL": str(qmail.root)},
            cwd=cwd,
        )


def outside_private_netns() -> list[str]:
    """A command prefix that runs where the session started, with the machine's network.

    The session runs in a private network namespace with loopback only (conftest.py), and
    README's ``pip install`` needs PyPI: the install runs in the network namespace of the
    process that started pytest.  Skips where that cannot be entered (a session that is
    not root got its namespace through a user namespace and cannot leave it).
    """
    from tests.infra.netns import in_private_netns

    if not in_private_netns():
        return []
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        pytest.skip("nsenter (util-linux) is needed to reach PyPI from the private namespace")
    prefix = [nsenter, f"--net=/proc/{os.getppid()}/ns/net"]
    tried = subprocess.run(
        [*prefix, "true"], capture_output=True, text=True, timeout=10, check=False
    )
    if tried.returncode != 0:
        pytest.skip(
            f"cannot leave the private network namespace to reach PyPI: {tried.stderr.strip()}"
        )
    return prefix


SINK_ADDRESSES = (SINK,)
"""Where the module's sink (conftest.py) listens, on port 25."""


def assert_delivered(done: subprocess.CompletedProcess[bytes], sink: SmtpSink) -> None:
    """mxf-remote handed off to SMTP, the sink accepted, and the message arrived once."""
    assert (done.stdout, done.stderr, done.returncode) == (ACCEPTED, b"", 0)
    assert [(a.exchanger, a.sender, a.recipients, a.content) for a in sink.arrivals] == [
        (SINK, SENDER, [RECIPIENT], MESSAGE.replace(b"\n", b"\r\n")),
    ]


@pytest.mark.usefixtures("netns")
class TestLinkedInstall:
    """mxf-remote installed as a link elsewhere: its clients are found beside the target."""

    def test_a_link_in_another_directory_delivers(self, tmp_path: Path, arrivals: SmtpSink) -> None:
        """A ``qmail-remote`` link to the venv's mxf-remote, venv off PATH: K, mail arrives."""
        bin_dir = tmp_path / "qmail" / "bin"
        bin_dir.mkdir(parents=True)
        link = bin_dir / "qmail-remote"
        link.symlink_to(MXF_REMOTE)
        assert not any((bin_dir / client).exists() for client in CLIENTS)
        qmail = qmail_home(tmp_path / "qmail")
        done = run_through(link, qmail, HOST, SENDER, RECIPIENT)
        assert_delivered(done, arrivals)

    def test_a_link_run_by_a_relative_path_delivers(
        self, tmp_path: Path, arrivals: SmtpSink
    ) -> None:
        """``cd bin && ./qmail-remote``: the link is resolved before mxf-remote changes to
        the qmail home, so a relative argv[0] still finds the clients."""
        bin_dir = tmp_path / "qmail" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "qmail-remote").symlink_to(MXF_REMOTE)
        qmail = qmail_home(tmp_path / "qmail")
        done = run_through("./qmail-remote", qmail, HOST, SENDER, RECIPIENT, cwd=bin_dir)
        assert_delivered(done, arrivals)

    def test_the_probe_through_a_link_sees_every_default_protocol(
        self, tmp_path: Path, sink: SmtpSink
    ) -> None:
        """mxf-remote-probe through a link plans QMTPS, QMTP and SMTP and connects by SMTP."""
        link = tmp_path / "probe"
        link.symlink_to(Path(MXF_REMOTE).with_name("mxf-remote-probe"))
        qmail = qmail_home(tmp_path / "qmail")
        done = run_through(link, qmail, "--json", HOST)
        assert done.stderr == b""
        probe = json.loads(done.stdout)
        assert [(a["protocol"], a["port"], a["outcome"]) for a in probe["plan"]] == [
            ("qmtps", 6209, "failed"),
            ("qmtp", 209, "failed"),
            ("smtp", 25, "won"),
        ]
        assert done.returncode == 0


@pytest.mark.usefixtures("netns")
class TestReadmeInstall:
    """README's "Installing for qmail" steps, run by /bin/sh as written."""

    def test_the_readme_steps_install_a_working_qmail_remote(
        self, tmp_path: Path, arrivals: SmtpSink
    ) -> None:
        """venv, pip install of the checkout, qmail-remote.orig, the link: a delivery is K."""
        outside = outside_private_netns()
        paths = {
            "checkout": ROOT,
            "venv": tmp_path / "opt-mxf-remote",
            "qmail": tmp_path / "var-qmail",
        }
        qmail = qmail_home(paths["qmail"])
        (qmail.root / "bin").mkdir()
        original = qmail.root / "bin" / "qmail-remote"
        original.write_text(ORIGINAL)
        original.chmod(0o711)
        script = tmp_path / "install.sh"
        script.write_text(localized(install_steps(README.read_text()), paths))
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        }
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{PATH_WITHOUT_VENV}"
        installed = subprocess.run(
            [*outside, "/bin/sh", "-e", str(script)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=INSTALL_SECONDS,
            check=False,
        )
        assert installed.returncode == 0, (
            f"README's install steps failed ({installed.returncode}):\n"
            f"{script.read_text()}\n{installed.stdout}\n{installed.stderr}"
        )
        link = qmail.root / "bin" / "qmail-remote"
        venv_program = paths["venv"] / "bin" / "mxf-remote"
        assert link.is_symlink() and os.readlink(link) == str(venv_program)
        assert (qmail.root / "bin" / "qmail-remote.orig").read_text() == ORIGINAL
        for page in sorted((ROOT / "man").iterdir()):
            installed_page = paths["venv"] / "share" / "man" / f"man{page.suffix[1:]}" / page.name
            assert installed_page.read_bytes() == page.read_bytes(), f"{page.name} not installed"
        done = run_through(link, qmail, HOST, SENDER, RECIPIENT)
        assert_delivered(done, arrivals)
