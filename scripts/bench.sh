#!/usr/bin/env bash
# make bench: run every benchmark in bench/ with a time limit and record its results in bench/RESULTS.md.
#  - a script that takes --results writes (or replaces) its own section of RESULTS.md;
#  - the output of any other bench/*.py becomes the section "## bench/<name>.py" (Markdown when the script
#    offers --markdown, else verbatim);
#  - bench/migrate_bench.py (live migration on the lab, its section "## Live migration") runs last with its
#    own limit; the lab is brought up when it is down, never taken down.
# Other sections of RESULTS.md are left alone. Limits (seconds): MTD_BENCH_TIMEOUT (each script, default
# 600) and MTD_BENCH_MIGRATE_TIMEOUT (migrate_bench.py, default 2700).
#   scripts/bench.sh [NAME ...]    only these benchmarks (e.g. precopy_compare migrate_bench)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
PY="$ROOT/.venv/bin/python"
RESULTS="${MTD_BENCH_RESULTS:-$ROOT/bench/RESULTS.md}"
LIMIT="${MTD_BENCH_TIMEOUT:-600}"
LIMIT_MIGRATE="${MTD_BENCH_MIGRATE_TIMEOUT:-2700}"
export PYTHONPATH="$ROOT/.build/collections${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
failed=()
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mtd-bench.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

selected() { # name.py: run it?
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local want
  for want in "${ONLY[@]}"; do [ "${want%.py}.py" = "$1" ] && return 0; done
  return 1
}
ONLY=("$@")

write_section() { # heading body-file
  "$PY" - "$RESULTS" "$1" "$2" <<'PYEOF'
import sys
sys.path.insert(0, 'bench')
from migrate_bench import write_section
path, heading, body = sys.argv[1:4]
with open(body) as handle:
    write_section(path, heading + '\n\n' + handle.read(), heading=heading)
PYEOF
}

for script in bench/*.py; do
  name="$(basename "$script")"
  if [ "$name" = migrate_bench.py ] || ! selected "$name"; then continue; fi
  echo "=== $script (limit ${LIMIT}s)"
  args=()
  own=false
  if grep -q -- '--results' "$script"; then
    args=(--results "$RESULTS")
    own=true
  elif grep -q -- '--markdown' "$script"; then
    args=(--markdown)
  fi
  if timeout --kill-after=30 "$LIMIT" "$PY" "$script" "${args[@]}" >"$OUT/$name.out" 2>"$OUT/$name.err"; then
    cat "$OUT/$name.out"
    "$own" && continue
    {
      echo "Printed by \`$script${args[*]:+ ${args[*]}}\` (\`make bench\`) on $(date -u '+%Y-%m-%d %H:%M UTC')."
      echo
      if [ ${#args[@]} -gt 0 ]; then
        cat "$OUT/$name.out"
      else
        echo '```text'
        cat "$OUT/$name.out"
        echo '```'
      fi
    } >"$OUT/$name.md"
    write_section "## $script" "$OUT/$name.md" || failed+=("$name(results)")
  else
    rc=$?
    cat "$OUT/$name.out" "$OUT/$name.err" >&2
    [ "$rc" -ne 124 ] || echo "$script: stopped after ${LIMIT}s" >&2
    failed+=("$name(rc=$rc)")
  fi
done

if selected migrate_bench.py; then
  echo "=== bench/migrate_bench.py (limit ${LIMIT_MIGRATE}s)"
  if ! bash lab/lab.sh status >/dev/null 2>&1; then
    echo "lab is not up: bringing it up"
    bash lab/lab.sh up || failed+=(lab-up)
  fi
  # The script's own budget ends its cases early enough to clean up and write its section before the limit.
  if ! timeout --signal=TERM --kill-after=120 "$LIMIT_MIGRATE" "$PY" bench/migrate_bench.py \
      --results "$RESULTS" --budget $((LIMIT_MIGRATE * 3 / 4)); then
    failed+=(migrate_bench.py)
  fi
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "make bench: FAILED: ${failed[*]}"
  exit 1
fi
echo "make bench: results in ${RESULTS#"$ROOT"/}"
