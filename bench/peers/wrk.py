"""wrk (https://github.com/wg/wrk) as the load generator: the Lua script that makes it POST one body, and
the parse of its ``--latency`` report.

wrk is C with one event loop per thread: one thread drives 32 keep-alive connections for a few percent
of a core, so the servers, not the clients, are what is measured on a small machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_TIME = re.compile(r"^\s*([0-9.]+)(us|ms|s|m|h)\s*$")


class WrkError(RuntimeError):
    """wrk failed, or the server answered something else than 2xx, or a socket failed."""


def lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal (``[==[...]==]``) whose level does not occur in it."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A newline right after the opening bracket is dropped by Lua: begin with one so a body that starts
    # with a newline keeps it.
    return f"[{eq}[\n{text}]{eq}]"


def lua_quoted(text: str) -> str:
    """``text`` as a double-quoted Lua string (for short values: a long bracket right after ``[`` would
    read as a call, ``t[[[...]]]``)."""
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c):03d}" for c in text)
    return f'"{escaped}"'


def script(body: str, *, content_type: str = "application/json", method: str = "POST") -> str:
    """A wrk Lua script that sends ``body`` on every request."""
    return (
        f"wrk.method = {lua_quoted(method)}\n"
        f"wrk.body = {lua_string(body)}\n"
        f"wrk.headers[{lua_quoted('Content-Type')}] = {lua_quoted(content_type)}\n"
    )


@dataclass(frozen=True)
class WrkResult:
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ms(text: str) -> float:
    match = _TIME.match(text)
    if match is None:
        raise WrkError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


def parse(output: str, *, connections: int) -> WrkResult:
    """The figures of a ``wrk --latency`` report; :class:`WrkError` on any failed request.

    wrk prints ``Non-2xx or 3xx responses: N`` when a status was not 2xx/3xx and ``Socket errors: connect
    A, read B, write C, timeout D`` when a socket failed; it prints neither line when all went well.
    """
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if non_2xx and int(non_2xx.group(1)):
        raise WrkError(f"{non_2xx.group(1)} responses were not 2xx/3xx:\n{output}")
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets and any(int(n) for n in sockets.groups()):
        raise WrkError(f"socket errors ({sockets.group(0)}):\n{output}")
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", output)
    total = re.search(r"(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)),", output)
    if rps is None or total is None:
        raise WrkError(f"no Requests/sec in wrk's output:\n{output}")
    distribution = dict(re.findall(r"^\s*(50|75|90|99)%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", output, re.M))
    if not {"50", "90", "99"} <= distribution.keys():
        raise WrkError(f"no latency distribution in wrk's output (run it with --latency):\n{output}")
    latency = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    requests = int(total.group(1))
    if requests == 0:
        raise WrkError(f"wrk completed no request:\n{output}")
    return WrkResult(
        connections=connections,
        seconds=round(_ms(total.group(2)) / 1e3, 3),
        requests=requests,
        requests_per_s=float(rps.group(1)),
        p50_ms=round(_ms(distribution["50"]), 3),
        p90_ms=round(_ms(distribution["90"]), 3),
        p99_ms=round(_ms(distribution["99"]), 3),
        max_ms=round(_ms(latency.group(3)), 3) if latency else 0.0,
    )


def binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    return found


def run(url: str, lua: Path, *, connections: int, seconds: float, timeout_s: float = 10.0) -> WrkResult:
    """``wrk -t1 -c<connections> -d<seconds>s --latency -s <lua> <url>``, parsed."""
    command = [
        binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:g}s",
        "--latency", "-s", str(lua), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()}\n{done.stdout}")
    return parse(done.stdout, connections=connections)
