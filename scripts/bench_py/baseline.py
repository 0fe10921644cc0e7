"""The Python baseline: the migration the way users script it today.

    read the metastore (one SELECT per table) -> decrypt with cryptography's MultiFernet
    -> for each item, one call to the target (sequentially)

- `plan`:  for each item, read it from the target (hvac `read_secret_version`, boto3
  `get_secret_value`, or the local JSON files) and compare it with the source, counting
  create / update / unchanged. Nothing is written.
- `apply`: for each item, write it (hvac `create_or_update_secret`; boto3 `create_secret`, then
  `put_secret_value` if it already exists; or the local JSON files), blindly, as a typical
  migration script does: no prior read, no read-back, no snapshot.

Values are written in the formats Airflow's backends read, as airflow-secrets-sync writes them:
- Vault KV v2 (mount `secret`): `variables/KEY` = {"value": ...}; `connections/ID` = the field dict
  (conn_type, description, host, login, password, schema, port as int, extra as an object);
- AWS Secrets Manager: `airflow/variables/KEY` = the raw string; `airflow/connections/ID` = the
  connection JSON without `description` (Airflow drops it when reading);
- local files: variables.json {key: value}; connections.json {conn_id: field dict}.

Prints one JSON summary line (counts and timings only, never a value).
Environment: AIRFLOW__CORE__FERNET_KEY ("NEW,OLD"); VAULT_TOKEN for Vault.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, MultiFernet

VAULT_MOUNT = "secret"
AWS_PREFIX = {"variable": "airflow/variables/", "connection": "airflow/connections/"}


# ---- source --------------------------------------------------------------------------------


def connect(sql_alchemy_conn: str):
    """A DB-API connection and its paramstyle-free cursor factory for an Airflow SQLAlchemy URL."""
    url = urlsplit(sql_alchemy_conn)
    if url.scheme.startswith("sqlite"):
        import sqlite3

        return sqlite3.connect(sql_alchemy_conn.split("sqlite:///", 1)[1])
    if url.scheme.startswith("mysql"):
        import pymysql

        # ANSI_QUOTES: the SELECTs below quote identifiers with double quotes, as on PostgreSQL.
        return pymysql.connect(
            host=url.hostname, port=url.port or 3306, user=url.username, password=url.password or "",
            database=url.path.lstrip("/"), charset="utf8mb4",
            init_command="SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
        )
    import psycopg2

    return psycopg2.connect(
        host=url.hostname, port=url.port or 5432, user=url.username, password=url.password, dbname=url.path.lstrip("/")
    )


def read_source(sql_alchemy_conn: str, fernet: MultiFernet) -> list[tuple[str, str, object]]:
    """[(kind, id, desired value)] with every encrypted field decrypted, as Airflow's ORM does."""

    def dec(value, encrypted):
        return fernet.decrypt(value.encode()).decode() if (encrypted and value is not None) else value

    db = connect(sql_alchemy_conn)
    cur = db.cursor()
    items: list[tuple[str, str, object]] = []
    cur.execute('SELECT "key", val, is_encrypted FROM variable ORDER BY id')
    for key, val, enc in cur.fetchall():
        items.append(("variable", key, dec(val, enc)))
    cur.execute(
        'SELECT conn_id, conn_type, description, host, "schema", login, password, port, extra, '
        "is_encrypted, is_extra_encrypted FROM connection ORDER BY id"
    )
    for conn_id, conn_type, desc, host, schema, login, password, port, extra, enc, extra_enc in cur.fetchall():
        extra = dec(extra, extra_enc)
        try:
            extra_value = json.loads(extra) if extra else None
        except ValueError:
            extra_value = extra
        fields = {
            "conn_type": conn_type,
            "description": desc,
            "host": host,
            "login": login,
            "password": dec(password, enc),
            "schema": schema,
            "port": port,
            "extra": extra_value,
        }
        items.append(("connection", conn_id, {k: v for k, v in fields.items() if v not in (None, "", {})}))
    db.close()
    return items


# ---- targets -------------------------------------------------------------------------------


def same(kind: str, desired, found) -> bool:
    """Does the target's value read like the source's? (connections compared as dicts)."""
    if kind == "variable":
        return desired == found
    if isinstance(found, str):
        try:
            found = json.loads(found)
        except ValueError:
            return False
    if isinstance(found, dict) and isinstance(found.get("extra"), str):
        try:
            found = {**found, "extra": json.loads(found["extra"])}
        except ValueError:
            pass
    return desired == found


class VaultTarget:
    def __init__(self, url: str) -> None:
        import hvac

        self.kv = hvac.Client(url=url, token=os.environ["VAULT_TOKEN"]).secrets.kv.v2
        self.InvalidPath = hvac.exceptions.InvalidPath

    @staticmethod
    def path(kind: str, id_: str) -> str:
        return f"{kind}s/{id_}"

    def read(self, kind, id_, desired):
        try:
            data = self.kv.read_secret_version(
                path=self.path(kind, id_), mount_point=VAULT_MOUNT, raise_on_deleted_version=True
            )["data"]["data"]
        except self.InvalidPath:
            return None
        return data.get("value") if kind == "variable" else data

    def write(self, kind, id_, desired):
        secret = {"value": desired} if kind == "variable" else desired
        self.kv.create_or_update_secret(path=self.path(kind, id_), secret=secret, mount_point=VAULT_MOUNT)


class AwsTarget:
    def __init__(self, url: str) -> None:
        import boto3

        self.sm = boto3.client(
            "secretsmanager",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.errors = self.sm.exceptions

    @staticmethod
    def encode(kind, desired) -> str:
        if kind == "variable":
            return desired
        return json.dumps({k: v for k, v in desired.items() if k != "description"})

    def read(self, kind, id_, desired):
        try:
            return self.sm.get_secret_value(SecretId=AWS_PREFIX[kind] + id_)["SecretString"]
        except self.errors.ResourceNotFoundException:
            return None

    def write(self, kind, id_, desired):
        name, value = AWS_PREFIX[kind] + id_, self.encode(kind, desired)
        try:
            self.sm.create_secret(Name=name, SecretString=value)
        except self.errors.ResourceExistsException:
            self.sm.put_secret_value(SecretId=name, SecretString=value)


class LocalFilesTarget:
    """Airflow's LocalFilesystemBackend JSON files, loaded once and written once."""

    def __init__(self, directory: str) -> None:
        self.files = {"variable": Path(directory) / "variables.json", "connection": Path(directory) / "connections.json"}
        self.data = {k: (json.loads(p.read_text()) if p.exists() else {}) for k, p in self.files.items()}

    def read(self, kind, id_, desired):
        return self.data[kind].get(id_)

    def write(self, kind, id_, desired):
        self.data[kind][id_] = desired

    def flush(self):
        for kind, path in self.files.items():
            path.write_text(json.dumps(self.data[kind], indent=2, sort_keys=True))


def compare_desired(target, kind: str, desired):
    """What the target should hold for `desired` when read back (AWS drops descriptions)."""
    if isinstance(target, AwsTarget) and kind == "connection":
        return {k: v for k, v in desired.items() if k != "description"}
    return desired


# ---- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["plan", "apply"])
    ap.add_argument("--source", required=True, help="the metastore's SQLAlchemy URL")
    ap.add_argument("--target", required=True, choices=["local_files", "vault", "aws_secrets_manager"])
    ap.add_argument("--target-url", required=True, help="Vault/AWS endpoint URL, or the local files' directory")
    ap.add_argument("--limit", type=int, default=0, help="only the first N items (sampling); 0 = all")
    args = ap.parse_args()

    t0 = time.monotonic()
    keys = [Fernet(k.strip().encode()) for k in os.environ["AIRFLOW__CORE__FERNET_KEY"].split(",") if k.strip()]
    items = read_source(args.source, MultiFernet(keys))
    total_items = len(items)
    if args.limit:
        items = items[: args.limit]
    t_source = time.monotonic() - t0

    target = {"local_files": LocalFilesTarget, "vault": VaultTarget, "aws_secrets_manager": AwsTarget}[args.target](
        args.target_url
    )
    counts = {"create": 0, "update": 0, "unchanged": 0, "written": 0}
    for kind, id_, desired in items:
        if args.mode == "plan":
            found = target.read(kind, id_, desired)
            if found is None:
                counts["create"] += 1
            elif same(kind, compare_desired(target, kind, desired), found):
                counts["unchanged"] += 1
            else:
                counts["update"] += 1
        else:
            target.write(kind, id_, desired)
            counts["written"] += 1
    if isinstance(target, LocalFilesTarget) and args.mode == "apply":
        target.flush()
    print(
        json.dumps(
            {
                "mode": args.mode,
                "target": args.target,
                "items": len(items),
                "source_items": total_items,
                "seconds_source": round(t_source, 3),
                "seconds_total": round(time.monotonic() - t0, 3),
                **counts,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
