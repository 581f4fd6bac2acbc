"""Tests for mxf_remote/tls/chaincheck.py: OpenSSL's verdict on a chain, offline."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from mxf_remote.tls.chaincheck import check_chain

NAME = "mx.example.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[bytes], Path]:
    """A leaf for NAME straight from a CA, one under an intermediate, and the CA file."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cafile = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    leaf = ca.issue_cert(NAME)
    intermediate = ca.create_child_ca()
    deep = intermediate.issue_cert(NAME)

    def der(blobs: list[trustme.Blob]) -> list[bytes]:
        return [ssl.PEM_cert_to_DER_cert(blob.bytes().decode()) for blob in blobs]

    return der(leaf.cert_chain_pems[:1]), der(deep.cert_chain_pems), cafile


def test_verified_with_the_ca_file(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """The right CA and the right name: verified, no reason."""
    leaf, _, cafile = pki
    assert check_chain(leaf, NAME, ("CAFILE", str(cafile))) == (True, None)


def test_an_intermediate_sent_by_the_server(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """Leaf plus intermediate, as a server sends them: verified up to the CA."""
    _, chain, cafile = pki
    assert len(chain) == 2
    assert check_chain(chain, NAME, ("CAFILE", str(cafile))) == (True, None)


def test_the_wrong_name(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """Another name than the certificate's: not verified, OpenSSL says why."""
    leaf, _, cafile = pki
    assert check_chain(leaf, "other.example.test", ("CAFILE", str(cafile))) == (
        False,
        "hostname mismatch",
    )


def test_no_name_checks_the_chain_only(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """An address literal has no name: the chain alone is checked."""
    leaf, _, cafile = pki
    assert check_chain(leaf, None, ("CAFILE", str(cafile))) == (True, None)


def test_an_unknown_ca(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """Against the system store, our test CA is unknown: not verified, with the reason."""
    leaf, _, _ = pki
    verified, why = check_chain(leaf, NAME, None)
    assert verified is False and why == "unable to get local issuer certificate"


def test_no_certificate() -> None:
    """A server that sent no certificate is not verified."""
    assert check_chain([], NAME, None) == (False, "the server sent no certificate")


def test_garbage_instead_of_a_certificate(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """Bytes that are no DER certificate: a verdict, never an exception."""
    _, _, cafile = pki
    verified, why = check_chain([b"\x30\x03junk"], NAME, ("CAFILE", str(cafile)))
    assert verified is not True and why


def test_a_store_that_cannot_be_loaded(pki: tuple[list[bytes], list[bytes], Path]) -> None:
    """A CAFILE that does not exist: not checked, and why."""
    leaf, _, _ = pki
    verified, why = check_chain(leaf, NAME, ("CAFILE", "/nonexistent/ca.pem"))
    assert verified is None and why is not None and why.startswith("not checked:")
