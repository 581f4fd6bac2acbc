"""What DANE and MTA-STS cost per delivery, next to the same delivery without them (issue 13).

Run: ``python bench/tls_policy.py [runs]`` as root, with the tox environment's python
(default 30 runs per scenario, under a minute and a half); ``--out``, ``--no-write``.
Prints markdown and writes it to ``bench/results/tls_policy.md``.

Why a bench of its own: a policy is paid on every delivery -- DANE by the AD-aware
lookups and the TLSA question (and, for DANE-TA, the engine importing ``cryptography``),
MTA-STS by the ``_mta-sts`` TXT question, reading the cache and, the first time, an
HTTPS fetch.  The question the figures answer is "what does turning it on cost", so
every scenario is a whole delivery of a small message, as qmail-rspawn runs it, to an
aiosmtpd exchanger offering STARTTLS, and every scenario resolves through the *same*
validating unbound of the test suite's DNSSEC lab (``tests/infra/dnsseclab.py``: knotd
signing ``test.`` and ``bench.test.``), c-ares or not:

1. **baseline**: no ``control/dane``, no ``control/mtasts`` (opportunistic STARTTLS);
2. **dane on, no TLSA**: ``control/dane`` = ``on``, the domain signed, no TLSA record;
3. **DANE-EE**: ``3 1 1`` naming a self-signed leaf (``tests/danekit.py``);
4. **DANE-TA**: ``2 1 1`` naming the intermediate the server sends with its leaf;
5. **MTA-STS enforce, cached**: ``control/mtasts`` names a cache holding the policy
   (same id as the TXT record, fetched by the warm-up);
6. **MTA-STS enforce, first delivery**: its own cache directory, emptied of policies
   before every run, so the policy is fetched over HTTPS from the policy host.

The WebPKI of MTA-STS is one trustme CA in a hashed directory named by ``SSL_CERT_DIR``
(the trick of ``tests/test_mtasts_delivery.py``); every scenario gets the same
environment.  A hashed directory is read lazily, one file per issuer needed, as the
system's ``/etc/ssl/certs`` is, so this costs what the system store would.

Twice: the **cold path** (no ``control/remotedsocket``: one ``mxf-remote`` process per
delivery resolves, races and execs the clients) and the **warm path** (every home's
``control/remotedsocket`` names one ``mxf-remoted`` started for the bench, as
``bench/warm.py`` does; the launcher hands over, the server resolves and races).  Within
a path the six scenarios are interleaved, run after run, so load shifts them alike.

Figures per delivery:

* **delivery CPU**: user + system of everything the delivery ran -- ``mxf-remote`` (the
  launcher), the clients it execs, the TLS engine.  This process is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so an engine orphaned when its client exits comes back
  here and is reaped; ``RUSAGE_CHILDREN`` counts it.  Median (p10..p90);
* **unbound**, **mxf-remoted**: ``/proc/PID/stat`` utime + stime + cutime + cstime of the
  process tree (``machine.tree_cpu``), read between deliveries; the interval from one
  delivery's start to the next one's is the first one's.  Clock ticks (10 ms), so the
  figure is the scenario's sum over its runs divided by the runs -- a mean, good to about
  +-0.5 ms at 30 runs;
* **policy host**: the HTTPS server of the policy, a thread of this process; its CPU is
  ``time.thread_time()`` around each request it serves (accept to close), exact;
* **wall**: from starting ``mxf-remote`` to its exit (what qmail-rspawn waits for).

Not counted: the aiosmtpd exchangers (threads of this process) and knotd (asked by
unbound on a cache miss only: unbound caps TTLs at 30 s).  Every delivery is checked:
exit 0, a ``K`` report from the expected exchanger, the message arrived over TLS;
before measuring, ``mxf-remote-probe`` says which TLS requirement each scenario's
exchanger gets, and the policy host's requests are counted per scenario.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import queue
import re
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from tests.infra.netns import enter_private_netns  # noqa: E402
from tests.stskit import PolicyHost  # noqa: E402

NETNS_PROBLEM = enter_private_netns()  # before any thread

from judge import spread_text  # noqa: E402
from machine import Watch, tree_cpu  # noqa: E402
from warm import (  # noqa: E402
    BIN,
    MXF_REMOTE,
    Remoted,
    become_subreaper,
    children_of,
    compile_bytecode,
    live_children,
    tree_state,
)

RESULTS = HERE / "results" / "tls_policy.md"
PROBE = os.path.join(BIN, "mxf-remote-probe")
SENDER, RECIPIENT = "alice@example.org", "bob@example.org"
MESSAGE = b"From: alice@example.org\nTo: bob@example.org\nSubject: bench\n\nbody\n"
DOMAIN = "bench.test"
PLAIN, EE, TA, STS = "127.0.56.1", "127.0.56.2", "127.0.56.3", "127.0.56.4"
POLICY_HOST = "127.0.56.80"
STS_ID = "20261201T000000"
STS_POLICY = (
    f"version: STSv1\r\nmode: enforce\r\nmx: mx-sts.{DOMAIN}\r\nmax_age: 86400\r\n"
).encode()
DELIVERY_SECONDS = 60.0
SETTLE_SECONDS = 30.0
WARMUP_RUNS = 2


# -- the world: PKI, zones, lab, exchangers, policy host --------------------------------


def zones(ee_tlsa: str, ta_tlsa: str) -> dict[str, str]:
    """``test.`` and ``bench.test.``, both signed; only the DANE hosts have TLSA."""
    return {
        "test.": "",
        f"{DOMAIN}.": f"""
notlsa          MX    10 mx-notlsa
mx-notlsa       A     {PLAIN}
ee              MX    10 mx-ee
mx-ee           A     {EE}
_25._tcp.mx-ee  TLSA  {ee_tlsa}
ta              MX    10 mx-ta
mx-ta           A     {TA}
_25._tcp.mx-ta  TLSA  {ta_tlsa}
sts             MX    10 mx-sts
mx-sts          A     {STS}
_mta-sts.sts    TXT   "v=STSv1; id={STS_ID};"
mta-sts.sts     A     {POLICY_HOST}
""",
    }


def chain_context(chain: Path, key: Path) -> ssl.SSLContext:
    """A server context presenting ``chain`` (leaf first) with ``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(chain), str(key))
    return context


class Exchanger:
    """aiosmtpd offering STARTTLS on ``address``:25; the TLS version of each message kept.

    Not ``tests.sinkkit.SmtpSink``: its listener comes from ``listen_tcp`` (protocol 0),
    and asyncio sets ``TCP_NODELAY`` only on sockets whose protocol is ``IPPROTO_TCP``, so
    its sessions run with Nagle's algorithm, and each multi-line EHLO reply waits ~40 ms
    for the client's delayed ACK -- twice per STARTTLS delivery, in every scenario alike.
    aiosmtpd's own ``Controller`` binds through ``create_server``, as it does in
    production, and its sessions get ``TCP_NODELAY``.
    """

    def __init__(self, address: str, context: ssl.SSLContext) -> None:
        from aiosmtpd.controller import Controller

        self.arrivals: queue.Queue[str | None] = queue.Queue()
        self.controller = Controller(
            self, hostname=address, port=25, tls_context=context, ready_timeout=30
        )
        self.controller.start()

    async def handle_DATA(self, server: object, session: Any, envelope: object) -> str:
        """aiosmtpd's hook: note the session's TLS version (None in clear) and accept."""
        ssl_object = session.ssl.get("ssl_object") if session.ssl else None
        self.arrivals.put(ssl_object.version() if ssl_object is not None else None)
        return "250 2.0.0 OK queued"

    def arrival(self) -> str | None:
        """The TLS version of the oldest message not yet taken."""
        return self.arrivals.get(timeout=10)

    def close(self) -> None:
        self.controller.stop()


def webpki(directory: Path) -> tuple[object, Path]:
    """The bench's whole WebPKI: one trustme CA (ECDSA), in a hashed ``SSL_CERT_DIR``."""
    import trustme

    authority = trustme.CA()
    directory.mkdir()
    pem = directory / "ca.pem"
    authority.cert_pem.write_to_path(str(pem))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    os.symlink("ca.pem", directory / f"{subject_hash}.0")
    return authority, directory


def trustme_context(authority: object, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert(name).configure_cert(context)  # type: ignore[attr-defined]
    return context


# -- scenarios and homes ---------------------------------------------------------------


@dataclass
class Scenario:
    """One kind of delivery: its domain, exchanger, and control files beyond ``me``."""

    key: str
    label: str
    host: str
    exchanger: str
    dane: bool = False
    cache: str = ""
    """``control/mtasts``: the cache directory's name under the run's directory."""
    fresh: bool = False
    """Empty the cache of policies before every run (the first delivery to the domain)."""


SCENARIOS = [
    Scenario("baseline", "baseline: STARTTLS, no policy", "notlsa", PLAIN),
    Scenario("notlsa", "dane on, no TLSA (signed domain)", "notlsa", PLAIN, dane=True),
    Scenario("ee", "DANE-EE `3 1 1`, self-signed leaf", "ee", EE, dane=True),
    Scenario("ta", "DANE-TA `2 1 1` on the intermediate", "ta", TA, dane=True),
    Scenario("sts", "MTA-STS enforce, policy cached", "sts", STS, cache="sts-cached"),
    Scenario(
        "stsfirst",
        "MTA-STS enforce, first delivery (fetched)",
        "sts",
        STS,
        cache="sts-first",
        fresh=True,
    ),
]


def make_home(path: Path, scenario: Scenario, caches: Path, socket_path: Path | None) -> Path:
    """A qmail home with the scenario's control files (and the server's socket)."""
    control = path / "control"
    control.mkdir(parents=True)
    (control / "me").write_text("bench.example\n")
    if scenario.dane:
        (control / "dane").write_text("on\n")
    if scenario.cache:
        cache = caches / scenario.cache
        cache.mkdir(parents=True, exist_ok=True)
        (control / "mtasts").write_text(f"{cache}\n")
    if socket_path is not None:
        (control / "remotedsocket").write_text(f"{socket_path}\n")
    return path


def empty_policies(cache: Path) -> None:
    """Remove every cached policy (files); the TLS-RPT spool (a directory) stays."""
    for entry in cache.iterdir():
        if entry.is_file() or entry.is_symlink():
            entry.unlink()


# -- measuring -------------------------------------------------------------------------


@dataclass
class Sample:
    """One delivery's figures (seconds); the shared ones filled in at the next reading."""

    wall: float
    cpu: float
    resolver: float = 0.0
    server: float = 0.0
    policy: float = 0.0
    fetches: int = 0


@dataclass
class Meter:
    """The shared processes' counters, read between deliveries (interval to interval)."""

    unbound: int
    server: int | None
    policy: PolicyHost
    last: tuple[float, float, float, int] = (0.0, 0.0, 0.0, 0)
    owner: Sample | None = None

    def read(self) -> tuple[float, float, float, int]:
        deadline = time.monotonic() + SETTLE_SECONDS
        if self.server is not None:  # the engines its TLS forker forked: reaped first
            for forker in children_of(self.server):
                while children_of(forker):
                    if time.monotonic() > deadline:
                        raise RuntimeError("mxf-remoted's TLS engines still running")
                    time.sleep(0.001)
        server = tree_cpu(self.server) if self.server is not None else 0.0
        policy_cpu, hits = self.policy.reading(deadline)
        return tree_cpu(self.unbound), server, policy_cpu, hits

    def tick(self, owner: Sample | None) -> None:
        """Close the interval of the previous owner; the next interval is ``owner``'s."""
        now = self.read()
        if self.owner is not None:
            self.owner.resolver = now[0] - self.last[0]
            self.owner.server = now[1] - self.last[1]
            self.owner.policy = now[2] - self.last[2]
            self.owner.fetches = now[3] - self.last[3]
        self.last, self.owner = now, owner


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_orphans(before: set[int]) -> None:
    """Wait for the delivery's orphaned TLS engines (reparented to us) and reap them."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while left := live_children() - before:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine processes still running: {sorted(left)}")
        time.sleep(0.001)


@dataclass
class PathResult:
    """One path's samples per scenario, and the machine line of its runs."""

    title: str
    warm: bool
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    machine: str = ""


@dataclass
class Runner:
    """What every delivery shares: environment, message, caches, the check, the meter."""

    env: dict[str, str]
    message: Path
    caches: Path
    check: Callable[[Scenario], None]
    meter: Meter | None = None

    def deliver(self, scenario: Scenario, home: Path) -> Sample:
        """One whole delivery; its CPU (engine included) and wall; the arrival checked."""
        assert self.meter is not None
        if scenario.fresh:
            empty_policies(self.caches / scenario.cache)
        sample = Sample(0.0, 0.0)
        before = live_children()
        argv = [MXF_REMOTE, f"{scenario.host}.{DOMAIN}", SENDER, RECIPIENT]
        env = {**self.env, "MXF_QMAIL": str(home)}
        self.meter.tick(sample)
        cpu_before = children_cpu()
        with open(self.message, "rb") as stdin:
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, env=env)
            output, _ = proc.communicate(timeout=DELIVERY_SECONDS)
            sample.wall = time.monotonic() - started
        reap_orphans(before)
        sample.cpu = children_cpu() - cpu_before
        expected = b"r\0K" + scenario.exchanger.encode() + b" accepted message."
        if proc.returncode != 0 or not output.startswith(expected):
            raise RuntimeError(f"{scenario.key}: delivery failed ({proc.returncode}): {output!r}")
        self.check(scenario)
        return sample

    def run(self, result: PathResult, homes: dict[str, Path], runs: int, meter: Meter) -> None:
        """Warm-up, then ``runs`` rounds of every scenario in turn."""
        self.meter = meter
        for _ in range(WARMUP_RUNS):
            for scenario in SCENARIOS:
                self.deliver(scenario, homes[scenario.key])
        meter.tick(None)
        result.samples = {s.key: [] for s in SCENARIOS}
        with Watch() as watch:
            for _ in range(runs):
                for scenario in SCENARIOS:
                    sample = self.deliver(scenario, homes[scenario.key])
                    result.samples[scenario.key].append(sample)
            meter.tick(None)
        result.machine = watch.line(f"the {result.title} runs")


def probe_requirements(home: Path, scenario: Scenario, env: dict[str, str]) -> str:
    """What ``mxf-remote-probe`` says the scenario's exchanger requires (a sanity check)."""
    done = subprocess.run(
        [PROBE, "--json", f"{scenario.host}.{DOMAIN}"],
        env={**env, "MXF_QMAIL": str(home)},
        capture_output=True,
        timeout=DELIVERY_SECONDS,
        check=False,
    )
    try:
        tls = json.loads(done.stdout)["tls"]
        requirement = tls.get("requirement") or {}
        return str(requirement.get("kind", "none")) if isinstance(requirement, dict) else "?"
    except (ValueError, KeyError, TypeError):
        return f"? (probe exit {done.returncode})"


# -- the tables ------------------------------------------------------------------------


def mean_ms(samples: list[Sample], attribute: str) -> float:
    return 1000 * sum(getattr(s, attribute) for s in samples) / len(samples)


def total_ms(samples: list[Sample]) -> float:
    """Median delivery CPU + the mean shares of unbound, the server and the policy host."""
    return 1000 * statistics.median(s.cpu for s in samples) + sum(
        mean_ms(samples, a) for a in ("resolver", "server", "policy")
    )


def table(result: PathResult, runs: int, requirements: dict[str, str]) -> list[str]:
    base = result.samples["baseline"]
    base_total = total_ms(base)
    base_wall = 1000 * statistics.median(s.wall for s in base)
    server = " mxf-remoted ms |" if result.warm else ""
    lines = [
        f"### {result.title}: {runs} runs each, interleaved",
        "",
        "| scenario | probe says | delivery CPU ms | unbound ms |"
        + server
        + " policy host ms | CPU ms, all | vs baseline | wall ms | vs baseline |"
        " policy fetches |",
        "|---|---|---|---|" + ("---|" if result.warm else "") + "---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        samples = result.samples[scenario.key]
        total = total_ms(samples)
        wall = 1000 * statistics.median(s.wall for s in samples)
        cells = [
            scenario.label,
            requirements.get(scenario.key, "?"),
            spread_text([s.cpu for s in samples]),
            f"{mean_ms(samples, 'resolver'):.1f}",
            *([f"{mean_ms(samples, 'server'):.1f}"] if result.warm else []),
            f"{mean_ms(samples, 'policy'):.2f}",
            f"{total:.1f}",
            f"{total - base_total:+.1f} ({total / base_total:.2f}x)",
            spread_text([s.wall for s in samples]),
            f"{wall - base_wall:+.1f} ({wall / base_wall:.2f}x)",
            f"{sum(s.fetches for s in samples)}/{len(samples)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", result.machine, ""]
    return lines


def deltas(result: PathResult) -> dict[str, tuple[float, float]]:
    """Per scenario: (CPU ms, wall ms) beyond the baseline of the same path."""
    base = result.samples["baseline"]
    base_total = total_ms(base)
    base_wall = 1000 * statistics.median(s.wall for s in base)
    return {
        key: (
            total_ms(samples) - base_total,
            1000 * statistics.median(s.wall for s in samples) - base_wall,
        )
        for key, samples in result.samples.items()
    }


def reading(cold: PathResult, warm: PathResult) -> list[str]:
    """A short paragraph of what the figures say, from the figures."""
    c, w = deltas(cold), deltas(warm)
    base_c, base_w = total_ms(cold.samples["baseline"]), total_ms(warm.samples["baseline"])

    def pair(key: str) -> str:
        return (
            f"{c[key][0]:+.1f} ms CPU / {c[key][1]:+.1f} ms wall cold,"
            f" {w[key][0]:+.1f} / {w[key][1]:+.1f} warm"
        )

    return [
        "## Reading",
        "",
        f"Against a baseline of {base_c:.1f} ms CPU per cold delivery and {base_w:.1f} ms"
        f" warm (every process counted): turning DANE on for a signed domain without TLSA"
        f" costs {pair('notlsa')}; DANE-EE {pair('ee')}; DANE-TA {pair('ta')}. MTA-STS with"
        f" the policy cached costs {pair('sts')}; the first delivery, which fetches the"
        f" policy over HTTPS, {pair('stsfirst')}. A difference within the baseline's own"
        " p10..p90 spread (the delivery CPU and wall columns) is noise, not a cost: the"
        " medians of two scenarios run interleaved describe, they do not decide. The"
        " unbound, mxf-remoted and policy-host columns are means from clock ticks (10 ms)"
        " over the runs, except the policy host's (exact thread CPU); the aiosmtpd"
        " exchangers (threads of this process) and knotd are not counted in any column.",
        "",
        "Where the differences come from, as the code stood when this bench was written"
        " (check it against the figures above): with `control/dane` on, every lookup of the"
        " delivery goes through the stdlib `dnssec.DnssecLookup`, so a cold `mxf-remote`"
        " never imports aiodns and pycares -- turning DANE on can make a cold delivery"
        " cheaper, not dearer. DANE-TA is the one costly policy: the TLS engine imports"
        " `cryptography` (~40 ms) to check the chain. On the warm path mxf-remoted's TLS"
        " forker loads `cryptography` after the first DANE-TA job, so later engines inherit"
        " it through fork and pay only the check itself (and what fork copies). MTA-STS"
        " asks one TXT question beside the MX"
        " question and reads one cache file; the first delivery adds the HTTPS fetch, run"
        " beside the race, so it costs CPU (mxf-remote or mxf-remoted, and the policy host)"
        " more than wall.",
        "",
    ]


# -- main ------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int, nargs="?", default=30, help="runs per scenario (30)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the markdown file written")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def unbound_pid() -> int:
    """The lab's unbound: our child whose command is ``unbound``."""
    for pid in live_children():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as comm:
            if comm.read().strip() == "unbound":
                return pid
    raise RuntimeError("the lab's unbound is not a child of this process")


def measure(options: argparse.Namespace, tmp: Path) -> tuple[PathResult, PathResult, dict]:
    """Build the world, check it, run both paths, stop everything."""
    from tests.danekit import DanePki
    from tests.infra.dnsseclab import DnssecLab

    pki = DanePki(tmp / "pki")
    plain, ee, ta = (
        pki.self_signed("plain", f"mx-notlsa.{DOMAIN}"),
        pki.self_signed("ee", f"mx-ee.{DOMAIN}"),
        pki.issued("ta", f"mx-ta.{DOMAIN}"),
    )
    authority, cert_dir = webpki(tmp / "webpki")
    caches = tmp / "caches"
    message = tmp / "message"
    message.write_bytes(MESSAGE)
    sockets = tmp / "sockets"
    sockets.mkdir(mode=0o700)
    cold = PathResult("cold path (one mxf-remote per delivery)", warm=False)
    warm = PathResult("warm path (mxf-remoted + the launcher)", warm=True)
    requirements: dict[str, str] = {}
    lab_zones = zones(ee.tlsa(3, 1, 1), pki.intermediate.tlsa(2, 1, 1))
    stoppable: list[object] = []
    with DnssecLab(lab_zones, signed=("test.", f"{DOMAIN}.")) as lab:
        try:
            sinks = {
                PLAIN: Exchanger(PLAIN, chain_context(plain.chain_path, plain.key_path)),
                EE: Exchanger(EE, chain_context(ee.chain_path, ee.key_path)),
                TA: Exchanger(TA, chain_context(ta.chain_path, ta.key_path)),
                STS: Exchanger(STS, trustme_context(authority, f"mx-sts.{DOMAIN}")),
            }
            stoppable += sinks.values()
            policy = PolicyHost(
                POLICY_HOST,
                trustme_context(authority, f"mta-sts.sts.{DOMAIN}"),
                lambda domain: (200, STS_POLICY),
            )
            stoppable.append(policy)
            server = Remoted(tmp / "remoted", sockets / "remoted.sock")
            stoppable.append(server)
            env = {"PATH": "/usr/bin:/bin", "SSL_CERT_DIR": str(cert_dir), **lab.env}

            def check(scenario: Scenario) -> None:
                if sinks[scenario.exchanger].arrival() is None:
                    raise RuntimeError(f"{scenario.key}: the message arrived in clear")

            runner = Runner(env, message, caches, check)

            cold_homes = {
                s.key: make_home(tmp / "cold" / s.key, s, caches, None) for s in SCENARIOS
            }
            warm_homes = {
                s.key: make_home(tmp / "warm" / s.key, s, caches, server.socket_path)
                for s in SCENARIOS
            }
            for scenario in SCENARIOS:
                requirements[scenario.key] = probe_requirements(
                    cold_homes[scenario.key], scenario, env
                )
            print(f"bench: the probe says {requirements}", file=sys.stderr, flush=True)
            unbound = unbound_pid()
            for result, homes in ((cold, cold_homes), (warm, warm_homes)):
                meter = Meter(unbound, server.pid if result.warm else None, policy)
                runner.run(result, homes, options.runs, meter)
                print(f"bench: {result.title} done", file=sys.stderr, flush=True)
        finally:
            status, served = None, "?"
            for thing in reversed(stoppable):
                if isinstance(thing, Remoted):
                    status = thing.stop()
                    served = served_by(thing.log)
                else:
                    thing.close()  # type: ignore[attr-defined]
    return cold, warm, {"remoted": status, "served": served, "requirements": requirements}


def served_by(log: Path) -> str:
    """How many deliveries mxf-remoted says it served (its last words), and its errors."""
    text = log.read_text(errors="replace")
    words = re.findall(r"stopped after (\d+) deliveries", text)
    errors = text.count("internal error")
    return (words[-1] if words else "?") + (f" ({errors} internal errors)" if errors else "")


def main() -> int:
    """Measure, print, and write ``results/tls_policy.md``."""
    options = parse(sys.argv[1:])
    if NETNS_PROBLEM is not None:
        print(f"bench: no private network namespace: {NETNS_PROBLEM}", file=sys.stderr)
        return 1
    from tests.infra.dnsseclab import missing_tools

    if (problem := missing_tools()) is not None:
        print(f"bench: no DNSSEC lab: {problem}", file=sys.stderr)
        return 1
    began = time.monotonic()
    compiled = compile_bytecode()
    print(f"bench: {compiled}", file=sys.stderr, flush=True)
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="mxf-bench-policy-") as directory:
        try:
            cold, warm, extra = measure(options, Path(directory))
        finally:
            reap_orphans(set())  # mxf-remoted's TLS forker, ours once the server is gone
    requirements = extra["requirements"]
    text = [
        f"# bench/tls_policy.py, {datetime.date.today()}, {os.cpu_count()} CPUs,"
        f" CPython {platform.python_version()}, {ssl.OPENSSL_VERSION}",
        "",
        "What DANE (RFC 7672) and MTA-STS (RFC 8461) cost per delivery, next to the same"
        " delivery without them: whole deliveries of a small message to aiosmtpd exchangers"
        " offering STARTTLS, every lookup through the same validating unbound of a DNSSEC lab"
        " (knotd signing `test.` and `bench.test.`), in a private network namespace.",
        "",
        f"- {compiled}.",
        f"- Programs: `{BIN}/mxf-remote`, `mxf-remoted` and the clients beside them;"
        f" {tree_state()}.",
        f"- Options: {' '.join(sys.argv[1:]) or '(the defaults)'}.",
        "- Columns: *delivery CPU* = every process the delivery ran, TLS engine included"
        " (RUSAGE_CHILDREN, subreaper), median (p10..p90); *unbound*, *mxf-remoted* = their"
        " `/proc/PID/stat` ticks between deliveries, mean per delivery; *policy host* = the"
        " HTTPS policy server's thread CPU (exact), mean; *CPU ms, all* = the delivery"
        " median + those means; *wall* = start of mxf-remote to its exit, median (p10..p90);"
        " *policy fetches* = HTTPS requests the policy host answered / deliveries;"
        " *probe says* = the TLS requirement `mxf-remote-probe` reports for the exchanger.",
        "",
    ]
    text += table(cold, options.runs, requirements)
    text += table(warm, options.runs, requirements)
    text += reading(cold, warm)
    elapsed = time.monotonic() - began
    warm_count = (WARMUP_RUNS + options.runs) * len(SCENARIOS)
    text.append(
        f"The whole run took {elapsed:.0f} s; mxf-remoted served {extra['served']} of the"
        f" {warm_count} warm-path deliveries (warm-ups included; none fell back to the"
        f" in-process path when the two agree) and stopped on SIGTERM with exit status"
        f" {extra['remoted']}."
    )
    output = "\n".join(text) + "\n"
    print(output)
    if not options.no_write:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(output)
        print(f"bench: wrote {options.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
