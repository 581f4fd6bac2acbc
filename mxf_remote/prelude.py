"""Everything a delivery needs before its event loop: one prelude for every entry point.

``mxf-remote`` (in process), ``mxf-remoted`` (per delivery, with the launcher's
environment) and ``mxf-remote-probe`` all start the same way:

    control files -> destination -> nameservers -> this machine's addresses

(the last also checks that ``control/outgoingip``/``outgoingip6`` name addresses of this
machine, and a literal host of a family ``control/addressfamilies`` forbids ends here)

``prepare`` does those steps for one host and returns the ``Prepared`` inputs of
``dispatch.run_dispatch``, or ``Stopped``: the report that ends the delivery there (a
control file that cannot be used, no usable protocol, a bad ``MXF_NAMESERVERS``, no way
to list the local addresses) and the same in a sentence for a person (the probe). It
reads the environment it is given, never ``os.environ`` behind the caller's back, so
that the server can prepare a delivery with the launcher's ``MXF_QMAIL``, ``PATH`` and
``MXF_NAMESERVERS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import NamedTuple

from mxf_remote import report
from mxf_remote.control import (
    Control,
    ControlError,
    Protocol,
    check_sources_local,
    qmail_home,
    read_control,
)
from mxf_remote.destination import Destination, make_destination
from mxf_remote.report import Report


class Stopped(NamedTuple):
    """The delivery ends before its event loop."""

    report: Report
    """What mxf-remote prints."""
    why: str
    """The same for a person at a terminal (mxf-remote-probe)."""


class Prepared(NamedTuple):
    """What the event-loop phase needs for one delivery."""

    home: str
    """The qmail home, absolute."""
    control: Control
    destination: Destination
    nameservers: list[str]
    """Empty when the destination needs no DNS."""
    local: frozenset[str]
    """This machine's addresses, for the self-check."""


def prepare(
    host: str,
    environ: Mapping[str, str],
    *,
    beside: str,
    home: str | None = None,
    choose: Callable[[tuple[Protocol, ...]], tuple[Protocol, ...]] | None = None,
    sender: str | None = None,
) -> Prepared | Stopped:
    """The inputs of a delivery to ``host``, or the report that ends it.

    ``beside`` is where our own programs are (``control.program_directory``); ``home``
    the qmail home when the caller has found it already (else ``MXF_QMAIL`` of
    ``environ``); ``choose`` narrows the usable protocols (the probe's ``--protocols``);
    ``sender`` (the delivery's second argument) chooses a route by ``control/authsenders``
    before the host's routes.
    """
    home = os.path.abspath(home or qmail_home(environ))
    try:
        control = read_control(home, beside, search_path=environ.get("PATH", os.defpath))
    except ControlError as error:
        why = f"cannot read the control files in {home}: {error.detail()}"
        return Stopped(report.control_error(error.detail()), why)
    protocols = control.usable_protocols
    if choose is not None:
        protocols = choose(control.protocols)
    if not protocols:
        reasons = "; ".join(f"{p.service}: {p.unusable_reason}" for p in control.protocols)
        why = f"no usable mail protocol in control/protocols ({reasons or 'empty'})"
        return Stopped(report.NO_PROTOCOL, why)
    destination = make_destination(
        host,
        protocols,
        control.routes,
        control.address_families,
        sender=sender,
        sender_routes=control.sender_routes,
    )
    forbidden = destination.forbidden_literal
    if forbidden is not None:
        from mxf_remote.addresses import family_label, family_of

        family = family_label(family_of(forbidden))
        why = f"control/addressfamilies does not allow {family} for {host} ({forbidden})"
        return Stopped(report.family_not_allowed(family), why)
    nameservers: list[str] = []
    if destination.needs_dns:
        from mxf_remote.nameservers import configured_nameservers

        try:
            nameservers = configured_nameservers(environ)
        except ValueError as error:
            return Stopped(report.bad_nameservers(str(error)), str(error))
    from mxf_remote.addresses import local_addresses

    try:
        local = local_addresses()
    except OSError as error:
        return Stopped(report.NO_RESOURCES, f"cannot list this machine's addresses: {error}")
    try:
        check_sources_local(control.sources, local)
    except ControlError as error:
        why = f"cannot use the control files in {home}: {error.detail()}"
        return Stopped(report.control_error(error.detail()), why)
    return Prepared(home, control, destination, nameservers, local)
