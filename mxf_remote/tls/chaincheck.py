"""Check a certificate chain offline, with OpenSSL's own ``X509_verify_cert``.

``mxf-remote-probe --conversation`` completes its handshake without verification, so
that the conversation goes on whatever the server presents, and then wants OpenSSL's
verdict on what it got, against the configured CAs and against the system default
store.  Python's ``ssl`` cannot verify a chain outside a handshake, so this module calls
OpenSSL's verification in the libcrypto the ``ssl`` module already has loaded (ctypes),
with the purpose (``ssl_server``), the verification flags and the host flags the TLS
clients' context uses: the verdict and the reason are OpenSSL's (``unable to get local
issuer certificate``, ``hostname mismatch``, ...).  Every function used is public,
stable OpenSSL 1.1/3.x API; without a usable libcrypto the verdict is None ("not
checked"), never an exception.  Only the probe imports this module.
"""

from __future__ import annotations

import os
from typing import Any


def check_chain(
    chain: list[bytes], name: str | None, store: tuple[str, str] | None
) -> tuple[bool | None, str | None]:
    """(verified, why not) for ``chain`` and ``name`` against ``store`` (None: the default).

    ``(None, reason)`` when the check itself cannot be made.
    """
    if not chain:
        return False, "the server sent no certificate"
    try:
        openssl = _openssl()
    except (OSError, AttributeError) as error:
        return None, f"not checked: no usable libcrypto ({error})"
    try:
        why = _verify(openssl, chain, name, store)
    except _NotChecked as error:
        return None, f"not checked: {error}"
    return why is None, why


class _NotChecked(Exception):
    """The verification could not be made (a store that cannot be loaded, a bad name)."""


_OPENSSL: list[Any] = []
"""The libcrypto handle, once loaded."""

_OPENSSL_FUNCTIONS = (
    # name, result, arguments ("p" pointer, "i" int, "l" long, "s" char *, "z" size_t,
    # "u" unsigned int, "U" unsigned long, "P" pointer to pointer, "-" void)
    ("d2i_X509", "p", "pPl"),
    ("X509_free", "-", "p"),
    ("X509_STORE_new", "p", ""),
    ("X509_STORE_free", "-", "p"),
    ("X509_STORE_set_default_paths", "i", "p"),
    ("X509_STORE_load_locations", "i", "pss"),
    ("X509_STORE_CTX_new", "p", ""),
    ("X509_STORE_CTX_free", "-", "p"),
    ("X509_STORE_CTX_init", "i", "pppp"),
    ("X509_STORE_CTX_set_default", "i", "ps"),
    ("X509_STORE_CTX_get0_param", "p", "p"),
    ("X509_STORE_CTX_get_error", "i", "p"),
    ("X509_VERIFY_PARAM_set1_host", "i", "psz"),
    ("X509_VERIFY_PARAM_set1_ip_asc", "i", "ps"),
    ("X509_VERIFY_PARAM_set_hostflags", "-", "pu"),
    ("X509_VERIFY_PARAM_set_flags", "i", "pU"),
    ("X509_verify_cert", "i", "p"),
    ("X509_verify_cert_error_string", "s", "l"),
    ("OPENSSL_sk_new_null", "p", ""),
    ("OPENSSL_sk_push", "i", "pp"),
    ("OPENSSL_sk_free", "-", "p"),
    ("ERR_clear_error", "-", ""),
)


def _openssl() -> Any:
    """The libcrypto that ``ssl`` uses, its X509 functions typed; OSError when none is."""
    if _OPENSSL:
        return _OPENSSL[0]
    import ctypes
    import ctypes.util
    import ssl  # noqa: F401 - loads _ssl, and with it libcrypto, whose path we look for

    path = _mapped_libcrypto() or ctypes.util.find_library("crypto")
    if path is None:
        raise OSError("libcrypto not found")
    library = ctypes.CDLL(path)
    types: dict[str, Any] = {
        "p": ctypes.c_void_p,
        "i": ctypes.c_int,
        "l": ctypes.c_long,
        "s": ctypes.c_char_p,
        "z": ctypes.c_size_t,
        "u": ctypes.c_uint,
        "U": ctypes.c_ulong,
        "P": ctypes.POINTER(ctypes.c_void_p),
        "-": None,
    }
    for name, result, arguments in _OPENSSL_FUNCTIONS:
        function = getattr(library, name)
        function.restype = types[result]
        function.argtypes = [types[a] for a in arguments]
    _OPENSSL.append(library)
    return library


def _mapped_libcrypto() -> str | None:
    """The path of the libcrypto mapped into this process (Linux), if any."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and "/libcrypto" in fields[5]:
                    return fields[5].strip().removesuffix(" (deleted)")  # upgraded since
    except OSError:
        pass
    return None


X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS = 0x4
X509_CHECK_FLAG_NEVER_CHECK_SUBJECT = 0x20


def _verify(
    openssl: Any, chain: list[bytes], name: str | None, store_source: tuple[str, str] | None
) -> str | None:
    """OpenSSL's verdict: None when verified, else its reason; _NotChecked when impossible."""
    verification = _Verification(openssl)
    try:
        if not verification.load_chain(chain):
            return "the server's certificate is not DER"
        verification.load_store(store_source)
        verification.prepare(name)
        return verification.run()
    finally:
        verification.close()


class _Verification:
    """One ``X509_verify_cert``, set up as an SSL client's handshake sets it up.

    Every OpenSSL object made is freed by ``close``, which also clears OpenSSL's error
    queue of this thread so that the ``ssl`` module never finds our errors in it.
    """

    def __init__(self, openssl: Any) -> None:
        self.openssl = openssl
        self.certificates: list[int] = []
        self.store: int | None = None
        self.stack: int | None = None
        self.context: int | None = None

    def load_chain(self, chain: list[bytes]) -> bool:
        """The chain as X509 objects (up to the first that is not DER); False: not even one."""
        import ctypes

        for der in chain:
            buffer = ctypes.create_string_buffer(der, len(der))
            pointer = ctypes.c_void_p(ctypes.addressof(buffer))
            certificate = self.openssl.d2i_X509(None, ctypes.byref(pointer), len(der))
            if not certificate:
                break
            self.certificates.append(certificate)
        return bool(self.certificates)

    def load_store(self, source: tuple[str, str] | None) -> None:
        """The trusted store: ``("CADIR", dir)``, ``("CAFILE", file)``, or the default."""
        self.store = self._made(self.openssl.X509_STORE_new(), "X509_STORE_new")
        if source is None:
            self.openssl.X509_STORE_set_default_paths(self.store)
            return
        kind, path = source
        if kind == "CADIR":
            if not os.path.isdir(path):
                raise _NotChecked(f"CADIR {path} is not a directory")
            loaded = self.openssl.X509_STORE_load_locations(self.store, None, os.fsencode(path))
        else:
            loaded = self.openssl.X509_STORE_load_locations(self.store, os.fsencode(path), None)
        if loaded != 1:
            raise _NotChecked(f"cannot load {kind} {path}")

    def prepare(self, name: str | None) -> None:
        """The context: purpose ``ssl_server``, the TLS clients' flags, the name if any."""
        self.stack = self._made(self.openssl.OPENSSL_sk_new_null(), "OPENSSL_sk_new_null")
        for certificate in self.certificates[1:]:
            self.openssl.OPENSSL_sk_push(self.stack, certificate)
        self.context = self._made(self.openssl.X509_STORE_CTX_new(), "X509_STORE_CTX_new")
        leaf = self.certificates[0]
        if self.openssl.X509_STORE_CTX_init(self.context, self.store, leaf, self.stack) != 1:
            raise _NotChecked("X509_STORE_CTX_init failed")
        self.openssl.X509_STORE_CTX_set_default(self.context, b"ssl_server")
        parameters = self.openssl.X509_STORE_CTX_get0_param(self.context)
        client = _clients_context()  # the flags of the TLS clients' context
        self.openssl.X509_VERIFY_PARAM_set_flags(parameters, int(client.verify_flags))
        if name is not None:
            self._name(parameters, name, client.hostname_checks_common_name)

    def _name(self, parameters: int, name: str, common_name: bool) -> None:
        import ipaddress

        try:
            ipaddress.ip_address(name)
        except ValueError:
            try:
                encoded = name.encode("idna")
            except UnicodeError:
                raise _NotChecked(f"cannot encode the name {name!r}") from None
            done = self.openssl.X509_VERIFY_PARAM_set1_host(parameters, encoded, len(encoded))
            host_flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
            if not common_name:
                host_flags |= X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
            self.openssl.X509_VERIFY_PARAM_set_hostflags(parameters, host_flags)
        else:
            done = self.openssl.X509_VERIFY_PARAM_set1_ip_asc(parameters, name.encode())
        if done != 1:
            raise _NotChecked(f"OpenSSL does not take the name {name!r}")

    def run(self) -> str | None:
        """None when verified; else OpenSSL's reason."""
        if self.openssl.X509_verify_cert(self.context) == 1:
            return None
        code = int(self.openssl.X509_STORE_CTX_get_error(self.context))
        reason = self.openssl.X509_verify_cert_error_string(code)
        return reason.decode("utf-8", "replace") if reason else f"verification error {code}"

    @staticmethod
    def _made(pointer: int | None, what: str) -> int:
        if not pointer:
            raise _NotChecked(f"{what} failed")
        return pointer

    def close(self) -> None:
        if self.context:
            self.openssl.X509_STORE_CTX_free(self.context)
        if self.stack:
            self.openssl.OPENSSL_sk_free(self.stack)
        if self.store:
            self.openssl.X509_STORE_free(self.store)
        for certificate in self.certificates:
            self.openssl.X509_free(certificate)
        self.openssl.ERR_clear_error()


def _clients_context() -> Any:
    """The TLS clients' own context (``tls.context.build_context``), for its flags."""
    from mxf_remote.tls.context import build_context
    from mxf_remote.tls.options import Options

    options = Options()
    options.verify = False
    return build_context(options, {})
