"""The command line shared by mxf-remote-tlsc and mxf-remote-ucspitlsc (s6-tlsc's letters).

s6-networking's s6-tlsc and s6-ucspitlsc take the same options, parsed by skalibs'
``subgetopt``: single letters that may be bundled (``-Sj``), an argument either glued
(``-K5000``) or in the next word (``-K 5000``), ``--`` ending the options, and the first
word that does not start with ``-`` starting the program.  We accept exactly their letters
and the one long option mxf-remote might want (``--no-verify-cert``), and reject the rest.

This module only parses; it imports nothing heavy, because it runs before every handoff.
"""

from __future__ import annotations

import os

from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

FLAGS = "SsJjYyZz"
WITH_ARGUMENT = "vKk67"

DEFAULT_HANDSHAKE_MS = 60_000
"""-K default.  s6 waits forever by default; a delivery must not, so one minute (the
same order as qmail's timeoutconnect) bounds a peer that accepts TCP but never answers
the ClientHello.  ``-K 0`` still means no limit."""

TLS_CONFIG_VARIABLES = ("CADIR", "CAFILE", "CERTFILE", "KEYFILE", "TLS_UID", "TLS_GID")
"""The variables that configure the engine; removed from prog's environment unless -Z."""

USAGE = (
    "[ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -v verbosity ] [ -K timeout ]"
    " [ -k servername ] [ -6 rfd ] [ -7 wfd ] [ --no-verify-cert ] [ -- ] prog..."
)


class UsageError(Exception):
    """The command line is not one s6-tlsc would accept."""


class Options:
    """What the command line asked for (s6 defaults unless noted)."""

    __slots__ = (
        "client_cert",
        "close_notify",
        "handshake_ms",
        "keep_env",
        "prog",
        "rfd",
        "servername",
        "strict_eof",
        "verbosity",
        "verify",
        "wfd",
    )

    def __init__(self) -> None:
        self.close_notify = False  # -S: close_notify on EOF from prog; -s (default): SHUT_WR
        self.strict_eof = False  # -J: a peer EOF without close_notify is an error; -j default
        self.client_cert = False  # -y: present CERTFILE/KEYFILE; -Y (default): no client cert
        self.keep_env = False  # -Z: keep CADIR, CAFILE, ... in prog's environment; -z default
        self.verbosity = 1  # -v: accepted; we never write diagnostics (fd 2 is the report)
        self.handshake_ms = DEFAULT_HANDSHAKE_MS  # -K; 0 = no limit
        self.servername: str | None = None  # -k: SNI, and the name verified with CAFILE/CADIR
        self.rfd = NETWORK_READ_FD  # -6: ciphertext read descriptor
        self.wfd = NETWORK_WRITE_FD  # -7: ciphertext write descriptor
        self.verify = True  # --no-verify-cert turns verification off even with CAFILE
        self.prog: list[str] = []


def _number(letter: str, text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise UsageError(f"-{letter} needs an unsigned decimal number, not {text!r}")
    return int(text)


def _apply(options: Options, letter: str, value: str) -> None:
    if letter == "v":
        options.verbosity = _number(letter, value)
    elif letter == "K":
        options.handshake_ms = _number(letter, value)
    elif letter == "k":
        if not value or "\0" in value:
            raise UsageError("-k needs a server name")
        options.servername = value
    elif letter == "6":
        options.rfd = _number(letter, value)
    else:
        options.wfd = _number(letter, value)


def _flag(options: Options, letter: str) -> None:
    if letter in "Ss":
        options.close_notify = letter == "S"
    elif letter in "Jj":
        options.strict_eof = letter == "J"
    elif letter in "Yy":
        options.client_cert = letter == "y"
    else:
        options.keep_env = letter == "Z"


def _bundle(options: Options, word: str, rest: list[str]) -> int:
    """Apply one ``-xyz`` word; return how many following words it consumed (0 or 1)."""
    for position in range(1, len(word)):
        letter = word[position]
        if letter in FLAGS:
            _flag(options, letter)
        elif letter in WITH_ARGUMENT:
            if position + 1 < len(word):
                _apply(options, letter, word[position + 1 :])
                return 0
            if not rest:
                raise UsageError(f"-{letter} needs an argument")
            _apply(options, letter, rest[0])
            return 1
        else:
            raise UsageError(f"unknown option -{letter}")
    return 0


def parse_options(args: list[str]) -> Options:
    """Parse ``args`` (argv without argv[0]) the way skalibs' subgetopt would."""
    options = Options()
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word == "--":
            break
        if word == "--no-verify-cert":
            options.verify = False
        elif word.startswith("-") and word != "-":
            index += _bundle(options, word, args[index:])
        else:
            index -= 1
            break
    options.prog = args[index:]
    if not options.prog:
        raise UsageError("no program to run")
    if options.rfd < 3 or options.wfd < 3 or options.rfd == options.wfd:
        raise UsageError("-6 and -7 must name two different descriptors, each at least 3")
    return options


def cleaned_environment(options: Options) -> dict[str, str]:
    """prog's environment before any SSL_* change: ours, minus the TLS configuration
    variables unless -Z (s6's -Z handling differs between releases; we clear explicitly)."""
    env = dict(os.environ)
    if not options.keep_env:
        for name in TLS_CONFIG_VARIABLES:
            env.pop(name, None)
    return env
