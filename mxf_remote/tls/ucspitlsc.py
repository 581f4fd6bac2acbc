"""mxf-remote-ucspitlsc: a UCSPI-TLS client (STARTTLS), with s6-ucspitlsc's interface.

    mxf-remote-ucspitlsc [-S|-s] [-J|-j] [-Y|-y] [-Z|-z] [-v n] [-K ms] [-k servername]
                         [-6 rfd] [-7 wfd] [--] prog...

prog is exec'd at once, in this process (same pid), with fds 6/7 still the raw
connection, and three new variables (the UCSPI-TLS protocol of Gifford and Brady, as
s6-ucspitlsc implements it):

* ``SSLCTLFD`` — prog's end of an AF_UNIX stream socketpair to the engine.  prog writes
  ``y`` (start TLS) or ``Y`` (start TLS and, after the handshake, send back the
  NUL-separated environment block, see :mod:`mxf_remote.tls.envblock`).  Closing it
  without a word declines TLS: the engine exits and prog goes on in clear on 6/7.
* ``SSLREADFD`` / ``SSLWRITEFD`` — the cleartext pipes once TLS runs.  A handshake
  failure shows as EOF on SSLREADFD (and, after ``Y``, on SSLCTLFD before the block ends).

The engine child (:mod:`mxf_remote.tls.engine`) waits on the control socket and loads
``ssl`` and the trust anchors meanwhile; this process imports neither.  The guard, the
command line and the exec are :mod:`mxf_remote.tls.program`'s, as for mxf-remote-tlsc;
this program's only reports are the ``Unable to run`` ones and an internal error.
"""

from __future__ import annotations

import os

from mxf_remote.tls.options import cleaned_environment
from mxf_remote.tls.program import checked_options, exec_prog, run_guarded

TYPE_CHECKING = False  # typing costs an import per delivery; annotations are strings
if TYPE_CHECKING:
    from typing import NoReturn

PROGRAM = "mxf-remote-ucspitlsc"


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of mxf-remote-ucspitlsc."""
    run_guarded(PROGRAM, _main, argv)


def _main(args: list[str]) -> NoReturn:
    options = checked_options(PROGRAM, args)
    import socket

    env = dict(os.environ)
    ctl_prog, ctl_engine = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl_prog_fd, ctl_engine_fd = ctl_prog.detach(), ctl_engine.detach()
    to_prog_r, to_prog_w = os.pipe()
    from_prog_r, from_prog_w = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        from mxf_remote.tls.engine import ucspitlsc_engine

        ucspitlsc_engine(
            options,
            env,
            parent_pid=parent,
            ctl=ctl_engine_fd,
            app_r=from_prog_r,
            app_w=to_prog_w,
        )
    for fd in (ctl_engine_fd, from_prog_r, to_prog_w):
        os.close(fd)
    for fd in (ctl_prog_fd, to_prog_r, from_prog_w):
        os.set_inheritable(fd, True)
    prog_env = cleaned_environment(options)
    prog_env["SSLCTLFD"] = str(ctl_prog_fd)
    prog_env["SSLREADFD"] = str(to_prog_r)
    prog_env["SSLWRITEFD"] = str(from_prog_w)
    exec_prog(options.prog, prog_env)


if __name__ == "__main__":
    main()
