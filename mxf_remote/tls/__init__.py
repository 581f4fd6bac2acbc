"""TLS for the protocol clients: Python stand-ins for s6-networking's s6-tlsc and s6-ucspitlsc.

``mxf-remote-tlsc`` (implicit TLS, :mod:`mxf_remote.tls.tlsc`) and ``mxf-remote-ucspitlsc``
(UCSPI-TLS, i.e. STARTTLS, :mod:`mxf_remote.tls.ucspitlsc`) share the command line of their
s6 namesakes, so ``control/tlsclient`` and ``control/ucspitlsclient`` can name either.  Both
fork an *engine* (:mod:`mxf_remote.tls.engine`) that moves bytes between the ciphertext
connection and cleartext pipes (:mod:`mxf_remote.tls.pump`), and both exec the protocol
program in the original process, so that it keeps the pid qmail-rspawn waits for.  What
the two programs share around that -- the guard and its exception policy, the command-line
check, the exec -- is :mod:`mxf_remote.tls.program`; every report either can print is in
:mod:`mxf_remote.tls.reports`.
"""
