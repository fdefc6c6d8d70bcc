#!/usr/bin/env bash
# A small container's whole migration, this tree against another revision, side by side in one run:
#   bench/lean_compare.sh REV|DIR [ROUNDS]
# (DIR: a checkout with its own .build/collections link, e.g. a worktree of main, used as it is)
# Each round starts a busybox counter (32 MB limit, network none) on lab-1 and moves it to lab-2 once per
# tree (alternating which goes first) and per way of calling the role:
#   standalone  playbooks/migrate.yml (the role gathers the facts of source and target itself);
#   fleet       bench/lean_migrate.yml (facts gathered once before, in parallel; migrate_refresh_facts=false,
#               which an older revision ignores: it gathers again).
# Prints the medians of the record's duration_seconds (role start -> Succeeded), of frozen_seconds and of
# the ansible-playbook wall time, per tree and way, and head/base. Needs the lab up; run it under the lab
# lock (flock /tmp/mtd-lab.lock). Writes nothing to RESULTS.md (paste the printed table there).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REV="${1:?usage: bench/lean_compare.sh REV|DIR [ROUNDS]}"
ROUNDS="${2:-5}"
[ -f "$ROOT/lab/inventory.yml" ] || { echo "the lab is not up: run lab/lab.sh up" >&2; exit 1; }
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mtd-lean.XXXXXX")"
BASE="$OUT/base"
NAME=""
docker_on() { /usr/bin/docker -H "unix:///var/lib/mtd-lab/$1/docker.sock" "${@:2}"; }
remove_ctr() { [ -z "$NAME" ] || for h in lab-1 lab-2; do docker_on "$h" rm -f "$NAME" >/dev/null 2>&1 || true; done; }
OWN_BASE=1
if [ -d "$REV" ]; then BASE="$(cd "$REV" && pwd)"; OWN_BASE=0; REV="$BASE@$(git -C "$BASE" rev-parse --short HEAD)"; fi
cleanup() {
  remove_ctr
  [ "$OWN_BASE" = 0 ] || git -C "$ROOT" worktree remove --force "$BASE" >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT
if [ "$OWN_BASE" = 1 ]; then
  git -C "$ROOT" worktree add -q --detach "$BASE" "$REV"
  mkdir -p "$BASE/.build/collections/ansible_collections/mtd"
  ln -sfn ../../../.. "$BASE/.build/collections/ansible_collections/mtd/containers"
fi

one() { # tree label way round
  local tree=$1 label=$2 way=$3 round=$4 report="$OUT/$2-$3-$4.json" start end
  NAME="bench-lean-$label-$way-$round-$$"
  # shellcheck disable=SC2016  # the counter loop is expanded by the container's shell, not here
  docker_on lab-1 run -d --name "$NAME" --network none --memory 32m --label mtd.units=5 \
    127.0.0.1:5000/mtd/busybox:latest sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done' >/dev/null
  sleep 1
  local args=(-e "mtd_container=$NAME" -e mtd_source=lab-1 -e mtd_target=lab-2 -e "mtd_report=$report")
  local playbook="$tree/playbooks/migrate.yml"
  if [ "$way" = fleet ]; then
    args=(-e "bench_container=$NAME" -e bench_source=lab-1 -e bench_target=lab-2 -e "bench_report=$report")
    playbook="$ROOT/bench/lean_migrate.yml"
  fi
  start=$(date +%s.%N)
  (cd "$tree" && ANSIBLE_CONFIG="$tree/ansible.cfg" "$ROOT/.venv/bin/ansible-playbook" -i "$ROOT/lab/inventory.yml" \
      "$playbook" "${args[@]}" >"$OUT/$label-$way-$round.log" 2>&1) || { echo "  $label $way failed:"; tail -5 "$OUT/$label-$way-$round.log"; }
  end=$(date +%s.%N)
  echo "{\"wall\": $(echo "$end - $start" | bc)}" >"$OUT/$label-$way-$round.wall"
  remove_ctr; NAME=""
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order=(base head); else order=(head base); fi
  for way in standalone fleet; do
    for label in "${order[@]}"; do
      tree="$ROOT"; [ "$label" = base ] && tree="$BASE"
      echo "round $round: $label $way"
      one "$tree" "$label" "$way" "$round"
    done
  done
done
"$ROOT/.venv/bin/python" - "$OUT" "$REV" "$(git -C "$ROOT" rev-parse --short HEAD)" "$ROUNDS" <<'PYEOF'
import glob, json, os, statistics, sys
out, rev, head, rounds = sys.argv[1:5]
rows = {}
for path in glob.glob(os.path.join(out, '*.json')):
    label, way, _round = os.path.basename(path)[:-5].split('-')
    rec = json.load(open(path))
    wall = json.load(open(path[:-5] + '.wall'))['wall']
    if rec.get('state') == 'Succeeded':
        rows.setdefault((label, way), []).append((rec['duration_seconds'], rec.get('frozen_seconds'), wall))
med = lambda rs, i: statistics.median(r[i] for r in rs if r[i] is not None)
print('\nbusybox, lab-1 -> lab-2, medians of %s rounds (seconds); base = %s, head = %s\n' % (rounds, rev, head))
print('| way | base migration | head migration | head/base | base frozen | head frozen | base wall | head wall | runs |')
print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for way in ('standalone', 'fleet'):
    b, h = rows.get(('base', way), []), rows.get(('head', way), [])
    if not b or not h:
        print('| %s | (no result: base %d, head %d runs) |' % (way, len(b), len(h)))
        continue
    print('| %s | %.2f | %.2f | %.2f | %.3f | %.3f | %.2f | %.2f | %d / %d |' % (
        way, med(b, 0), med(h, 0), med(h, 0) / med(b, 0), med(b, 1), med(h, 1), med(b, 2), med(h, 2), len(b), len(h)))
PYEOF
