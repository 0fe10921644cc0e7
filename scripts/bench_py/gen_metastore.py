"""Generate an Airflow 3.x metastore (SQLite, PostgreSQL and/or MariaDB) with N items, as Airflow writes rows.

The mix (deterministic for a given seed):
- 60 % variables, 40 % connections;
- variable values of 20 B to 4 KB, log-uniformly distributed (tokens, JSON configs, multi-line
  text with non-ASCII characters);
- connections of several types with host/schema/login/port, passwords with URI-hostile characters,
  extras as JSON objects (some nested), some without password or extra, some with a description;
- 70 % of rows encrypted with the NEW Fernet key, 20 % with the OLD one (fernet_key = "NEW,OLD",
  as after a key rotation was started), 10 % plaintext (is_encrypted = false, as rows written
  before a key was set).

Prints counts only, never a value. The Fernet keys go to --keys-file (mode 0600).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
# Airflow 3.3's PostgreSQL DDL, as the integration tests use it.
POSTGRES_DDL = REPO / "tests" / "support" / "airflow_schema" / "postgres_3x.sql"
MYSQL_DDL = REPO / "tests" / "support" / "airflow_schema" / "mysql_3x.sql"
# Airflow 3.3.2's SQLite DDL for the two tables (from `airflow db migrate`; same as src/demo.rs).
SQLITE_DDL = [
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
    "INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7')",
    "CREATE TABLE team (name VARCHAR(50) NOT NULL, CONSTRAINT team_pkey PRIMARY KEY (name))",
    """CREATE TABLE connection (id INTEGER NOT NULL, conn_id VARCHAR(250) NOT NULL, conn_type VARCHAR(500) NOT NULL,
        description VARCHAR(5000), host VARCHAR(500), schema VARCHAR(500), login TEXT, port INTEGER,
        team_name VARCHAR(50), password TEXT, extra TEXT, is_encrypted BOOLEAN NOT NULL,
        is_extra_encrypted BOOLEAN NOT NULL, CONSTRAINT connection_pkey PRIMARY KEY (id),
        CONSTRAINT connection_conn_id_uq UNIQUE (conn_id),
        CONSTRAINT connection_team_name_fkey FOREIGN KEY(team_name) REFERENCES team (name) ON DELETE SET NULL)""",
    """CREATE TABLE variable (id INTEGER NOT NULL, "key" VARCHAR(250) NOT NULL, val TEXT NOT NULL, description TEXT,
        is_encrypted BOOLEAN NOT NULL, team_name VARCHAR(50), CONSTRAINT variable_pkey PRIMARY KEY (id),
        CONSTRAINT variable_key_uq UNIQUE ("key"),
        CONSTRAINT variable_team_name_fkey FOREIGN KEY(team_name) REFERENCES team (name) ON DELETE SET NULL)""",
]

VARIABLE_SHARE = 0.6
NEW_KEY_SHARE, OLD_KEY_SHARE = 0.7, 0.2  # the rest is plaintext
CONN_TYPES = [
    ("postgres", 5432),
    ("mysql", 3306),
    ("http", None),
    ("aws", None),
    ("snowflake", None),
    ("sftp", 22),
    ("redis", 6379),
]
WORDS = "alpha beta gamma delta etl billing report warehouse api sync export import daily hourly prod stage".split()


@dataclass
class Rows:
    """Encrypted rows, ready to insert. Tuples follow the INSERT column lists below."""

    variables: list[tuple]
    connections: list[tuple]
    encrypted_new: int = 0
    encrypted_old: int = 0
    plaintext: int = 0


def new_keys() -> tuple[str, str]:
    """(NEW, OLD) Fernet keys; Airflow's fernet_key setting is "NEW,OLD"."""
    return Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _variable_value(rng: random.Random) -> str:
    size = int(round(20 * (4096 / 20) ** rng.random()))  # log-uniform 20 B .. 4 KB
    body = base64.b64encode(rng.randbytes(size)).decode()[:size]
    shape = rng.random()
    if shape < 0.5:
        return body  # a token / opaque string
    if shape < 0.8:
        # a JSON config (serialize_json=True), padded to about `size`
        cfg = {"enabled": rng.random() < 0.5, "batch_size": rng.randint(1, 5000), "owner": rng.choice(WORDS), "blob": body}
        return json.dumps(cfg, indent=2)[: max(size, 40)] if size > 200 else json.dumps(cfg)
    # multi-line text with non-ASCII characters
    text = "\n".join(body[i : i + 60] for i in range(0, len(body), 60))
    return "grüße ✓ " + text


def _password(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@:/#?%&= +!$"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 40)))


def _extra(rng: random.Random) -> str | None:
    if rng.random() < 0.2:
        return None
    extra: dict = {}
    for i in range(rng.randint(1, 6)):
        k = f"{rng.choice(WORDS)}_{i}"
        r = rng.random()
        if r < 0.5:
            extra[k] = base64.b64encode(rng.randbytes(rng.randint(4, 60))).decode()
        elif r < 0.7:
            extra[k] = rng.randint(0, 10_000)
        elif r < 0.85:
            extra[k] = rng.random() < 0.5
        else:
            extra[k] = {"nested": rng.choice(WORDS), "list": [1, 2, rng.randint(3, 9)]}
    return json.dumps(extra)


def generate(n: int, new_key: str, old_key: str, seed: int = 10) -> Rows:
    """N rows (variables and connections), encrypted as Airflow would have left them."""
    rng = random.Random(seed * 1_000_003 + n)
    fernets = {"new": Fernet(new_key.encode()), "old": Fernet(old_key.encode())}
    rows = Rows([], [])

    def which_key() -> str | None:
        r = rng.random()
        if r < NEW_KEY_SHARE:
            rows.encrypted_new += 1
            return "new"
        if r < NEW_KEY_SHARE + OLD_KEY_SHARE:
            rows.encrypted_old += 1
            return "old"
        rows.plaintext += 1
        return None

    def enc(key: str | None, value: str | None) -> str | None:
        if value is None or key is None:
            return value
        return fernets[key].encrypt(value.encode()).decode()

    n_vars = int(round(n * VARIABLE_SHARE))
    for i in range(n_vars):
        key = which_key()
        desc = f"{rng.choice(WORDS)} setting" if rng.random() < 0.3 else None
        rows.variables.append((i + 1, f"var_{i:06d}_{rng.choice(WORDS)}", enc(key, _variable_value(rng)), desc, key is not None))
    for i in range(n - n_vars):
        key = which_key()
        conn_type, port = rng.choice(CONN_TYPES)
        password = _password(rng) if rng.random() < 0.9 else None
        extra = _extra(rng)
        rows.connections.append(
            (
                i + 1,
                f"conn_{i:06d}_{conn_type}",
                conn_type,
                f"{rng.choice(WORDS)} connection" if rng.random() < 0.3 else None,
                f"{rng.choice(WORDS)}-{i}.internal.example.com" if conn_type != "aws" else None,
                rng.choice(WORDS) if port else None,
                f"svc_{rng.choice(WORDS)}" if conn_type != "aws" else None,
                port,
                enc(key, password),
                enc(key, extra),
                key is not None and password is not None,
                key is not None and extra is not None,
            )
        )
    return rows


VAR_INSERT = 'INSERT INTO variable (id, "key", val, description, is_encrypted) VALUES ({})'
CONN_INSERT = (
    'INSERT INTO connection (id, conn_id, conn_type, description, host, "schema", login, port, password, extra, '
    "is_encrypted, is_extra_encrypted) VALUES ({})"
)


def write_sqlite(path: Path, rows: Rows) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    with db:
        for stmt in SQLITE_DDL:
            db.execute(stmt)
        db.executemany(VAR_INSERT.format(",".join("?" * 5)), rows.variables)
        db.executemany(CONN_INSERT.format(",".join("?" * 12)), rows.connections)
    db.close()


def write_postgres(dsn: str, rows: Rows) -> None:
    import psycopg2
    from psycopg2.extras import execute_values

    db = psycopg2.connect(dsn)
    with db, db.cursor() as cur:
        cur.execute(POSTGRES_DDL.read_text())
        execute_values(cur, VAR_INSERT.replace("({})", "%s"), rows.variables, page_size=1000)
        execute_values(cur, CONN_INSERT.replace("({})", "%s"), rows.connections, page_size=1000)
    db.close()


def mysql_connect(url: str, **kw):
    """A PyMySQL connection for `mysql://user[:pass]@host[:port]/db`, double quotes as identifiers
    (ANSI_QUOTES) so that the INSERTs above and the baseline's SELECTs serve every dialect."""
    from urllib.parse import unquote, urlsplit

    import pymysql

    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname, port=u.port or 3306, user=unquote(u.username or "root"), password=unquote(u.password or ""),
        database=u.path.lstrip("/") or None, charset="utf8mb4", init_command="SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')", **kw,
    )


def write_mysql(url: str, rows: Rows) -> None:
    db = mysql_connect(url)
    with db.cursor() as cur:
        for stmt in MYSQL_DDL.read_text().split(";"):
            body = "\n".join(line for line in stmt.splitlines() if not line.strip().startswith("--")).strip()
            if body:
                cur.execute(body)
        for start in range(0, len(rows.variables), 1000):
            cur.executemany(VAR_INSERT.format(",".join(["%s"] * 5)), rows.variables[start : start + 1000])
        for start in range(0, len(rows.connections), 1000):
            cur.executemany(CONN_INSERT.format(",".join(["%s"] * 12)), rows.connections[start : start + 1000])
    db.commit()
    db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--sqlite", type=Path, help="SQLite file to (re)create")
    ap.add_argument("--postgres", help="libpq DSN of an EMPTY database to fill")
    ap.add_argument("--mysql", help="mysql://user@host:port/db URL of an EMPTY MariaDB/MySQL database to fill")
    ap.add_argument("--keys-file", type=Path, required=True, help="read the keys from here, or create it (0600)")
    ap.add_argument("--seed", type=int, default=10)
    args = ap.parse_args()
    if args.keys_file.exists():
        new, old = json.loads(args.keys_file.read_text())["fernet_key"].split(",")
    else:
        new, old = new_keys()
        fd = os.open(args.keys_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"fernet_key": f"{new},{old}"}, f)
    rows = generate(args.items, new, old, args.seed)
    if args.sqlite:
        write_sqlite(args.sqlite, rows)
    if args.postgres:
        write_postgres(args.postgres, rows)
    if args.mysql:
        write_mysql(args.mysql, rows)
    summary = {
        "items": args.items,
        "variables": len(rows.variables),
        "connections": len(rows.connections),
        "rows_new_key": rows.encrypted_new,
        "rows_old_key": rows.encrypted_old,
        "rows_plaintext": rows.plaintext,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
