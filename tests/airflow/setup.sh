#!/usr/bin/env bash
# Build the pinned Airflow virtualenvs of the real-Airflow test tier (tests/real_airflow.rs), without
# dependency resolution (a plain `pip install apache-airflow==3.3.2 <providers>` backtracks for minutes).
#
#   bash tests/airflow/setup.sh                 # ~/.cache/airflow-venvs/af3 (3.3.2) and .../af2 (2.10.5)
#   AF3=/opt/af3 AF2= bash tests/airflow/setup.sh   # another place; an empty AF2 skips the 2.10.5 venv
#
# About a minute each with a warm pip cache; a venv that already imports airflow is reused. The
# requirements-*.txt files are full `pip freeze` outputs (Python 3.11) vendored from the project's
# shared environment notes: they are data. Each venv is checked by importing the five provider
# backends plus LocalFilesystemBackend, EnvironmentVariablesBackend and MetastoreBackend. In the 3.3.2
# venv the google provider was installed with --no-deps plus only what CloudSecretManagerBackend
# needs, so `pip check` reports missing google extras: expected.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$(command -v python3.11 || echo python3)}"  # the freezes are for Python 3.11
AF3="${AF3-$HOME/.cache/airflow-venvs/af3}"
AF2="${AF2-$HOME/.cache/airflow-venvs/af2}"

check() {
  "$1/bin/python" - <<'PYEOF'
import importlib.metadata as md
from airflow.providers.hashicorp.secrets.vault import VaultBackend  # noqa: F401
from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend  # noqa: F401
from airflow.providers.amazon.aws.secrets.systems_manager import SystemsManagerParameterStoreBackend  # noqa: F401
from airflow.providers.google.cloud.secrets.secret_manager import CloudSecretManagerBackend  # noqa: F401
from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend  # noqa: F401
from airflow.secrets.local_filesystem import LocalFilesystemBackend  # noqa: F401
from airflow.secrets.environment_variables import EnvironmentVariablesBackend  # noqa: F401
from airflow.secrets.metastore import MetastoreBackend  # noqa: F401
print("ok: apache-airflow", md.version("apache-airflow"))
PYEOF
}

build() {
  local dir="$1" req="$2"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import airflow' 2>/dev/null; then
    echo "ok (cached): $dir"; return 0
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  if ! "$dir/bin/pip" install -q --no-deps -r "$req" || ! check "$dir"; then
    rm -rf "$dir"  # never leave a half-built venv that the next run would take as cached
    echo "failed to build $dir from $req" >&2
    return 1
  fi
}

if [ -n "$AF3" ]; then build "$AF3" "$HERE/requirements-airflow-3.3.2.txt"; fi
if [ -n "$AF2" ]; then build "$AF2" "$HERE/requirements-airflow-2.10.5.txt"; fi
