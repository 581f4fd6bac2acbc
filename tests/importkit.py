"""Test helper for start-up cost: which modules an import loads in a fresh interpreter.

The programs start once per delivery, so what they import is part of their contract
(no ``ssl`` in a TLS client's own process, no ``asyncio`` in a protocol client).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIMEOUT = 20.0
IMPORTS = Path(__file__).resolve().parent / "programs" / "imports.py"


def modules_loaded_by(module: str) -> set[str]:
    """The names ``import module`` adds to ``sys.modules`` of a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, str(IMPORTS), module],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return set(completed.stdout.split())
