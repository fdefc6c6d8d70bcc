#!/usr/bin/env bash
# ruff (ruff.toml) and mypy (mypy.ini) over the collection; both must be clean.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
rc=0
echo "ruff check"
"$ROOT/.venv/bin/ruff" check --no-cache . || rc=1
echo "mypy (plugins as ansible_collections.mtd.containers)"
(cd "$ROOT/.build/collections" && "$ROOT/.venv/bin/mypy" --config-file "$ROOT/mypy.ini" --no-incremental \
    --cache-dir=/dev/null -p ansible_collections.mtd.containers.plugins) || rc=1
exit $rc
