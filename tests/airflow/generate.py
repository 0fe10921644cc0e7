"""Seed a fresh SQLite Airflow metastore through Airflow's OWN models (run inside a pinned venv).

    python generate.py --db PATH --out MANIFEST.json [--seed N] [--variables N] [--connections N] [--legacy]

`airflow db migrate` creates the schema, then `Variable.set(key, value, description=...)` and
`Connection(...)` added in `create_session()` write the rows, Fernet-encrypted with a fresh key.
Randomised: the seed is printed on stdout (`seed=N`) and taken from --seed, else AIRFLOW_TIER_SEED,
else random. `--legacy` (Airflow 2.10.5 only: Airflow 3 refuses them in the constructor) adds
connections whose `extra` is not a JSON object.

The manifest (ids, the Fernet key, the sqlalchemy URL) holds a secret (the key): it is written to
--out only, never printed. Values are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

UNICODE = ["ünïcödé", "日本語テキスト", "emoji 🔐🚀", "Ελληνικά", "עברית RTL", "a\u0301 combining", "zero\u200bwidth",
           "ß→ẞ", "\u00a0nbsp\u00a0", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
SPECIAL = ["p@ss:w/rd?#%&=+", "quote'single", 'quote"double', "back`tick`", "dollar$HOME", "back\\slash",
           "semi;colon", "both ' and `", "trailing\\", "hash # not comment", "=equals=", "${VAR}", "a'b\"c`d\\e"]
WHITESPACE = ["  leading", "trailing  ", " both ", "new\nline", "\ttab\t", "crlf\r\nline", "\n", " ", "multi\n\nblank\n"]
JSONISH = ['{"a": 1}', "[1, 2, 3]", "42", "null", "true", '"quoted"', "{not json"]
CONN_TYPES = ["postgres", "postgresql", "google-cloud-platform", "google_cloud_platform", "MixedCase", "sql-server",
              "none", "", "http", "aws", "mysql", "generic", "fs", "HTTP", "sqlite"]
HOSTS = [None, "", "db.example.com", "DB.Example.COM", "http://api.example.com", "https://Host.Example.com:8443/path",
         "10.0.0.1", "host_with_underscore", "münchen.example", "s3://bucket/key", "[::1]", "host name"]
PORTS = [None, 0, 1, 65535, 5432, 3306, 8080, 443]
LEGACY_EXTRAS = ["this is not json", "[1, 2, 3]", "42", '"just a string"', "null", "true", "{broken", "  "]


def text(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.25:
        return rng.choice(["plain", "value", "hello world", "s3cr3t"]) + str(rng.randint(0, 99999))
    if pick < 0.40:
        return rng.choice(UNICODE) + str(rng.randint(0, 999))
    if pick < 0.55:
        return rng.choice(WHITESPACE) + rng.choice(["x", "", "y z"])
    if pick < 0.70:
        return rng.choice(SPECIAL) + str(rng.randint(0, 99))
    if pick < 0.80:
        return rng.choice(JSONISH)
    if pick < 0.85:
        return ""
    if pick < 0.90:
        return "".join(rng.choice("abcdefghij \n\t'\"`$\\é🔐") for _ in range(rng.randint(1, 40)))
    return "long-" + "x" * rng.randint(500, 3000)


def maybe(rng: random.Random, p_none: float, make):
    return None if rng.random() < p_none else make()


def extra_obj(rng: random.Random):
    choices = [
        lambda: {},
        lambda: {"key": text(rng)},
        lambda: {"nested": {"a": {"b": [1, 2, {"c": None}]}}, "n": rng.randint(-5, 5)},
        lambda: {"int": rng.randint(0, 10**6), "float": 1.5, "bool": rng.random() < 0.5, "null": None},
        lambda: {"json_string": '{"x": 1}', "list_string": "[1, 2]"},
        lambda: {rng.choice(UNICODE): rng.choice(UNICODE)},
        lambda: {"list": [text(rng), 1, None, True]},
        lambda: {"region_name": "eu-west-1", "role_arn": "arn:aws:iam::123456789012:role/x"},
    ]
    return rng.choice(choices)()


def item_id(rng: random.Random, prefix: str, i: int) -> str:
    style = rng.random()
    if style < 0.55:
        return f"{prefix}_{i:04d}"
    if style < 0.75:
        return f"{prefix}-{i:04d}"
    if style < 0.90:
        return f"{prefix.upper()}_{i:04d}_Mixed"
    return f"{prefix}.{i:04d}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--variables", type=int, default=150)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--legacy", action="store_true")
    args = ap.parse_args()
    seed = args.seed
    if seed is None:
        seed = int(os.environ.get("AIRFLOW_TIER_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed={seed}", flush=True)
    rng = random.Random(seed)

    from cryptography.fernet import Fernet

    fernet_key = Fernet.generate_key().decode()
    url = "sqlite:///" + os.path.abspath(args.db)
    home = tempfile.mkdtemp(prefix="af-gen-home-")
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__FERNET_KEY": fernet_key,
        "_AIRFLOW_PROCESS_CONTEXT": "server",
    })
    os.environ.update(env)
    r = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        return 1

    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    variables, connections, legacy = [], [], []
    for i in range(args.variables):
        key = item_id(rng, "var", i)
        desc = maybe(rng, 0.5, lambda: text(rng))
        Variable.set(key, text(rng), description=desc)
        variables.append(key)

    with create_session() as session:
        for i in range(args.connections):
            cid = item_id(rng, "conn", i)
            extra = maybe(rng, 0.4, lambda: extra_obj(rng))
            c = Connection(
                conn_id=cid,
                conn_type=rng.choice(CONN_TYPES),
                description=maybe(rng, 0.5, lambda: text(rng)),
                host=rng.choice(HOSTS),
                login=maybe(rng, 0.3, lambda: rng.choice(["user", "", "ü$er", "us@er", "a:b", "admin"])),
                password=maybe(rng, 0.3, lambda: text(rng)),
                schema=maybe(rng, 0.4, lambda: rng.choice(["db", "", "my/schema", "Schema With Space", "ß"])),
                port=rng.choice(PORTS),
                extra=None if extra is None else json.dumps(extra),
            )
            session.add(c)
            connections.append(cid)
        if args.legacy:
            for i, raw in enumerate(LEGACY_EXTRAS):
                cid = f"legacy_extra_{i:02d}"
                session.add(Connection(conn_id=cid, conn_type="http", host="legacy.example.com",
                                       password=f"legacy-pw-{i}", port=rng.choice(PORTS), extra=raw))
                connections.append(cid)
                legacy.append(cid)

    manifest = {"seed": seed, "fernet_key": fernet_key, "sql_alchemy_conn": url,
                "variables": variables, "connections": connections, "legacy": legacy}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    print(f"seeded {len(variables)} variables and {len(connections)} connections ({len(legacy)} legacy extras)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
