"""Tests for mxf_remote/ucspi.py: the UCSPI descriptor numbers, defined once."""

from __future__ import annotations

import ast
from pathlib import Path

from mxf_remote import ucspi
from mxf_remote.tls.options import parse_options
from tests.importkit import modules_loaded_by

PACKAGE = Path(ucspi.__file__).resolve().parent
NAMES = {"NETWORK_READ_FD", "NETWORK_WRITE_FD"}


def assigned_names(path: Path) -> set[str]:
    """The module-level names ``path`` assigns (imports do not count)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


class TestNumbers:
    """fd 6 reads the peer, fd 7 writes to it, as tcpclient and s6-tcpclient leave them."""

    def test_read_6_write_7(self) -> None:
        """The connection is read on fd 6 and written on fd 7."""
        assert (ucspi.NETWORK_READ_FD, ucspi.NETWORK_WRITE_FD) == (6, 7)

    def test_tls_clients_default_to_them(self) -> None:
        """Without -6/-7 the TLS clients take the ciphertext from the UCSPI descriptors."""
        options = parse_options(["prog"])
        assert (options.rfd, options.wfd) == (ucspi.NETWORK_READ_FD, ucspi.NETWORK_WRITE_FD)


class TestDefinedOnce:
    """One home: every other module imports the numbers from mxf_remote.ucspi."""

    def test_no_other_module_assigns_them(self) -> None:
        """Only ucspi.py assigns NETWORK_READ_FD or NETWORK_WRITE_FD."""
        owners = sorted(
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            if NAMES & assigned_names(path)
        )
        assert owners == ["ucspi.py"]

    def test_importing_it_loads_nothing_else(self) -> None:
        """Importing mxf_remote.ucspi loads no module but the package and itself."""
        assert modules_loaded_by("mxf_remote.ucspi") == {"mxf_remote", "mxf_remote.ucspi"}
