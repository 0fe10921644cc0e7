"""Shared helpers for the end-to-end benchmark (issue #10): free ports, readiness polling,
measured child processes (wall time + peak RSS), and small JSON/HTTP utilities.

Nothing here ever prints a secret value.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (with `pair`, port + 1 is free too: bao's cluster listener)."""
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        try:
            with socket.socket() as s2:
                s2.bind((LOOPBACK, port + 1))
            return port
        except OSError:
            continue


def poll(what: str, probe, timeout: float = 60.0, interval: float = 0.05, proc: subprocess.Popen | None = None):
    """Call `probe()` until it returns a truthy value (readiness polling, not a synchronisation
    sleep). Fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode} before it was ready")
        try:
            value = probe()
            if value:
                return value
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def http_json(method: str, url: str, body=None, headers: dict | None = None, timeout: float = 30.0):
    """One HTTP request; returns (status, parsed JSON or None). Never raises on HTTP errors."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


@dataclass
class Measured:
    """One measured child process."""

    argv0: str
    exit_code: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str


def run_measured(argv: list[str], env: dict | None = None, cwd: str | None = None, timeout: float | None = None) -> Measured:
    """Run `argv` to completion; wall-clock seconds, the child's own peak RSS (wait4's
    ru_maxrss, in KiB on Linux) and CPU time (user + system). Output is captured (the tool and the baseline print no values)."""
    start = time.monotonic()
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() would reap the child through waitpid; read the pipes ourselves and reap
    # with wait4 to get this child's own rusage.
    out: dict[str, bytes] = {}

    def drain(name, stream):
        out[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    # Reap with a blocking wait4 (never proc.poll(), which would reap it first and lose the
    # rusage); a timer kills a child that overruns `timeout`.
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    if timer:
        timer.cancel()
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    return Measured(
        argv0=os.path.basename(argv[0]),
        exit_code=proc.returncode,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024.0,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=out.get("out", b"").decode(errors="replace"),
        stderr=out.get("err", b"").decode(errors="replace"),
    )


def last_json_line(text: str) -> dict:
    """The last line of `text` that parses as a JSON object (the baseline's summary)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}
