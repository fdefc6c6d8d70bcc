#!/usr/bin/env bash
# Where one fleet-way migration's time goes, this tree and another one (DIR, e.g. a worktree of main), one run each:
#   bench/lean_breakdown.sh DIR
# A busybox counter on lab-1 moved to lab-2 by bench/lean_migrate.yml with the task_times callback
# (bench/callbacks): prints, per tree, the seconds of the host calls (module runs delegated to a lab host) by
# task, and the sum of the controller-local tasks. Needs the lab up; run it under the lab lock.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="$(cd "${1:?usage: bench/lean_breakdown.sh DIR}" && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mtd-breakdown.XXXXXX")"
NAME=""
docker_on() { /usr/bin/docker -H "unix:///var/lib/mtd-lab/$1/docker.sock" "${@:2}"; }
remove_ctr() { [ -z "$NAME" ] || for h in lab-1 lab-2; do docker_on "$h" rm -f "$NAME" >/dev/null 2>&1 || true; done; }
trap 'remove_ctr; rm -rf "$OUT"' EXIT
for label in base head; do
  tree="$ROOT"; [ "$label" = base ] && tree="$BASE"
  NAME="bench-bd-$label-$$"
  # shellcheck disable=SC2016  # the counter loop is expanded by the container's shell, not here
  docker_on lab-1 run -d --name "$NAME" --network none --memory 32m --label mtd.units=5 \
    127.0.0.1:5000/mtd/busybox:latest sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done' >/dev/null
  sleep 1
  (cd "$tree" && ANSIBLE_CONFIG="$tree/ansible.cfg" ANSIBLE_CALLBACK_PLUGINS="$ROOT/bench/callbacks" \
     ANSIBLE_CALLBACKS_ENABLED=task_times MTD_TASK_TIMES="$OUT/$label.jsonl" \
     "$ROOT/.venv/bin/ansible-playbook" -i "$ROOT/lab/inventory.yml" "$ROOT/bench/lean_migrate.yml" \
     -e "bench_container=$NAME" -e bench_source=lab-1 -e bench_target=lab-2 -e "bench_report=$OUT/$label.json" \
     >"$OUT/$label.log" 2>&1) || { echo "$label failed:"; tail -5 "$OUT/$label.log"; }
  remove_ctr; NAME=""
done
"$ROOT/.venv/bin/python" - "$OUT" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
for label in ('base', 'head'):
    path = os.path.join(out, label + '.jsonl')
    if not os.path.exists(path):
        continue
    rows = [json.loads(line) for line in open(path)]
    rec = json.load(open(os.path.join(out, label + '.json')))
    # the migration: from the role's first task to its last (the gathering play before it is not counted)
    start = next(i for i, r in enumerate(rows) if 'Check the inputs' in r['task'])
    rows = rows[start:]
    # a host call: a delegated task that ran (a skipped one takes a few ms)
    remote = [r for r in rows if r['delegate'] and r['action'] != 'ansible.builtin.include_tasks' and r['seconds'] >= 0.1]
    local = [r for r in rows if r not in remote]
    print('\n%s: migration %.2f s (record), frozen %.3f s; %d tasks, %d host calls %.2f s, %d local tasks %.2f s'
          % (label, rec.get('duration_seconds') or 0, rec.get('frozen_seconds') or 0, len(rows), len(remote),
             sum(r['seconds'] for r in remote), len(local), sum(r['seconds'] for r in local)))
    for r in remote:
        print('  %6.2f  %-14s %s' % (r['seconds'], r['delegate'][:14], r['task'][:100]))
PYEOF
