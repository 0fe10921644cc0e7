"""A counting HTTP/1.1 reverse proxy for the benchmark, put in front of Vault or moto_server.

Every request is forwarded byte for byte (keep-alive, Content-Length and chunked bodies) over
one upstream connection per client connection, and counted by operation:
- AWS JSON APIs: the `X-Amz-Target` action (e.g. `CreateSecret`);
- anything else (Vault): `METHOD` + the path with the item id replaced by `*`
  (e.g. `GET /v1/secret/data/variables/*`).
An operation is a write when it is an AWS write action (see AWS_WRITES) or a Vault
POST/PUT/PATCH/DELETE; everything else is a read.

Optional throttling emulates an AWS per-account quota: with a rate set, AWS write actions beyond
a token bucket of `rate` per second (burst `rate`) are answered by the proxy itself with
HTTP 400 `{"__type":"ThrottlingException","message":"Rate exceeded"}`, as Secrets Manager does.

Optional latency emulates a network between the client and a remote backend: with a round trip
of R ms set, every forwarded request is held R ms before it goes upstream (concurrent requests
wait concurrently, as on a real network).

Control endpoints (answered by the proxy, never forwarded, never counted):
  GET  /__bench/counts            -> {"ops": {op: n}, "reads": n, "writes": n, "throttled": n, "total": n}
  POST /__bench/reset             -> zero the counters
  POST /__bench/throttle?rate=R   -> throttle AWS writes to R/s (0 = off)
  POST /__bench/latency?ms=R      -> add a round trip of R ms to every forwarded request (0 = off)

Bodies are never parsed or logged: the proxy sees secret values and keeps none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

# AWS Secrets Manager / SSM actions that change state (what the write quotas count).
AWS_WRITES = {
    "CreateSecret",
    "PutSecretValue",
    "UpdateSecret",
    "TagResource",
    "UntagResource",
    "DeleteSecret",
    "RestoreSecret",
    "UpdateSecretVersionStage",
    "PutParameter",
    "DeleteParameter",
    "DeleteParameters",
    "AddTagsToResource",
}
VAULT_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# /v1/<mount>/<data|metadata>/<variables|connections>/<id...>: keep 4 segments, star the rest.
VAULT_ITEM = re.compile(r"^(/v1/[^/]+/(?:data|metadata)/(?:variables|connections))/.+$")
THROTTLE_BODY = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'


class Stats:
    def __init__(self) -> None:
        self.reset()
        self.rate = 0.0
        self.latency = 0.0  # seconds added to every forwarded request
        self.tokens = 0.0
        self.refilled = time.monotonic()

    def reset(self) -> None:
        self.ops: Counter = Counter()
        self.reads = self.writes = self.throttled = 0

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate  # a full bucket: one second of burst
        self.refilled = time.monotonic()

    def admit(self) -> bool:
        """Token bucket for AWS writes; True when the write may go through."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def snapshot(self) -> dict:
        return {
            "ops": dict(self.ops),
            "reads": self.reads,
            "writes": self.writes,
            "throttled": self.throttled,
            "total": self.reads + self.writes,
        }


STATS = Stats()


def classify(method: str, target: str, headers: dict[str, str]) -> tuple[str, bool, bool]:
    """(operation label, is_write, is_aws_write) of one request."""
    amz = headers.get("x-amz-target")
    if amz:
        action = amz.rsplit(".", 1)[-1]
        return action, action in AWS_WRITES, action in AWS_WRITES
    path = urlsplit(target).path
    m = VAULT_ITEM.match(path)
    label_path = f"{m.group(1)}/*" if m else path
    if method == "GET" and "list=true" in target:
        method = "LIST"
    return f"{method} {label_path}", method in VAULT_WRITE_METHODS, False


async def read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return b""


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str], until_eof: bool) -> bytes:
    """The raw body bytes (chunk framing kept, for verbatim forwarding)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if until_eof:
        return await reader.read()
    return b""


def respond(writer: asyncio.StreamWriter, status: str, body: bytes, content_type: str) -> None:
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


def control(method: str, target: str) -> bytes:
    url = urlsplit(target)
    if url.path == "/__bench/reset" and method == "POST":
        STATS.reset()
    elif url.path == "/__bench/throttle" and method == "POST":
        STATS.set_rate(float(parse_qs(url.query).get("rate", ["0"])[0]))
    elif url.path == "/__bench/latency" and method == "POST":
        STATS.latency = float(parse_qs(url.query).get("ms", ["0"])[0]) / 1000.0
    return json.dumps(STATS.snapshot()).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int]) -> None:
    up_r = up_w = None
    try:
        while True:
            head = await read_head(reader)
            if not head:
                return
            request_line, headers = parse_head(head)
            method, target, _ = request_line.split(" ", 2)
            body = await read_body(reader, headers, until_eof=False)
            if target.startswith("/__bench/"):
                respond(writer, "200 OK", control(method, target), "application/json")
                await writer.drain()
                continue
            op, is_write, aws_write = classify(method, target, headers)
            if aws_write and not STATS.admit():
                STATS.throttled += 1
                respond(writer, "400 Bad Request", THROTTLE_BODY, "application/x-amz-json-1.1")
                await writer.drain()
                continue
            STATS.ops[op] += 1
            if is_write:
                STATS.writes += 1
            else:
                STATS.reads += 1
            if STATS.latency > 0:
                await asyncio.sleep(STATS.latency)
            if up_w is None:
                up_r, up_w = await asyncio.open_connection(*upstream)
            up_w.write(head + body)
            await up_w.drain()
            resp_head = await read_head(up_r)
            if not resp_head:
                return
            status_line, resp_headers = parse_head(resp_head)
            status = int(status_line.split(" ", 2)[1])
            no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            close = resp_headers.get("connection", "").lower() == "close"
            resp_body = b"" if no_body else await read_body(up_r, resp_headers, until_eof=True)
            writer.write(resp_head + resp_body)
            await writer.drain()
            framed = "content-length" in resp_headers or "chunked" in resp_headers.get("transfer-encoding", "")
            if close or (not no_body and not framed) or headers.get("connection", "").lower() == "close":
                return
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return
    finally:
        for w in (writer, up_w):
            if w is not None:
                w.close()


async def serve(listen_port: int, upstream: tuple[str, int]) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream), "127.0.0.1", listen_port, limit=1 << 20, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    args = ap.parse_args()
    up = urlsplit(args.upstream)
    try:
        import uvloop  # optional: a faster event loop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.listen_port, (up.hostname, up.port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
