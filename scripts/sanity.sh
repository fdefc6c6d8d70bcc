#!/usr/bin/env bash
# ansible-test sanity needs the tree at .../ansible_collections/<namespace>/<name>/: copy it there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
# outside any git work tree: inside one, ansible-test lists files with git and finds none of the copy's
DEST="${TMPDIR:-/tmp}/mtd-sanity-$(echo "$ROOT" | md5sum | cut -c1-8)/ansible_collections/mtd/containers"

# ansible-test bootstraps pip in its sanity venvs with a get-pip script from ci-files.testing.ansible.com,
# which this network does not reach. Its documented way out is a script saved in its cache: ours installs
# the same pip release from PyPI's wheel.
PIP_VERSION=$("$PY" - <<'PYEOF'
import re, inspect
from ansible_test._internal import python_requirements as pr
m = re.search(r"pip='([0-9.]+)'", inspect.getsource(pr))
print(m.group(1) if m else '')
PYEOF
)
if [ -n "$PIP_VERSION" ]; then
  CACHE="$HOME/.ansible/test/cache"
  GET_PIP="$CACHE/get_pip_${PIP_VERSION//./_}.py"
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/pip-"$PIP_VERSION"-*.whl >/dev/null 2>&1; then
    "$ROOT/.venv/bin/pip" download -q --no-deps --only-binary :all: -d "$CACHE" "pip==$PIP_VERSION"
  fi
  sed "s/@PIP_VERSION@/$PIP_VERSION/" "$ROOT/scripts/ansible_test_get_pip.py" >"$GET_PIP"
fi

mkdir -p "$DEST"
rsync -a --delete --delete-excluded --exclude /.venv --exclude "/.venv-*" --exclude /.build --exclude /.git --exclude /.ansible --exclude /lab/inventory.yml \
  --exclude /tests/output --exclude __pycache__ --exclude .pytest_cache "$ROOT/" "$DEST/"
[ ! -s "$ROOT/tests/sanity/ignore-2.19.txt" ] || { echo "sanity: tests/sanity/ignore-2.19.txt must stay empty" >&2; exit 1; }
cd "$DEST"
echo "sanity: ansible-test sanity (ansible-core $("$PY" -c 'import ansible.release as r; print(r.__version__)'))"
"$ROOT/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"

# the docs as antsibull-docs builds them (it calls ansible-doc: .venv/bin first on PATH)
echo "sanity: antsibull-docs lint-collection-docs (plugin docs, extra docs, links)"
"$ROOT/.venv-docs/bin/python" "$ROOT/scripts/docsite.py" --check
PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv-docs/bin/antsibull-docs" lint-collection-docs --plugin-docs .
