"""What mxf-remote-tlsc and mxf-remote-ucspitlsc share around their own work.

Both programs are the same shape: check the command line, fork the engine, exec prog in
this very process (same pid, so prog's exit status is what qmail-rspawn sees).  The fork
is each program's own (:mod:`mxf_remote.tls.tlsc`, :mod:`mxf_remote.tls.ucspitlsc`);
the rest is here, with the one exception policy both follow.

The exception policy.  Until prog runs, this process answers to qmail-rspawn, which reads
its fd 1 for a qmail-remote report and turns any exit status but 0 into a bounce (spec
§7, man/mxf-remote-tlsc.8 EXIT STATUS).  So every way of not running prog is one report
(:mod:`mxf_remote.tls.reports`) and exit 0, through ``output.finish``:

* ``options.UsageError`` (a command line s6-tlsc would refuse) -- ``bad_command_line``;
* ``OSError`` from ``fstat`` of the ``-6``/``-7`` descriptor -- ``descriptor_not_open``;
* ``OSError`` from ``execvpe`` of prog -- ``exec_failed``;
* what the tlsc engine says about its handshake is no exception here: it arrives on the
  notification pipe, and mxf-remote-tlsc turns it into ``handshake_failed``,
  ``configuration_error`` and their kin;
* every other exception, ``BaseException`` included (``KeyboardInterrupt``,
  ``SystemExit``, ``MemoryError``) -- ``internal_error``, in ``run_guarded``.

Nothing escapes as a traceback, and nothing but the report reaches fd 1 or fd 2.  The
engine child follows a policy of its own (:mod:`mxf_remote.tls.engine`): it has nowhere to
report, so it never does, and leaves through ``os._exit`` whatever happens.

This module is on the path of every TLS delivery: it imports ``os`` and ``sys`` and our
own small modules, never ``ssl`` (the engine loads it, after the fork).
"""

from __future__ import annotations

import os
import sys

from mxf_remote.output import finish
from mxf_remote.tls import reports
from mxf_remote.tls.options import Options, UsageError, parse_options

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def run_guarded(
    program: str, body: Callable[[list[str]], NoReturn], argv: list[str] | None
) -> NoReturn:
    """Run ``body`` on the arguments; any exception at all is a Z report and exit 0."""
    try:
        body(sys.argv[1:] if argv is None else argv)
    except BaseException as error:
        finish(reports.internal_error(program, error))


def checked_options(program: str, args: list[str]) -> Options:
    """The options, with the ciphertext descriptors known to be open; else a Z report."""
    try:
        options = parse_options(args)
    except UsageError as error:
        finish(reports.bad_command_line(program, str(error)))
    for fd in (options.rfd, options.wfd):
        try:
            os.fstat(fd)
        except OSError:
            finish(reports.descriptor_not_open(program, fd))
    return options


def exec_prog(prog: list[str], env: dict[str, str]) -> NoReturn:
    """execvp ``prog`` with ``env``; if that fails, the qmail-remote way of saying so."""
    try:
        os.execvpe(prog[0], prog, env)
    except OSError as error:
        finish(reports.exec_failed(prog[0], error))
