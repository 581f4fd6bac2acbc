"""Tests for mxf_remote/stsflow.py beyond the end-to-end ones: a bug costs the policy only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mxf_remote.knowledge import Answer, Status
from mxf_remote.mtasts import PolicyCache
from mxf_remote.stsflow import StsFlow


async def txt_lookup(name: str, rtype: str) -> Answer[Any]:
    return Answer(Status.OK, (b"v=STSv1; id=1;",))


def test_a_bug_in_the_flow_settles_for_no_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the flow's task would be printed on stderr (the report pipe) when
    the task is collected; instead the flow settles, naming it, and the delivery goes on."""

    def broken(self: PolicyCache, domain: str) -> None:
        raise RuntimeError("cache bug")

    monkeypatch.setattr(PolicyCache, "load", broken)
    changes: list[int] = []

    async def flow_view() -> Any:
        flow = StsFlow(
            "example.org",
            str(tmp_path),
            txt_lookup,
            changed=lambda: changes.append(1),
            queries=[],
            clock=lambda: 0.0,
            timeout_dns=1.0,
        )
        return await flow.run()  # what start()'s task runs too

    view = asyncio.run(flow_view())
    assert (view.state, view.source) == ("none", "internal error: RuntimeError: cache bug")
    assert changes == [1]
