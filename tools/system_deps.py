"""Install the Debian packages the tests and the demo use, where they are missing.

Run by tox before the tests and the demo, so that a fresh machine needs nothing done by
hand: knot (the DNS server of the test fixtures), nftables (silent hosts), iproute2
(the private network namespace), mandoc (man page lint), postfix (a real MTA peer),
unbound (the validating resolver of the DANE tests; knot signs their zones).
Only missing commands cause an install; without root or apt, it says what is missing
and the tests that need it skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

NEEDED = {  # command -> Debian package
    "knotd": "knot",
    "nft": "nftables",
    "ip": "iproute2",
    "mandoc": "mandoc",
    "postconf": "postfix",
    "unbound": "unbound",  # the validating resolver of the DNSSEC (DANE) tests
}
SBIN = ("/usr/sbin", "/sbin")


def missing_packages() -> list[str]:
    """The packages whose command is not installed."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return sorted({pkg for cmd, pkg in NEEDED.items() if shutil.which(cmd, path=search) is None})


def main() -> int:
    """Install what is missing; never fail the run (tests skip with reasons instead)."""
    missing = missing_packages()
    if not missing:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"system_deps: missing {' '.join(missing)} (need root and apt-get); "
            "tests that use them will be skipped",
            file=sys.stderr,
        )
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"system_deps: installing {' '.join(missing)}", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    # postfix must not be started as a system service: the tests run their own.
    policy = "/usr/sbin/policy-rc.d"
    wrote_policy = not os.path.exists(policy)
    if wrote_policy:
        with open(policy, "w") as script:
            script.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
        )
    finally:
        if wrote_policy:
            os.unlink(policy)
    still = missing_packages()
    if still:
        print(f"system_deps: could not install {' '.join(still)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
