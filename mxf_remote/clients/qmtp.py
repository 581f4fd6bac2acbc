"""mxf-remote-qmtpc: one QMTP package, with qmail-remote's reports.

QMTP (djb, cr.yp.to/proto/qmtp.txt; contract §5.1) is one request, one answer per
recipient, everything framed as netstrings (``<decimal length>:<bytes>,``):

* we send one package: the netstring of the message in encoding #2 (``\\n`` followed by
  the queue file as is, so its length is ``st_size + 1`` and the file is streamed from
  fd 0 without being read whole), the netstring of the sender, and the netstring of
  the concatenated recipient netstrings;
* the server answers with one netstring per recipient, in order, starting with ``K``
  (accepted, with the responsibility SMTP's 250 after DATA carries), ``Z`` (temporary)
  or ``D`` (permanent), then a description.

The reports mirror what mxf-remote-smtpc prints for the same outcomes, so qmail-send's
logs and bounces read alike whatever protocol carried the message:

* per recipient, in argument order: ``K`` gives a bare ``r`` (text after ``r`` would be
  glued onto the folded report, contract §1.3), ``Z`` gives ``s<ip> does not like
  recipient.\\nRemote host said: TEXT\\n`` and ``D`` the same with ``h``;
* then the message report: ``K<ip> accepted message.\\nRemote host said: TEXT\\n`` (the
  description of the first ``K``) when any recipient was accepted, else ``DGiving up on
  <ip>.\\n``.  After qmail-rspawn's folding, a single recipient therefore reaches
  qmail-send as K, Z (``s`` downgrades the D) or D -- exactly the server's letter.

TEXT is the description after the letter, bytes below 32 or above 126 as ``?``.

Failures: an answer that is not a netstring, is longer than 64 KiB, or does not start
with K, Z or D is ``ZRecipient did not talk proper QMTP. (#4.3.0)``; a connection that
dies or stalls for ``timeoutremote`` is qmail-remote's ``connection died``.  Both say
``Possible duplicate!`` once the whole package is out, since the server may have taken
the message (we read no answer before that).  Reports already earned by earlier
recipients are printed first.
"""

from __future__ import annotations

from mxf_remote.clients import reports
from mxf_remote.clients.common import (
    Finished,
    check_arguments,
    check_network,
    qmail_home,
    read_timeout,
    remote_ip,
    run_guarded,
)
from mxf_remote.clients.fdio import Connection, ConnectionDied
from mxf_remote.clients.message import Message, MessageUnreadable
from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import NoReturn

PROGRAM = "mxf-remote-qmtpc"
MAX_RESPONSE = 65536
CHUNK_SIZE = 262144


class NotQmtp(Exception):
    """The server's answer is not a QMTP response."""


def netstring(data: bytes) -> bytes:
    """``len:data,``."""
    return b"%d:%s," % (len(data), data)


def read_netstring(connection: Connection, limit: int) -> bytes:
    """The next netstring's contents; NotQmtp when it is not one or exceeds ``limit``."""
    length = 0
    digits = 0
    while True:
        byte = connection.read_byte()
        if byte == 0x3A:  # ":"
            break
        if not 0x30 <= byte <= 0x39 or (digits and not length) or digits >= 10:
            raise NotQmtp  # not a digit, a leading zero, or absurdly long
        length = length * 10 + byte - 0x30
        digits += 1
    if not digits or length > limit:
        raise NotQmtp
    data = connection.read_exact(length)
    if connection.read_byte() != 0x2C:  # ","
        raise NotQmtp
    return data


class QmtpSession:
    """One package over one connection."""

    def __init__(
        self,
        connection: Connection,
        *,
        ip: str,
        message: Message,
        sender: bytes,
        recipients: list[bytes],
    ) -> None:
        self.connection = connection
        self.ip = ip
        self.message = message
        self.sender = sender
        self.recipients = recipients
        self.reports: list[bytes] = []
        self.critical = False
        """True once the package is sent: a dead connection may duplicate."""

    def run(self) -> bytes:
        """Deliver; every report, ready for fd 1."""
        try:
            report = self._converse()
        except ConnectionDied:
            report = reports.connection_died(self.ip, critical=self.critical)
        except NotQmtp:
            report = reports.not_qmtp(critical=self.critical)
        except MessageUnreadable:
            report = reports.unreadable_message()
        return b"".join(self.reports) + report

    def _converse(self) -> bytes:
        self._send_package()
        self.critical = True
        accepted: bytes | None = None
        for _ in self.recipients:
            response = read_netstring(self.connection, MAX_RESPONSE)
            letter, description = response[:1], reports.qmtp_text(response[1:])
            if letter == b"K":
                self.reports.append(reports.recipient_accepted())
                if accepted is None:
                    accepted = description
            elif letter == b"Z":
                self.reports.append(reports.recipient_rejected("s", self.ip, description))
            elif letter == b"D":
                self.reports.append(reports.recipient_rejected("h", self.ip, description))
            else:
                raise NotQmtp
        if accepted is None:
            return reports.giving_up(self.ip)
        return reports.accepted(self.ip, accepted)

    def _send_package(self) -> None:
        """Message netstring (streamed), sender netstring, recipients netstring."""
        self.connection.write(b"%d:\n" % (self.message.size + 1))
        for chunk in self.message.chunks(CHUNK_SIZE):
            self.connection.write(chunk)
        recipients = b"".join(netstring(recipient) for recipient in self.recipients)
        self.connection.write(b"," + netstring(self.sender) + netstring(recipients))


def deliver(argv: list[str]) -> bytes:
    """The whole run: arguments, control files, the package, the answers."""
    sender, recipients = check_arguments(argv)
    timeout = read_timeout(qmail_home())
    check_network()
    try:
        message = Message(0)
    except MessageUnreadable:
        raise Finished(reports.unreadable_message()) from None
    connection = Connection(NETWORK_READ_FD, NETWORK_WRITE_FD, timeout)
    return QmtpSession(
        connection, ip=remote_ip(), message=message, sender=sender, recipients=recipients
    ).run()


def main() -> NoReturn:
    """Entry point of ``mxf-remote-qmtpc host sender recip...``."""
    run_guarded(PROGRAM, deliver)


if __name__ == "__main__":
    main()
