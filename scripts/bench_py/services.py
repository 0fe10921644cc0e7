"""The servers one benchmark run needs, each on a free 127.0.0.1 port, all stopped on exit:
`bao server -dev` (Vault), `moto_server` (AWS), one counting proxy in front of each, and a
throwaway PostgreSQL database per metastore size (dropped on exit).

Readiness is polled (HTTP answers), never assumed after a sleep.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from common import LOOPBACK, free_port, http_json, poll

HERE = Path(__file__).resolve().parent
VAULT_TOKEN = "bench-root-token"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", f"host={LOOPBACK} port=5432 user=postgres dbname=postgres")
MYSQL_ADMIN_URL = os.environ.get("BENCH_MYSQL_URL", f"mysql://root@{LOOPBACK}:3306/")


class Services:
    """Start with `start()`; everything started is stopped by `stop()` (also at exit/signals)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.databases: list[str] = []
        self.mysql_databases: list[str] = []
        self.vault_url = self.vault_direct = self.aws_url = self.aws_direct = ""
        self.server_pids: dict[str, int] = {}
        self.proxy_pids: dict[str, int] = {}  # by target, as server_pids
        atexit.register(self.stop)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.stop()
        sys.exit(128 + signum)

    def _spawn(self, argv: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / log_name, "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def _proxy(self, upstream: str, name: str) -> str:
        port = free_port()
        proc = self._spawn([sys.executable, str(HERE / "proxy.py"), "--listen-port", str(port), "--upstream", upstream], f"{name}.log")
        url = f"http://{LOOPBACK}:{port}"
        self.proxy_pids[{"proxy-vault": "vault", "proxy-aws": "aws_secrets_manager"}.get(name, name)] = proc.pid
        poll(f"{name} proxy", lambda: http_json("GET", f"{url}/__bench/counts")[0] == 200, proc=proc)
        return url

    def start(self) -> None:
        # Vault (OpenBao) dev server: in-memory storage, KV v2 mounted at secret/.
        port = free_port(pair=True)
        home = tempfile.mkdtemp(prefix="bao-home-", dir=self.workdir)
        env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "BAO_ADDR")} | {"HOME": home}
        bao = self._spawn(
            ["bao", "server", "-dev", f"-dev-root-token-id={VAULT_TOKEN}", f"-dev-listen-address={LOOPBACK}:{port}", "-dev-no-store-token"],
            "bao.log",
            env,
        )
        self.vault_direct = f"http://{LOOPBACK}:{port}"
        self.server_pids["vault"] = bao.pid
        poll("bao", lambda: http_json("GET", f"{self.vault_direct}/v1/sys/health")[0] == 200, proc=bao)
        # moto_server (AWS emulator).
        port = free_port()
        moto = self._spawn(["moto_server", "-H", LOOPBACK, "-p", str(port)], "moto.log")
        self.aws_direct = f"http://{LOOPBACK}:{port}"
        self.server_pids["aws_secrets_manager"] = moto.pid
        poll("moto_server", lambda: http_json("GET", f"{self.aws_direct}/moto-api/")[0] == 200, proc=moto)
        self.vault_url = self._proxy(self.vault_direct, "proxy-vault")
        self.aws_url = self._proxy(self.aws_direct, "proxy-aws")

    # ---- target resets and counters --------------------------------------------------------

    def reset_vault(self) -> None:
        """A fresh, empty KV v2 mount at secret/."""
        headers = {"X-Vault-Token": VAULT_TOKEN}
        http_json("DELETE", f"{self.vault_direct}/v1/sys/mounts/secret", headers=headers)
        status, _ = http_json("POST", f"{self.vault_direct}/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, headers)
        assert status in (200, 204), f"mounting secret/: HTTP {status}"
        # A new KV v2 mount upgrades in the background: wait until it answers.
        poll("kv v2 mount", lambda: http_json("GET", f"{self.vault_direct}/v1/secret/config", headers=headers)[0] == 200)

    def reset_aws(self) -> None:
        status, _ = http_json("POST", f"{self.aws_direct}/moto-api/reset")
        assert status == 200, f"moto reset: HTTP {status}"

    def server_cpu(self, target: str) -> float | None:
        """CPU seconds (user + system) the emulator behind `target` has used so far."""
        return self._cpu(self.server_pids.get(target))

    def proxy_cpu(self, target: str) -> float | None:
        """CPU seconds the counting proxy in front of `target` has used so far (it is single-threaded:
        a bound of its own when a client keeps many requests in flight)."""
        return self._cpu(self.proxy_pids.get(target))

    @staticmethod
    def _cpu(pid: int | None) -> float | None:
        if pid is None:
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def counts(proxy_url: str, reset: bool = False) -> dict:
        return http_json("POST" if reset else "GET", f"{proxy_url}/__bench/{'reset' if reset else 'counts'}")[1]

    @staticmethod
    def throttle(proxy_url: str, rate: float) -> None:
        http_json("POST", f"{proxy_url}/__bench/throttle?rate={rate}")

    @staticmethod
    def latency(proxy_url: str, ms: float) -> None:
        http_json("POST", f"{proxy_url}/__bench/latency?ms={ms}")

    # ---- PostgreSQL ------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """A fresh database; returns its libpq DSN. Dropped by stop()."""
        import psycopg2

        admin = psycopg2.connect(PG_ADMIN_DSN)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        self.databases.append(name)
        return PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")

    # ---- MariaDB / MySQL -------------------------------------------------------------------

    def create_mysql_database(self, name: str) -> str | None:
        """A fresh MariaDB database; returns its mysql:// URL, or None when no server answers at
        BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/). Dropped by stop()."""
        from gen_metastore import mysql_connect

        try:
            admin = mysql_connect(MYSQL_ADMIN_URL, connect_timeout=5)
        except Exception as e:  # noqa: BLE001 - the MariaDB rows are optional
            print(f"note: no MariaDB at {MYSQL_ADMIN_URL.split('@')[-1]} ({type(e).__name__}): MariaDB rows skipped", file=sys.stderr)
            return None
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        admin.close()
        self.mysql_databases.append(name)
        return MYSQL_ADMIN_URL.rstrip("/") + "/" + name

    def drop_mysql_databases(self) -> None:
        if not self.mysql_databases:
            return
        try:
            from gen_metastore import mysql_connect

            admin = mysql_connect(MYSQL_ADMIN_URL, connect_timeout=5)
            with admin.cursor() as cur:
                for name in self.mysql_databases:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            admin.close()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"warning: could not drop the MariaDB benchmark databases {self.mysql_databases}: {type(e).__name__}", file=sys.stderr)
        self.mysql_databases.clear()

    def stop(self) -> None:
        self.drop_mysql_databases()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.databases:
            try:
                import psycopg2

                admin = psycopg2.connect(PG_ADMIN_DSN)
                admin.autocommit = True
                with admin.cursor() as cur:
                    for name in self.databases:
                        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
            except Exception as e:  # noqa: BLE001 - best effort at exit
                print(f"warning: could not drop the benchmark databases {self.databases}: {type(e).__name__}", file=sys.stderr)
            self.databases.clear()
