"""A real ``mxf-remoted`` for the tests: started, made ready, stopped, killed.

``RemotedServer`` runs the installed ``mxf-remoted`` in a qmail home of its own whose
``control/remotedsocket`` names a socket in a mode-700 directory.  A delivery goes
through it when *its* qmail home has ``control/remotedsocket`` with the same path
(``QmailHome.use_remoted``), as in production, where launcher and server share one home.

With ``pytest --warm``, conftest.py starts one server for the session and every
``QmailHome`` is given its socket: the end-to-end tests then run on the warm path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.measured import measured

MXF_REMOTED = os.path.join(os.path.dirname(sys.executable), "mxf-remoted")
if not os.path.exists(MXF_REMOTED):
    MXF_REMOTED = shutil.which("mxf-remoted") or MXF_REMOTED

READY_SECONDS = 30.0


class RemotedServer:
    """One mxf-remoted process, ready when the constructor returns."""

    def __init__(self, *options: str, directory: Path | None = None) -> None:
        self.root = Path(directory or tempfile.mkdtemp(prefix="mxf-remoted-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        (self.root / "control").mkdir(exist_ok=True)
        self.socket = str(self.root / "remoted.sock")
        (self.root / "control" / "remotedsocket").write_text(self.socket + "\n")
        self.log = self.root / "remoted.log"
        self.options = options
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [MXF_REMOTED, *self.options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=measured(
                    {"PATH": os.environ.get("PATH", os.defpath), "MXF_QMAIL": str(self.root)}
                ),
            )
        deadline = time.monotonic() + READY_SECONDS
        while not self._accepts():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"mxf-remoted did not start: {self.log.read_text()}")
            time.sleep(0.02)
        return process

    def _accepts(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket)
        except OSError:
            return False
        finally:
            probe.close()
        return True

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def descriptors(self) -> int:
        """How many descriptors the server has open now."""
        return len(self.descriptor_targets())

    def descriptor_targets(self) -> list[str]:
        """What each of the server's descriptors is (for a failure message)."""
        targets = []
        for name in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                targets.append(os.readlink(f"/proc/{self.pid}/fd/{name}"))
            except OSError:
                continue
        return sorted(targets)

    def log_text(self) -> str:
        """What the server said on stderr so far."""
        return self.log.read_text(errors="replace")

    def restart(self) -> None:
        """Start again after a stop or a kill (the socket file may be stale)."""
        self.process = self._start()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
