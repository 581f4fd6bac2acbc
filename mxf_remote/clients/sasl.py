"""The client side of the SASL mechanisms SMTP AUTH uses (RFC 4954): SCRAM-SHA-256,
CRAM-MD5, PLAIN and LOGIN, best first.

Imported by ``mxf-remote-smtpc`` only when a relay has credentials, and only over TLS
(``smtp.SmtpSession._authenticate``).  Each mechanism is an object with ``initial`` (the
initial response sent with ``AUTH``, or None) and ``respond(challenge)`` (the answer to a
decoded 334 challenge); ``Abort`` means the exchange cannot go on (a challenge that does
not fit, a server signature that does not verify), and the client cancels with ``*``.
Responses are raw bytes: the caller encodes them in base64.

* SCRAM-SHA-256 (RFC 5802, RFC 7677): no channel binding (``n,,``); the server's final
  message is verified, so a server that does not know the password cannot pass for one.
  The user name is escaped (``=2C``, ``=3D``); SASLprep is not applied (user names and
  passwords are sent as the bytes of the control file).
* CRAM-MD5 (RFC 2195): ``user`` SP the hex HMAC-MD5 of the challenge keyed with the
  password.
* PLAIN (RFC 4616): ``\\0user\\0password`` as the initial response.
* LOGIN (draft-murchison-sasl-login): the user to the first challenge, the password to
  the second, whatever their prompt says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFERENCE = (b"SCRAM-SHA-256", b"CRAM-MD5", b"PLAIN", b"LOGIN")
"""Best first."""
MAX_SCRAM_ITERATIONS = 1_000_000
"""A hostile server cannot make us spend more than this many PBKDF2 rounds."""


class Abort(Exception):
    """The exchange cannot go on; the client sends ``*``."""


def choose(offered: set[bytes]) -> bytes | None:
    """The best mechanism we speak among those ``offered`` (upper case), or None."""
    for name in PREFERENCE:
        if name in offered:
            return name
    return None


class Plain:
    """RFC 4616."""

    def __init__(self, user: bytes, password: bytes) -> None:
        self.initial: bytes | None = b"\0" + user + b"\0" + password
        self._sent = False

    def respond(self, challenge: bytes) -> bytes:
        """A 334 after the initial response: the server wants it again (once)."""
        if self._sent or self.initial is None:
            raise Abort
        self._sent = True
        return self.initial


class Login:
    """The LOGIN mechanism: the user, then the password."""

    initial = None

    def __init__(self, user: bytes, password: bytes) -> None:
        self._answers = [user, password]

    def respond(self, challenge: bytes) -> bytes:
        """The next answer, whatever the prompt."""
        if not self._answers:
            raise Abort
        return self._answers.pop(0)


class CramMd5:
    """RFC 2195."""

    initial = None

    def __init__(self, user: bytes, password: bytes) -> None:
        self._user = user
        self._password = password
        self._done = False

    def respond(self, challenge: bytes) -> bytes:
        """``user`` SP hex HMAC-MD5(password, challenge)."""
        if self._done or not challenge:
            raise Abort
        self._done = True
        digest = hmac.new(self._password, challenge, hashlib.md5).hexdigest()
        return self._user + b" " + digest.encode()


def _scram_attributes(message: bytes) -> dict[bytes, bytes]:
    attributes: dict[bytes, bytes] = {}
    for part in message.split(b","):
        name, equals, value = part.partition(b"=")
        if len(name) != 1 or not equals:
            raise Abort
        attributes.setdefault(name, value)
    return attributes


class ScramSha256:
    """RFC 5802 with SHA-256 (RFC 7677), without channel binding."""

    def __init__(self, user: bytes, password: bytes, nonce: bytes | None = None) -> None:
        name = user.replace(b"=", b"=3D").replace(b",", b"=2C")
        self._nonce = nonce or base64.b64encode(os.urandom(18))
        self._first_bare = b"n=" + name + b",r=" + self._nonce
        self.initial: bytes | None = b"n,," + self._first_bare
        self._password = password
        self._server_signature: bytes | None = None
        self._step = 0

    def respond(self, challenge: bytes) -> bytes:
        """The client-final message, then (after verifying the server) an empty one."""
        self._step += 1
        if self._step == 1:
            return self._final(challenge)
        if self._step == 2:
            attributes = _scram_attributes(challenge)
            if b"v" not in attributes or self._server_signature is None:
                raise Abort
            try:
                signature = base64.b64decode(attributes[b"v"], validate=True)
            except ValueError:
                raise Abort from None
            if not hmac.compare_digest(signature, self._server_signature):
                raise Abort
            return b""
        raise Abort

    def _final(self, server_first: bytes) -> bytes:
        attributes = _scram_attributes(server_first)
        nonce, salt_text, iterations_text = (attributes.get(k) for k in (b"r", b"s", b"i"))
        if nonce is None or salt_text is None or iterations_text is None or b"m" in attributes:
            raise Abort
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise Abort
        if not iterations_text.isdigit() or len(iterations_text) > 9:
            raise Abort
        iterations = int(iterations_text)
        if not 1 <= iterations <= MAX_SCRAM_ITERATIONS:
            raise Abort
        try:
            salt = base64.b64decode(salt_text, validate=True)
        except ValueError:
            raise Abort from None
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = b"c=biws,r=" + nonce
        auth_message = self._first_bare + b"," + server_first + b"," + without_proof
        client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self._server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return without_proof + b",p=" + base64.b64encode(proof)


Mechanism = Plain | Login | CramMd5 | ScramSha256


def start(name: bytes, user: bytes, password: bytes) -> Mechanism:
    """The client side of mechanism ``name`` (one of ``PREFERENCE``)."""
    if name == b"SCRAM-SHA-256":
        return ScramSha256(user, password)
    if name == b"CRAM-MD5":
        return CramMd5(user, password)
    if name == b"PLAIN":
        return Plain(user, password)
    return Login(user, password)
