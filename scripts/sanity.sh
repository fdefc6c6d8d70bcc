#!/usr/bin/env bash
# ansible-test sanity needs the tree at .../ansible_collections/<namespace>/<name>/: copy it there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.build/sanity/ansible_collections/mtd/containers"
mkdir -p "$DEST"
rsync -a --delete --exclude /.venv --exclude /.build --exclude /.git --exclude /lab/inventory.yml \
  --exclude /tests/output --exclude __pycache__ --exclude .pytest_cache "$ROOT/" "$DEST/"
[ ! -s "$ROOT/tests/sanity/ignore-2.19.txt" ] || { echo "sanity: tests/sanity/ignore-2.19.txt must stay empty" >&2; exit 1; }
cd "$DEST"
echo "sanity: ansible-test sanity (ansible-core $("$ROOT/.venv/bin/python" -c 'import ansible.release as r; print(r.__version__)'))"
"$ROOT/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
