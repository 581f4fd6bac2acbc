"""The client ``SSLContext`` from the environment s6-tlsc reads, and the engine's privileges.

Verification follows s6-tlsc where s6-tlsc is usable for mail, and differs where it is not:

* ``CADIR`` or ``CAFILE`` set (``CADIR`` wins when both are, as in s6): the chain is
  verified against them and, when ``-k`` names the server, so is the name.  A failure
  aborts the handshake.  ``CADIR`` is read with OpenSSL's ``capath`` rules, so it needs
  the hash links ``c_rehash``/``update-ca-certificates`` make (s6's BearSSL backend reads
  every file instead).
* neither set: **opportunistic TLS** — encrypt, do not verify.  s6-tlsc dies (exit 100)
  here; an MTA delivering to MX hosts cannot, because most of them present certificates
  nobody could verify by name (RFC 7435).  ``--no-verify-cert`` forces this mode.
* TLS 1.2 at least; SNI is the ``-k`` name; ``-y`` presents ``CERTFILE``/``KEYFILE``.
* ``-j`` (default): an EOF without close_notify is an ordinary end of the peer's data;
  ``-J``: it is a TLS error that stops both directions.

Two policies the dispatcher (mxf-remote) may set in the environment, for issue 13
(``read_policy``; man/mxf-remote-ucspitlsc.8):

* ``MXFDANE`` (RFC 7672): the usable TLSA records.  The handshake is CERT_NONE (CAFILE
  and CADIR ignored) and the engine checks the peer against the records afterwards
  (:mod:`mxf_remote.tls.dane`), before prog hears of TLS.  ``MXFDANENAMES``: the
  reference identifiers for DANE-TA (else the ``-k`` name).
* ``MXFWEBPKI=1`` (MTA-STS ``enforce``, RFC 8461 §4.2): chain and ``-k`` name verified
  against CADIR/CAFILE, else the system's default CA locations (its capath, ~0.1 ms, before
  its cafile bundle, ~25 ms; ``load_default_certs`` when neither exists).

``MXFDANE`` wins when both are set; either overrides ``--no-verify-cert``.  A malformed
value is a configuration error, never a handshake without the checks.
"""

from __future__ import annotations

import os
import ssl

from mxf_remote.tls.options import Options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class ConfigError(Exception):
    """The TLS configuration (CAFILE, CADIR, CERTFILE, KEYFILE, TLS_UID, TLS_GID) is unusable."""


TYPE_CHECKING = False  # typing costs an import in the engine; annotations are strings
if TYPE_CHECKING:
    from mxf_remote.tls.dane import Record


class Policy:
    """What the peer must prove beyond a handshake: DANE records, or WebPKI (MTA-STS)."""

    __slots__ = ("names", "records", "report", "trust", "webpki")

    def __init__(
        self,
        *,
        records: list[Record] | None = None,
        names: list[str] | None = None,
        report: bool = False,
        trust: dict[str, str] | None = None,
    ) -> None:
        self.records = records or []
        """The TLSA records (``MXFDANE``); empty under WebPKI."""
        self.names = names or []
        """DANE-TA's reference identifiers (``MXFDANENAMES``, else ``-k``); for
        ``report``, the name the WebPKI verdict is about."""
        self.webpki = not self.records
        self.report = report
        """``MXFWEBPKI=report`` (MTA-STS ``testing``): no check in the handshake, a WebPKI
        verdict after it (``tls/webpki.py``) in the block, never a failure."""
        self.trust = trust or {}
        """``report``: the variables that locate the CAs (CAFILE, CADIR, SSL_CERT_*)."""

    @property
    def label(self) -> str:
        """How reports name the policy."""
        return "MTA-STS" if self.webpki else "DANE"


POLICY_VARIABLES = ("MXFDANE", "MXFWEBPKI")


def policy_requested(env: dict[str, str]) -> bool:
    """True when the environment asks for a policy (valid or not)."""
    return any(env.get(name) for name in POLICY_VARIABLES)


def read_policy(options: Options, env: dict[str, str]) -> Policy | None:
    """The policy ``MXFDANE``/``MXFWEBPKI`` ask for; None without one; ConfigError if bad."""
    records_text = env.get("MXFDANE", "")
    if records_text:
        from mxf_remote.tls import dane

        try:
            records = dane.parse_records(records_text)
        except dane.DaneError as exc:
            raise ConfigError(f"MXFDANE: {exc}") from None
        if not any(record.usage == dane.USAGE_TA for record in records):
            return Policy(records=records)  # DANE-EE checks no name
        try:
            names = dane.parse_names(env.get("MXFDANENAMES", ""), options.servername)
        except dane.DaneError as exc:
            raise ConfigError(f"MXFDANENAMES: {exc}") from None
        if not names:
            raise ConfigError("MXFDANE: DANE-TA records need MXFDANENAMES or -k")
        return Policy(records=records, names=names)
    webpki = env.get("MXFWEBPKI", "")
    if not webpki:
        return None
    if webpki not in ("1", "report"):
        raise ConfigError(f"MXFWEBPKI must be 1 or report, not {webpki[:20]!r}")
    if not options.servername:
        raise ConfigError("MXFWEBPKI needs -k servername")
    if webpki == "report":
        locating = ("CAFILE", "CADIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
        trust = {name: env[name] for name in locating if env.get(name)}
        return Policy(report=True, names=[options.servername], trust=trust)
    return Policy()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def build_context(
    options: Options, env: dict[str, str], policy: Policy | None = None
) -> ssl.SSLContext:
    """A client context configured from ``env``, the command line and ``policy``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not options.strict_eof:
        # -j: a bare FIN ends the peer's direction like a close_notify.  Without this flag
        # OpenSSL 3 makes it a fatal error, and prog could no longer write (a half-close).
        context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    cadir = env.get("CADIR", "")
    cafile = env.get("CAFILE", "")
    if policy is not None and (policy.records or policy.report):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # DANE decides after the handshake
    elif policy is not None and not (cadir or cafile):
        _trust_system_anchors(context, env)
    elif (options.verify or policy is not None) and (cadir or cafile):
        _trust_cadir_or_cafile(context, cadir, cafile)
        context.check_hostname = options.servername is not None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.client_cert:
        certfile = env.get("CERTFILE", "")
        keyfile = env.get("KEYFILE", "")
        if not certfile or not keyfile:
            raise ConfigError("-y needs CERTFILE and KEYFILE")
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CERTFILE/KEYFILE: {_describe(exc)}") from exc
    return context


def _trust_system_anchors(context: ssl.SSLContext, env: Mapping[str, str]) -> None:
    """MTA-STS without CAFILE/CADIR: the system's CAs, chain and name required."""
    try:
        load_system_anchors(context, env)
    except (OSError, ssl.SSLError) as exc:
        problem = f"cannot load the system's CA certificates: {_describe(exc)}"
        raise ConfigError(problem) from exc
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED


def _trust_cadir_or_cafile(context: ssl.SSLContext, cadir: str, cafile: str) -> None:
    """``CADIR`` (a capath) or else ``CAFILE``: the chain required (the name: the caller)."""
    source = f"CADIR {cadir}" if cadir else f"CAFILE {cafile}"
    try:
        if cadir:
            if not os.path.isdir(cadir):
                raise ConfigError(f"CADIR {cadir} is not a directory")
            context.load_verify_locations(capath=cadir)
        else:
            context.load_verify_locations(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load {source}: {_describe(exc)}") from exc
    context.verify_mode = ssl.CERT_REQUIRED


def load_system_anchors(context: ssl.SSLContext, env: Mapping[str, str]) -> None:
    """The system's trust anchors (WebPKI, for MTA-STS), cheapest first.

    OpenSSL's own ``SSL_CERT_DIR``/``SSL_CERT_FILE`` are read from ``env`` -- the
    delivery's environment, which in mxf-remoted is the launcher's, not the server's --
    and win when set.  Otherwise the capath (hash links, read lazily, ~0.1 ms) before the
    cafile bundle (parsed whole, ~25 ms), else ``load_default_certs``.  OSError or
    ssl.SSLError when they cannot be read.
    """
    cert_dir, cert_file = env.get("SSL_CERT_DIR", ""), env.get("SSL_CERT_FILE", "")
    if cert_dir or cert_file:  # as OpenSSL: what does not exist simply adds no CA
        capath = cert_dir if os.path.isdir(cert_dir) else None
        cafile = cert_file if os.path.isfile(cert_file) else None
        if capath or cafile:
            context.load_verify_locations(cafile=cafile, capath=capath)
        return
    paths = ssl.get_default_verify_paths()
    if paths.openssl_capath and os.path.isdir(paths.openssl_capath):
        context.load_verify_locations(capath=paths.openssl_capath)
    elif paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
        context.load_verify_locations(cafile=paths.openssl_cafile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)


def drop_privileges(env: dict[str, str]) -> None:
    """As root, become ``TLS_GID``/``TLS_UID`` (when set), like s6-tlsc-io."""
    if os.getuid() != 0:
        return
    uid_text = env.get("TLS_UID", "")
    gid_text = env.get("TLS_GID", "")
    for name, text in (("TLS_UID", uid_text), ("TLS_GID", gid_text)):
        if text and not (text.isdigit() and text.isascii()):
            raise ConfigError(f"{name} is not a number: {text!r}")
    try:
        if gid_text:
            os.setgroups([int(gid_text)])
            os.setgid(int(gid_text))
        if uid_text:
            os.setuid(int(uid_text))
    except OSError as exc:
        raise ConfigError(f"cannot drop privileges: {_describe(exc)}") from exc
