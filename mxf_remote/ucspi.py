"""The descriptor numbers of UCSPI, defined once for every program of the package.

A UCSPI-TCP client (djb's tcpclient, s6-tcpclient) runs its program with the connection
on fd 6 (read) and fd 7 (write); qmail-remote's successors expect it there, and so do
ours.  mxf-remote's handoff puts the winning socket there, the protocol clients read and
write there, and the TLS clients take the ciphertext from there (s6-tlsc's ``-6``/``-7``
defaults) and give their program the cleartext pipes there again.

This module imports nothing: each of those programs starts once per delivery.
"""

NETWORK_READ_FD = 6
"""The descriptor a UCSPI client reads the peer from."""

NETWORK_WRITE_FD = 7
"""The descriptor a UCSPI client writes to the peer on."""
