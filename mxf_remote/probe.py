"""``mxf-remote-probe HOST [--json] [--protocols LIST]``: the dispatcher's view of a host.

The probe runs exactly what ``mxf-remote`` runs up to the handoff -- the control files,
``make_destination``, the nameservers, the self-check addresses, and ``run_dispatch``
(resolution and race on the same event loop, with the same c-ares lookup) -- then closes
the winning connection instead of executing a protocol client, and prints:

* the final **plan**: every attempt with its protocol, exchanger, address, port, MX
  preference or SRV priority, MXPS slice, where it came from, and what became of it;
* the **timeline** of the dispatch, from the values the dispatch returns (the questions
  resolution asked, and one fate per attempt of the race): every DNS question (sent,
  answered, status, records) and every connection attempt (started, ended, outcome,
  errno), in milliseconds since the process started;
* the **winner**, or what ``mxf-remote`` would have reported instead.

A human-readable table by default, one JSON object with ``--json``.  Exit status 0 when
an attempt connected, 1 otherwise.  The probe is run by people, not by qmail, so it may
speak on stderr; it never prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from mxf_remote import trace as _trace
from mxf_remote.control import Control, Protocol

if TYPE_CHECKING:
    from mxf_remote.conversation import Conversation
    from mxf_remote.dispatch import Dispatched
    from mxf_remote.plan import Facts, Plan
    from mxf_remote.race import AttemptFate


class ProbeError(Exception):
    """Something that stops the probe: printed as one line on stderr, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(1)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(
        prog="mxf-remote-probe",
        description="Resolve and race like mxf-remote, then print the plan and the timeline.",
    )
    parser.add_argument("host", help="a domain name or an address literal such as [192.0.2.1]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--sender",
        metavar="ADDRESS",
        help="the envelope sender, for control/authsenders (default: none)",
    )
    parser.add_argument(
        "--conversation",
        action="store_true",
        help="after the race, speak SMTP with the winner up to QUIT (never MAIL) and time it",
    )
    parser.add_argument(
        "--protocols",
        metavar="LIST",
        action="append",
        help="only these services of control/protocols (comma-separated, repeatable)",
    )
    return parser.parse_args(argv)


@dataclass
class AttemptRow:
    """One planned attempt and what became of it."""

    number: int
    protocol: str
    exchanger: str
    address: str
    port: int
    preference: int
    slice: int | None
    source: str
    start: float | None = None
    end: float | None = None
    outcome: str = "not started"
    errno: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return dict(self.__dict__)


@dataclass
class QueryRow:
    """One DNS question and its answer."""

    name: str
    type: str
    start: float
    end: float | None = None
    status: str = "unanswered"
    records: list[Any] = field(default_factory=list)
    dnssec: str | None = None
    """With ``control/dane`` on: ``secure`` (the resolver's AD bit) or ``insecure``."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return dict(self.__dict__)


@dataclass
class Result:
    """Everything the probe prints."""

    host: str
    protocols: list[str]
    settings: dict[str, Any]
    nameservers: list[str]
    plan: list[AttemptRow]
    waiting: list[str]
    facts: dict[str, Any]
    """What the planner decided (``plan.Facts``), as JSON shows it."""
    history: list[dict[str, Any]] | None
    queries: list[QueryRow]
    notes: list[tuple[float, str, str]]
    """(ms, what, where): moments worth a line of the timeline that are no query or attempt."""
    events: list[dict[str, Any]]
    winner: AttemptRow | None
    elapsed: float
    report: str | None
    conversation: Conversation | None = None
    tls: dict[str, Any] = field(default_factory=dict)
    """DANE and MTA-STS: the settings, TLSA answers, policy, the winner's requirement."""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "host": self.host,
            "protocols": self.protocols,
            "settings": self.settings,
            "nameservers": self.nameservers,
            "plan": [row.as_dict() for row in self.plan],
            "waiting": self.waiting,
            "facts": self.facts,
            "history": self.history,
            "timeline": {
                "queries": [q.as_dict() for q in self.queries],
                "attempts": [row.as_dict() for row in self.plan if row.start is not None],
                "events": self.events,
            },
            "winner": None if self.winner is None else self.winner.as_dict(),
            "connected": self.winner is not None,
            "elapsed_ms": self.elapsed,
            "report": self.report,
            "tls": self.tls,
            **({} if self.conversation is None else {"conversation": _conversation_dict(self)}),
        }


def main() -> NoReturn:
    """Console entry point: exit 0 when something connected, 1 otherwise; no traceback."""
    try:
        code = run(sys.argv)
    except ProbeError as error:
        print(f"mxf-remote-probe: {error}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("mxf-remote-probe: interrupted", file=sys.stderr)
        code = 1
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else 1
    except BaseException as error:  # the probe must never print a traceback
        print(f"mxf-remote-probe: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)


def run(argv: list[str]) -> int:
    """Probe the host named in ``argv``, print, and return the exit status."""
    arguments = _arguments(argv[1:])
    trace = _trace.Trace(enabled=True)
    trace.mark("start", argv=[arguments.host])
    from mxf_remote.control import program_directory
    from mxf_remote.prelude import Prepared, prepare

    prepared = prepare(
        arguments.host,
        os.environ,
        beside=program_directory(argv[0]),
        choose=lambda protocols: _chosen_protocols(protocols, arguments.protocols),
        sender=arguments.sender,
    )
    if not isinstance(prepared, Prepared):
        raise ProbeError(prepared.why)
    home, control, protocols = prepared.home, prepared.control, prepared.destination.protocols
    destination, nameservers = prepared.destination, prepared.nameservers
    local = prepared.local

    from mxf_remote.dispatch import run_dispatch
    from mxf_remote.race import Won

    history = server_history(home)
    penalized = {(e["address"], e["port"]) for e in history or () if e["penalized"]}
    dispatched = run_dispatch(
        destination,
        control,
        nameservers,
        local=local,
        clock=_trace.now_ms,
        penalized=(lambda address, port: (address, port) in penalized) if history else None,
        report=False,  # the probe delivers nothing: no TLS-RPT line
    )
    elapsed = _trace.now_ms()
    outcome = dispatched.outcome
    report = None
    conversation = None
    if isinstance(outcome, Won):
        if arguments.conversation and speaks_smtp_in_clear(outcome.attempt.protocol):
            from mxf_remote.conversation import converse

            attempt = outcome.attempt
            conversation = converse(
                outcome.connection,
                server_name=attempt.exchanger if attempt.named else None,
                helohost=_helohost(home),
                timeout=CONVERSATION_STEP_TIMEOUT,
                environ=os.environ,
                clock=_trace.now_ms,
            )
        else:
            outcome.connection.close()
    else:
        from mxf_remote.explain import explain_failure

        failure = explain_failure(dispatched.plan, outcome)
        report = failure.letter + failure.text.decode("latin-1")

    from mxf_remote.timeline import dispatch_events

    trace.merge(dispatch_events(dispatched))
    rows, winner = attempt_rows(dispatched.plan, outcome.fates)
    result = Result(
        host=arguments.host,
        protocols=[p.service for p in protocols],
        settings={
            "connectdelay_ms": round(control.connect_delay * 1000),
            "timeoutconnect_s": control.timeout_connect,
            "timeoutdns_s": control.timeout_dns,
            "qmail_home": home,
            "source_ipv4": control.sources.ipv4,
            "source_ipv6": control.sources.ipv6,
            "address_families": list(destination.families),
            "routes": [
                {
                    "protocol": relay.protocol.service,
                    "relay": relay.written,
                    "port": relay.port,
                    "user": relay.user,
                }
                for relay in destination.relays
            ],
        },
        nameservers=nameservers,
        plan=rows,
        waiting=[entry.lookup for entry in dispatched.plan.waiting],
        facts=facts_dict(dispatched.plan.facts),
        history=history,
        queries=query_rows(dispatched, dane=control.dane),
        notes=notes(dispatched),
        events=trace.events,
        winner=winner,
        elapsed=elapsed,
        report=report,
        conversation=conversation,
        tls=tls_dict(dispatched, control, nameservers),
    )
    if arguments.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(render_text(result))
    return 0 if winner is not None else 1


CONVERSATION_STEP_TIMEOUT = 30.0
"""Seconds each step of ``--conversation`` may take (a reply, the handshake, a write)."""


def speaks_smtp_in_clear(protocol: Protocol) -> bool:
    """True for a protocol whose connection starts with an SMTP banner in clear text.

    The service label ``smtp`` or the program mxf-remote-smtpc, and no implicit TLS.
    """
    program = os.path.basename(protocol.program_path or protocol.program)
    smtp = protocol.service == "smtp" or program == "mxf-remote-smtpc"
    return smtp and not protocol.implicit_tls


def _helohost(home: str) -> str:
    """The name the client would give: control/helohost, control/me, else this machine's."""
    from mxf_remote.controlfile import ControlError, read_first_line

    for name in ("helohost", "me"):
        try:
            value = read_first_line(home, name)
        except ControlError:
            continue
        if value:
            return value
    import socket

    return socket.getfqdn()


def _chosen_protocols(
    protocols: tuple[Protocol, ...], wanted_lists: list[str] | None
) -> tuple[Protocol, ...]:
    """The usable protocols, limited to ``--protocols`` when given (in file order)."""
    usable = tuple(p for p in protocols if p.usable)
    if wanted_lists:
        wanted = {w.strip().lower() for text in wanted_lists for w in text.split(",") if w.strip()}
        known = {p.service for p in protocols}
        unknown = sorted(wanted - known)
        if unknown:
            raise ProbeError(
                f"--protocols: {', '.join(unknown)} not in control/protocols "
                f"(it has {', '.join(sorted(known)) or 'nothing'})"
            )
        for p in protocols:
            if p.service in wanted and not p.usable:
                raise ProbeError(f"--protocols: {p.service} is not usable: {p.unusable_reason}")
        usable = tuple(p for p in usable if p.service in wanted)
    if not usable:
        reasons = "; ".join(f"{p.service}: {p.unusable_reason}" for p in protocols)
        raise ProbeError(f"no usable mail protocol in control/protocols ({reasons or 'empty'})")
    return usable


def attempt_rows(
    plan: Plan, fates: tuple[AttemptFate, ...]
) -> tuple[list[AttemptRow], AttemptRow | None]:
    """One row per attempt of the final plan (and per attempt made that the plan no longer
    has, such as one the self-check cut), with its fate; and the winner's row."""
    from mxf_remote.plan import mxps_slice
    from mxf_remote.race import Fate

    by_key = {fate.attempt.key: fate for fate in fates}
    planned = list(plan.attempts)
    planned += [f.attempt for f in fates if f.attempt.key not in {a.key for a in planned}]
    rows: list[AttemptRow] = []
    winner = None
    for number, attempt in enumerate(planned, start=1):
        row = AttemptRow(
            number,
            attempt.protocol.service,
            attempt.exchanger,
            attempt.address,
            attempt.port,
            attempt.preference,
            mxps_slice(attempt.preference) if attempt.source == "mx" else None,
            attempt.source,
        )
        fate = by_key.get(attempt.key)
        if fate is not None:
            row.start, row.end, row.outcome, row.errno = (
                fate.start,
                fate.end,
                fate.fate.value,
                fate.error,
            )
            if fate.fate in (Fate.WON, Fate.WON_AT_DEADLINE):
                winner = row
        rows.append(row)
    return rows, winner


def tls_dict(
    dispatched: Dispatched[Any], control: Control, nameservers: list[str]
) -> dict[str, Any]:
    """DANE and MTA-STS as the delivery saw them (empty when neither is configured)."""
    if not control.dane and control.mtasts is None:
        return {}
    from mxf_remote.tlspolicy import usable_tlsa

    result: dict[str, Any] = {"dane": control.dane, "mtasts": control.mtasts}
    if control.dane:
        remote = [s for s in nameservers if not is_loopback_server(s)]
        result["untrusted_nameservers"] = remote
        result["tlsa"] = [
            {
                "name": name,
                "port": port,
                "status": answer.status.value,
                "dnssec": "secure" if answer.secure else "insecure",
                "records": [record.text() for record in answer.records],
                "usable": [record.text() for record in usable_tlsa(answer.records)],
            }
            for (name, port), answer in dispatched.tlsa
        ]
    sts = dispatched.sts
    if sts.state != "off":
        policy = sts.policy
        result["sts"] = {
            "state": sts.state,
            "domain": sts.domain,
            "source": sts.source,
            "mode": None if policy is None else policy.mode,
            "mx": [] if policy is None else list(policy.mx),
            "max_age": None if policy is None else policy.max_age,
        }
    requirement = dispatched.requirement
    result["requirement"] = {
        "kind": requirement.kind or "none",
        "records": [record.text() for record in requirement.records],
        "names": list(requirement.names),
    }
    return result


def is_loopback_server(server: str) -> bool:
    """True for a nameserver (``ip:port``, ``[v6]:port``) on this machine's loopback."""
    address = server[1:].partition("]")[0] if server.startswith("[") else server.partition(":")[0]
    return address.startswith("127.") or address == "::1"


def facts_dict(facts: Facts) -> dict[str, Any]:
    """The plan's facts as JSON shows them."""
    return {
        "kind": facts.kind,
        "mx": None if facts.mx is None else facts.mx.value,
        "null_mx": facts.null_mx,
        "declined": sorted(facts.declined),
        "offered": list(facts.offered),
        "beyond_cap": facts.beyond_cap,
        "self_cut": facts.self_cut,
        "cut_preference": facts.cut_preference,
        "behind": [list(key) for key in facts.behind],
        "refused": [
            {
                "protocol": attempt.protocol.service,
                "exchanger": attempt.exchanger,
                "address": attempt.address,
                "port": attempt.port,
                "reason": refusal.text,
            }
            for attempt, refusal in facts.refused
        ],
        "targets": [target._asdict() for target in facts.targets],
    }


STATUS_SECONDS = 1.0
"""How long the probe waits for mxf-remoted's state."""


def server_history(home: str) -> list[dict[str, Any]] | None:
    """mxf-remoted's connection history, when ``control/remotedsocket`` names a server
    that answers; None otherwise (the probe then plans without a history)."""
    from mxf_remote import remotedwire
    from mxf_remote.controlfile import ControlError, read_first_line

    try:
        path = read_first_line(home, "remotedsocket")
    except ControlError:
        return None
    if not path:
        return None
    import socket

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(STATUS_SECONDS)
    try:
        connection.connect(path)
        connection.sendall(remotedwire.encode_status_request())
        answer = b""
        while (length := remotedwire.complete_length(answer)) is None:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            answer += chunk
        status = json.loads(remotedwire.unwrap(answer[:length]))
    except (OSError, ValueError, remotedwire.Malformed):
        return None
    finally:
        connection.close()
    history = status.get("history") if isinstance(status, dict) else None
    return history if isinstance(history, list) else None


def query_rows(dispatched: Dispatched[Any], *, dane: bool = False) -> list[QueryRow]:
    """Every DNS question: unanswered ones were cut by timeoutdns or cancelled at the end.

    ``dane``: the answers came from the AD-aware lookup; each says whether it is secure.
    """
    rows = []
    for query in dispatched.queries:
        row = QueryRow(query.name, query.rtype, query.sent)
        if query.answered is not None:
            row.end, row.status = query.answered, query.status.value
            if dane:
                row.dnssec = "secure" if query.secure else "insecure"
            from mxf_remote.timeline import describe_record

            row.records = [describe_record(r) for r in query.records]
        elif dispatched.dns_expired_at is not None:
            row.end, row.status = dispatched.dns_expired_at, "timeoutdns"
        else:
            row.status = "cancelled"
        rows.append(row)
    return rows


def notes(dispatched: Dispatched[Any]) -> list[tuple[float, str, str]]:
    """The moments of the dispatch that are neither a question nor an attempt."""
    from mxf_remote.race import Lost

    found = [(t, "resolution delay over", name) for name, t in dispatched.delays_over]
    if dispatched.dns_expired_at is not None:
        found.append((dispatched.dns_expired_at, "timeoutdns over", ""))
    outcome = dispatched.outcome
    for fate in outcome.fates:
        if fate.parked is not None:
            found.append((fate.parked, "waits for the self-check", fate.attempt.address))
    if isinstance(outcome, Lost) and outcome.timed_out:
        found.append((outcome.ended, "timeoutconnect over", ""))
    return found


# ---------------------------------------------------------------------------------------
# The human-readable form


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _records(records: list[Any]) -> str:
    shown = [" ".join(str(part) for part in r) if isinstance(r, list) else str(r) for r in records]
    text = ", ".join(shown)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def _winner_line(w: AttemptRow, *, closed: bool) -> str:
    from mxf_remote.race import Fate

    when = f"connected at {_ms(w.end)} ms"
    if w.outcome == Fate.WON_AT_DEADLINE.value:
        when = (
            f"won at {_ms(w.end)} ms when timeoutconnect ran out (better exchangers' "
            "lookups still out counted as temporary failures)"
        )
    return f"Winner: {w.protocol} to {w.exchanger} {w.address} port {w.port}, {when}" + (
        " (closed: the probe hands nothing off)" if closed else ""
    )


def _history_lines(history: list[dict[str, Any]] | None) -> list[str]:
    """mxf-remoted's connection history, when the probe could ask it."""
    if history is None:
        return []
    if not history:
        return ["connection history (mxf-remoted): nothing failed lately"]
    lines = ["connection history (mxf-remoted):"]
    for entry in history:
        state = "penalized: tried behind its siblings" if entry["penalized"] else "remembered"
        lines.append(
            f"  {entry['address']} port {entry['port']}: {entry['failures']} failure(s), "
            f"the last {entry['seconds_ago']:g} s ago; {state}"
        )
    return lines


def _fact_lines(facts: dict[str, Any]) -> list[str]:
    """What the planner decided that the plan table does not show."""
    lines = []
    if facts["declined"]:
        lines.append(f'declined by SRV ".": {", ".join(facts["declined"])}')
    if facts["null_mx"]:
        lines.append("null MX: the domain says it accepts no mail")
    if facts["beyond_cap"]:
        lines.append("more exchangers than are resolved: only the first of each answer")
    if facts["cut_preference"] is not None:
        lines.append(
            f"self-check: this machine is MX {facts['cut_preference']}; "
            "only better exchangers are tried"
        )
    for refused in facts.get("refused", ()):
        lines.append(
            f"refused by TLS policy: {refused['protocol']} to {refused['exchanger']} "
            f"{refused['address']} port {refused['port']}: {refused['reason']}"
        )
    for target in facts["targets"]:
        if not target["has_addresses"]:
            why = "temporary failure" if target["temporary"] else "no such address"
            lines.append(
                f"no address for {target['name']} "
                f"({target['source']} {target['preference']}): {why}"
            )
    return lines


def _tls_lines(tls: dict[str, Any]) -> list[str]:
    """DANE and MTA-STS in a few lines (nothing when neither is configured)."""
    if not tls:
        return []
    lines = []
    if tls["dane"]:
        lines.append("DANE: on (control/dane); the nameservers' AD bit is believed")
        for server in tls["untrusted_nameservers"]:
            lines.append(
                f"warning: nameserver {server} is not on loopback: its AD bit crosses the "
                "network unauthenticated (RFC 4035 §4.9.3); run a validating resolver here"
            )
        for entry in tls["tlsa"]:
            records = ", ".join(entry["records"]) or "no records"
            lines.append(
                f"TLSA _{entry['port']}._tcp.{entry['name']}: {entry['status']} "
                f"({entry['dnssec']}): {records}"
            )
    sts = tls.get("sts")
    if sts is not None:
        if sts["state"] == "policy":
            lines.append(
                f"MTA-STS policy of {sts['domain']}: mode {sts['mode']}, mx "
                f"{' '.join(sts['mx'])}, max_age {sts['max_age']} ({sts['source']})"
            )
        else:
            lines.append(f"MTA-STS policy of {sts['domain']}: {sts['state']} ({sts['source']})")
    requirement = tls["requirement"]
    if requirement["kind"] != "none":
        lines.append(f"the winner's TLS requirement: {requirement['kind']}")
    return lines


def _conversation_dict(result: Result) -> dict[str, Any]:
    from mxf_remote.conversation import as_dict

    assert result.conversation is not None
    return as_dict(result.conversation)


def _settings_lines(result: Result) -> list[str]:
    """The first lines: timeouts, source addresses and families, the routes used."""
    s = result.settings
    families = ",".join(s.get("address_families") or ("ipv6", "ipv4"))
    out = [
        f"mxf-remote-probe {result.host}: protocols {', '.join(result.protocols)}; "
        f"connectdelay {s['connectdelay_ms']} ms, timeoutconnect {s['timeoutconnect_s']:g} s, "
        f"timeoutdns {s['timeoutdns_s']:g} s",
        f"source addresses: IPv4 {s.get('source_ipv4') or 'system choice'}, "
        f"IPv6 {s.get('source_ipv6') or 'system choice'}; address families {families}",
    ]
    for route in s.get("routes") or ():
        user = f", AUTH as {route['user']}" if route["user"] else ""
        out.append(f"route: {route['protocol']} to {route['relay']} port {route['port']}{user}")
    return out


def render_text(result: Result) -> str:
    """The default, human-readable output."""
    out = _settings_lines(result)
    if result.nameservers:
        out.append(f"nameservers: {', '.join(result.nameservers)}")
    out += ["", "Plan"]
    if result.plan:
        out += _table(
            ["#", "protocol", "exchanger", "address", "port", "pref", "slice", "from", "outcome"],
            [
                [
                    str(r.number),
                    r.protocol,
                    r.exchanger,
                    r.address,
                    str(r.port),
                    str(r.preference),
                    "-" if r.slice is None else str(r.slice),
                    r.source,
                    r.outcome + (f" ({r.errno})" if r.errno else ""),
                ]
                for r in result.plan
            ],
            {0, 4, 5, 6},
        )
    else:
        out.append("(no attempt planned)")
    for lookup in result.waiting:
        out.append(f"still waiting for: {lookup}")
    out += _fact_lines(result.facts)
    out += _tls_lines(result.tls)
    out += _history_lines(result.history)
    timeline: list[tuple[float, list[str]]] = []
    for q in result.queries:
        detail = q.status + (f" ({q.dnssec})" if q.dnssec else "")
        detail += f": {_records(q.records)}" if q.records else ""
        timeline.append((q.start, [_ms(q.start), _ms(q.end), f"DNS {q.type} {q.name}", detail]))
    for r in result.plan:
        if r.start is not None:
            what = f"connect {r.protocol} {r.address} port {r.port}"
            detail = r.outcome + (f" ({r.errno})" if r.errno else "")
            timeline.append((r.start, [_ms(r.start), _ms(r.end), what, detail]))
    for t, what, where in result.notes:
        timeline.append((t, [_ms(t), "", what, where]))
    timeline.sort(key=lambda item: item[0])
    out += ["", "Timeline (ms since the probe started)"]
    out += _table(["start", "end", "what", "outcome"], [row for _, row in timeline], {0, 1})
    out.append("")
    w = result.winner
    if w is not None:
        out.append(_winner_line(w, closed=result.conversation is None))
    else:
        out.append(f"No connection after {_ms(result.elapsed)} ms.")
        if result.report:
            lines = result.report.rstrip("\n").split("\n")
            out.append("mxf-remote would report: " + lines[0])
            out += ["  " + line for line in lines[1:]]
    if result.conversation is not None:
        from mxf_remote.conversation import render_text as conversation_lines

        out += ["", *conversation_lines(result.conversation)]
    return "\n".join(out)
