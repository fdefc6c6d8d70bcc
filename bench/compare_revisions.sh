#!/usr/bin/env bash
# Live migration of this tree against another revision, side by side on the same lab in one run:
#   bench/compare_revisions.sh REV [ROUNDS] [SIZE_MB]
# REV is checked out into a temporary git worktree (sharing .venv and the lab inventory); each round runs
# bench/migrate_bench.py once in REV's tree and once in this one (alternating which goes first), paths floor,
# ours (stop-and-copy) and lazy (post-copy) at SIZE_MB (default 256), 1 run each. Prints the median downtime and
# total per tree and path, and the ratio this tree / REV. Needs the lab up (lab/lab.sh up); writes nothing to
# RESULTS.md (paste the printed table there).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REV="${1:?usage: bench/compare_revisions.sh REV [ROUNDS] [SIZE_MB]}"
ROUNDS="${2:-3}"
SIZE="${3:-256}"
[ -f "$ROOT/lab/inventory.yml" ] || { echo "the lab is not up: run lab/lab.sh up" >&2; exit 1; }
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mtd-compare.XXXXXX")"
BASE="$OUT/base"
cleanup() { git -C "$ROOT" worktree remove --force "$BASE" >/dev/null 2>&1 || true; rm -rf "$OUT"; }
trap cleanup EXIT
git -C "$ROOT" worktree add -q --detach "$BASE" "$REV"
ln -s "$ROOT/.venv" "$BASE/.venv"
mkdir -p "$BASE/.build/collections/ansible_collections/mtd" "$BASE/lab"
ln -sfn ../../../.. "$BASE/.build/collections/ansible_collections/mtd/containers"
ln -sfn "$ROOT/lab/inventory.yml" "$BASE/lab/inventory.yml"

run() { # tree label round
  (cd "$1" && PYTHONPATH="$1/.build/collections" ANSIBLE_CONFIG="$1/ansible.cfg" "$ROOT/.venv/bin/python" \
      bench/migrate_bench.py --sizes "$SIZE" --paths floor ours lazy --repeat 1 --no-results \
      --json "$OUT/$2-$3.json" >"$OUT/$2-$3.log" 2>&1) || { echo "run $2 round $3 failed:"; tail -20 "$OUT/$2-$3.log"; }
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order=(base head); else order=(head base); fi
  for label in "${order[@]}"; do
    tree="$ROOT"; [ "$label" = base ] && tree="$BASE"
    echo "round $round: $label"
    run "$tree" "$label" "$round"
  done
done
"$ROOT/.venv/bin/python" - "$OUT" "$REV" "$(git -C "$ROOT" rev-parse --short HEAD)" "$SIZE" <<'PYEOF'
import glob, json, os, statistics, sys
out, rev, head, size = sys.argv[1:5]
runs = {}
for path in sorted(glob.glob(os.path.join(out, '*.json'))):
    label = os.path.basename(path).split('-')[0]
    for sample in json.load(open(path)).get('samples', []):
        if 'downtime' in sample:
            runs.setdefault((label, sample['path']), []).append(sample)
print('\n%s MB, medians of the rounds (seconds); base = %s, head = %s\n' % (size, rev, head))
print('| path | base downtime | head downtime | head/base | base total | head total | head/base | runs |')
print('|---|---:|---:|---:|---:|---:|---:|---:|')
for path in ('floor', 'ours', 'lazy'):
    b, h = runs.get(('base', path), []), runs.get(('head', path), [])
    if not b or not h:
        print('| %s | (no result: base %d, head %d runs) |' % (path, len(b), len(h)))
        continue
    med = lambda rs, key: statistics.median(r[key] for r in rs)
    bd, hd, bt, ht = med(b, 'downtime'), med(h, 'downtime'), med(b, 'total'), med(h, 'total')
    print('| %s | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %d / %d |' % (path, bd, hd, hd / bd, bt, ht, ht / bt, len(b), len(h)))
PYEOF
