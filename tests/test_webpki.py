"""Tests for mxf_remote/tls/webpki.py: the after-the-fact WebPKI verdict of MTA-STS ``testing``.

Real certificates (``tests/danekit.py``: a root, an intermediate, leaves), the root as the
only trusted CA through ``CAFILE``; each RFC 8460 result type a verdict can give.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mxf_remote.tls import webpki
from tests.danekit import DanePki, Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DanePki:
    return DanePki(tmp_path_factory.mktemp("webpki"))


def chain_of(issued: Issued) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in [issued.cert, *issued.chain]]


def trusting(pki: DanePki) -> dict[str, str]:
    return {"CAFILE": str(pki.root.cert_path)}


def test_a_valid_chain_for_the_name_passes(pki: DanePki) -> None:
    leaf = pki.issued("good", "mx.example.org")
    assert webpki.verdict(chain_of(leaf), "mx.example.org", trusting(pki)) == ("success", "")


def test_another_name_is_a_host_mismatch(pki: DanePki) -> None:
    leaf = pki.issued("other", "somebody.example.net")
    result, reason = webpki.verdict(chain_of(leaf), "mx.example.org", trusting(pki))
    assert result == webpki.HOST_MISMATCH, reason


def test_an_expired_leaf_is_expired(pki: DanePki) -> None:
    leaf = pki.issued("old", "mx.example.org", expired=True)
    result, reason = webpki.verdict(chain_of(leaf), "mx.example.org", trusting(pki))
    assert result == webpki.EXPIRED, reason


def test_a_self_signed_leaf_is_not_trusted(pki: DanePki) -> None:
    leaf = pki.self_signed("self", "mx.example.org")
    result, reason = webpki.verdict(chain_of(leaf), "mx.example.org", trusting(pki))
    assert result == webpki.NOT_TRUSTED, reason


def test_no_anchor_at_all_is_not_trusted(pki: DanePki, tmp_path: Path) -> None:
    leaf = pki.issued("good2", "mx.example.org")
    empty = {"CADIR": str(tmp_path)}
    assert webpki.verdict(chain_of(leaf), "mx.example.org", empty)[0] == webpki.NOT_TRUSTED


@pytest.mark.parametrize("chain", [[], [b"not DER"], [b"\x30\x03\x02\x01\x00"]])
def test_hostile_chains_are_validation_failures(pki: DanePki, chain: list[bytes]) -> None:
    assert webpki.verdict(chain, "mx.example.org", trusting(pki))[0] == webpki.VALIDATION_FAILURE


def test_a_ca_directory_is_read_file_by_file(pki: DanePki, tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(b"\x00\xff not a certificate")
    (tmp_path / "root.pem").write_bytes(pki.root.cert_path.read_bytes())
    leaf = pki.issued("good3", "mx.example.org")
    found = webpki.verdict(chain_of(leaf), "mx.example.org", {"SSL_CERT_DIR": str(tmp_path)})
    assert found == ("success", "")
