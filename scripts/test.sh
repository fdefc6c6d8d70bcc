#!/usr/bin/env bash
# make test: sanity, changelog lint, ruff + mypy, ansible-lint, then unit + integration tests (one pytest session) on a lab this
# script brings up itself and always tears down, even on failure.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
failed=()
step() { echo; echo "=== $1"; }

step "sanity"
bash scripts/sanity.sh || failed+=(sanity)

step "changelog lint"
"$ROOT/.venv/bin/antsibull-changelog" lint || failed+=(changelog-lint)

step "ruff + mypy"
bash scripts/lint.sh || failed+=(lint)

step "ansible-lint (production profile: roles, playbooks, integration targets, molecule scenarios)"
NO_COLOR=1 "$ROOT/.venv/bin/ansible-lint" --nocolor || failed+=(ansible-lint)

step "lab up"
trap 'echo; echo "=== lab down"; bash lab/lab.sh down' EXIT
if ! bash lab/lab.sh up; then
  failed+=(lab-up)
  echo "lab up failed: the integration tests will fail" >&2
fi

step "unit + integration tests"
# --durations: the slowest tests in the log, to keep the whole command well under 45 min
bash scripts/pytest.sh -rs --durations=40 tests/unit tests/integration "$@"
rc=$?
# pytest exit 5 = no tests collected: a missing suite is a failure, never a pass.
[ $rc -eq 0 ] || failed+=("pytest(rc=$rc)")

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "make test: FAILED: ${failed[*]}"
  exit 1
fi
echo "make test: all steps passed"
