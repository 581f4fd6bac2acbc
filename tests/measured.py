"""Programs the tests start are measured too when the suite runs under coverage.

The kits give the programs they start a minimal environment of their own (as qmail
would); ``measured`` adds the variables through which ``coverage run`` (``patch =
subprocess`` in pyproject.toml) follows them into those processes.  Outside
``tox -e coverage`` there are none, and nothing changes.
"""

from __future__ import annotations

import os


def measured(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the caller's ``COVERAGE_*`` variables."""
    return {**{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}, **env}
