"""Read items back through Airflow's OWN backend classes (run inside a pinned venv).

    python readback.py --reader airflow2|airflow3|task-sdk --jobs JOBS.json --out RESULTS.jsonl

JOBS.json: {"source": {"variables": [...], "connections": [...]} | null,
            "jobs": [{"name", "class", "kwargs", "patch": null|"gcp"|"azure", "gcp_endpoint",
                      "env_file": null|PATH, "files": [PATH...], "variables": [...], "connections": [...]}]}

For each job the backend is built with `cls(**kwargs)` and `get_variable` / `get_connection` are
called per id. Readers: "airflow2" (the 2.10.5 venv, Airflow's ORM Connection), "airflow3" (3.3.2 with
`_AIRFLOW_PROCESS_CONTEXT=server`: the ORM Connection the scheduler and API server use) and
"task-sdk" (3.3.2 as a worker: `airflow.sdk.configuration.initialize_secrets_backends` injects the
task-sdk Connection with `_set_connection_class`). "source" reads the metastore named by
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN with MetastoreBackend, as Airflow reads it.

Output: one JSON object per line, to --out only (it holds secrets; nothing is printed but counts):
{"job", "reader", "kind", "id", "found", "value" | "conn" | "error": {"class", "message"}}, and
{"job", "reader", "file", "file_error": {...}} when Airflow refuses a whole local file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time


def conn_fields(c) -> dict:
    raw = getattr(c, "extra", None)
    out = {
        "conn_type": c.conn_type,
        "host": c.host,
        "login": c.login,
        "password": c.password,
        "schema": c.schema,
        "port": c.port,
        "extra": raw,
        "description": getattr(c, "description", None),
    }
    try:
        out["extra_dejson"] = c.extra_dejson
    except Exception as e:  # noqa: BLE001 - Airflow's own refusal is data here
        out["extra_dejson_error"] = type(e).__name__
    return out


def err(e: BaseException) -> dict:
    return {"class": type(e).__name__, "message": str(e)[:300]}


def import_string(path: str):
    mod, _, name = path.rpartition(".")
    return getattr(__import__(mod, fromlist=[name]), name)


def load_env_file(path: str) -> None:
    """Load a .env file the way `set -a; . FILE` does (what docker compose users and sh read)."""
    r = subprocess.run(["env", "-i", "sh", "-c", 'set -a; . "$1"; exec env -0', "sh", path],
                       capture_output=True, check=True)
    for entry in r.stdout.split(b"\0"):
        k, sep, v = entry.partition(b"=")
        if sep and (k.startswith(b"AIRFLOW_VAR_") or k.startswith(b"AIRFLOW_CONN_")):
            os.environ[k.decode()] = v.decode("utf-8", "surrogateescape")


def clear_airflow_env() -> None:
    for k in list(os.environ):
        if k.startswith("AIRFLOW_VAR_") or k.startswith("AIRFLOW_CONN_"):
            del os.environ[k]


def patch_gcp(endpoint: str) -> None:
    """CloudSecretManagerBackend against the in-repo REST fake: anonymous credentials, REST transport."""
    from google.auth.credentials import AnonymousCredentials
    import airflow.providers.google.cloud.secrets.secret_manager as sm
    import airflow.providers.google.cloud._internal_client.secret_manager_client as smc

    orig = smc.SecretManagerServiceClient
    sm.get_credentials_and_project_id = lambda *a, **kw: (AnonymousCredentials(), None)

    def factory(credentials=None, client_info=None, **kw):
        return orig(credentials=AnonymousCredentials(), client_info=client_info, transport="rest",
                    client_options={"api_endpoint": endpoint})

    smc.SecretManagerServiceClient = factory


def patch_azure() -> None:
    """AzureKeyVaultBackend with a credential that hands out the fake vault's token."""
    import time
    from azure.core.credentials import AccessToken
    import airflow.providers.microsoft.azure.secrets.key_vault as kv

    class FakeCredential:
        def get_token(self, *scopes, **kw):
            return AccessToken("fake-kv-token", int(time.time()) + 3600)

        def get_token_info(self, *scopes, **kw):
            from azure.core.credentials import AccessTokenInfo
            return AccessTokenInfo("fake-kv-token", int(time.time()) + 3600)

        def close(self):
            pass

    kv.get_sync_default_azure_credential = lambda **kw: FakeCredential()


def memoised_files(cls):
    """LocalFilesystemBackend re-parses its file on every lookup (twice per connection): load each
    file once per job, keeping Airflow's own parse (a file Airflow rejects raises on every lookup)."""

    def memo(name):
        prop = getattr(cls, name)

        def get(self):
            cache = self.__dict__.setdefault("_tier_cache", {})
            if name not in cache:
                try:
                    cache[name] = (True, prop.fget(self))
                except Exception as e:  # noqa: BLE001
                    cache[name] = (False, e)
            ok, v = cache[name]
            if not ok:
                raise v
            return v

        return property(get)

    return type(cls.__name__, (cls,), {n: memo(n) for n in ("_local_variables", "_local_connections")})


def backend_for(job: dict, reader: str):
    cls = import_string(job["class"])
    if job["class"] == "airflow.secrets.local_filesystem.LocalFilesystemBackend":
        cls = memoised_files(cls)
    backend = cls(**job.get("kwargs", {}))
    if reader == "task-sdk":
        from airflow.sdk.definitions.connection import Connection
        backend._set_connection_class(Connection)
    elif reader == "airflow3" and hasattr(backend, "_set_connection_class"):
        from airflow.models import Connection
        backend._set_connection_class(Connection)
    return backend


def read_all(backend, job_name: str, reader: str, variables, connections, emit) -> None:
    for key in variables:
        rec = {"job": job_name, "reader": reader, "kind": "variable", "id": key}
        try:
            v = backend.get_variable(key)
            rec.update(found=v is not None, value=v)
        except Exception as e:  # noqa: BLE001
            rec.update(found=False, error=err(e))
        emit(rec)
    for cid in connections:
        rec = {"job": job_name, "reader": reader, "kind": "connection", "id": cid}
        try:
            c = backend.get_connection(cid)
            rec.update(found=c is not None)
            if c is not None:
                rec["conn"] = conn_fields(c)
        except Exception as e:  # noqa: BLE001
            rec.update(found=False, error=err(e))
        emit(rec)


def check_files(job: dict, reader: str, emit) -> None:
    from airflow.secrets import local_filesystem as lf
    for path in job.get("files", []):
        if not os.path.exists(path):
            continue
        loader = lf.load_connections_dict if "connections" in os.path.basename(path) else lf.load_variables
        try:
            loader(path)
        except Exception as e:  # noqa: BLE001
            emit({"job": job["name"], "reader": reader, "file": path, "file_error": err(e)})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reader", required=True, choices=["airflow2", "airflow3", "task-sdk"])
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    import warnings
    warnings.simplefilter("ignore")
    with open(args.jobs, encoding="utf-8") as f:
        spec = json.load(f)
    out = open(args.out, "w", encoding="utf-8")
    count = 0

    def emit(rec):
        nonlocal count
        count += 1
        out.write(json.dumps(rec) + "\n")

    src = spec.get("source")
    if src:
        from airflow.secrets.metastore import MetastoreBackend
        read_all(backend_for({"class": "airflow.secrets.metastore.MetastoreBackend"}, args.reader), "source",
                 args.reader, src.get("variables", []), src.get("connections", []), emit)
    patched = set()
    for job in spec.get("jobs", []):
        patch = job.get("patch")
        if patch == "gcp" and "gcp" not in patched:
            patch_gcp(job["gcp_endpoint"])
            patched.add("gcp")
        if patch == "azure" and "azure" not in patched:
            patch_azure()
            patched.add("azure")
        clear_airflow_env()
        if job.get("env_file"):
            load_env_file(job["env_file"])
        try:
            backend = backend_for(job, args.reader)
        except Exception as e:  # noqa: BLE001
            emit({"job": job["name"], "reader": args.reader, "backend_error": err(e)})
            continue
        check_files(job, args.reader, emit)
        t0 = time.monotonic()
        read_all(backend, job["name"], args.reader, job.get("variables", []), job.get("connections", []), emit)
        print(f"tier: {args.reader}: {job['name']}: {time.monotonic() - t0:.1f}s", flush=True)
    out.close()
    print(f"tier: {args.reader}: {count} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
