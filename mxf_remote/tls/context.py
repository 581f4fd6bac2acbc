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
"""

from __future__ import annotations

import os
import ssl

from mxf_remote.tls.options import Options


class ConfigError(Exception):
    """The TLS configuration (CAFILE, CADIR, CERTFILE, KEYFILE, TLS_UID, TLS_GID) is unusable."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def build_context(options: Options, env: dict[str, str]) -> ssl.SSLContext:
    """A client context configured from ``env`` and the command line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not options.strict_eof:
        # -j: a bare FIN ends the peer's direction like a close_notify.  Without this flag
        # OpenSSL 3 makes it a fatal error, and prog could no longer write (a half-close).
        context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    cadir = env.get("CADIR", "")
    cafile = env.get("CAFILE", "")
    if options.verify and (cadir or cafile):
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
        context.check_hostname = options.servername is not None
        context.verify_mode = ssl.CERT_REQUIRED
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
