#!/usr/bin/env bash
# make demo: bring the local lab up, start sample workloads, mark web-1 as attacked, show the plan, then
# run the fleet's defense: every due container is live-migrated to a host with a different OS.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
DOCKER=/usr/bin/docker
OUT="$ROOT/.build/demo"
mkdir -p "$OUT"
rm -f "$OUT"/*.json

bash lab/lab.sh up
echo
echo "=== sample workloads (web-1 on lab-1 will be marked as attacked)"
ansible-playbook lab/demo/workloads.yml >/dev/null
echo "started: web-1, db-1 on lab-1; web-2 on lab-2; worker-1 on lab-3; cache-1 on lab-4"
echo
echo "=== plan: when and where each container moves"
ansible-playbook playbooks/plan.yml -e @lab/demo/plan-vars.yml -e mtd_plan_report="$OUT/plan.json"

before=$("$DOCKER" -H unix:///var/lib/mtd-lab/lab-1/docker.sock exec web-1 tail -n 1 /data/counter.log)
echo
echo "=== defend: live-migrate the due containers (web-1's counter is at $before before the move)"
ansible-playbook playbooks/defend.yml -e @lab/demo/plan-vars.yml \
  -e '{"mtd_defend_reference": [6, 8, 10], "mtd_defend_delta_t": 3, "mtd_defend_attacked": ["lab-1/web-1"]}' \
  -e mtd_defend_report="$OUT/defend.json" -e '{"mtd_defend_health_cmd": ["true"]}'

echo
echo "=== web-1's state after the move"
python3 - "$OUT/defend.json" <<'PYEOF'
import json, subprocess, sys
report = json.load(open(sys.argv[1]))
for m in report['migrations']:
    if m['name'] != 'web-1':
        continue
    sock = 'unix:///var/lib/mtd-lab/%s/docker.sock' % m['target']
    values = [int(x) for x in subprocess.run(['/usr/bin/docker', '-H', sock, 'exec', 'web-1', 'cat', '/data/counter.log'],
                                             capture_output=True, text=True, check=True).stdout.split()]
    consecutive = values == list(range(1, len(values) + 1))
    print('web-1 moved %s (%s %s) -> %s (%s %s): %s, frozen %.2f s' % (
        m['source'], m['source_os'].get('id'), m['source_os'].get('version_id'),
        m['target'], m['target_os'].get('id'), m['target_os'].get('version_id'), m['state'], m['frozen_seconds']))
    print('its counter file on %s holds 1..%d, %s' % (m['target'], values[-1],
          'every value once, in order: state intact' if consecutive else 'WITH GAPS OR REPEATS'))
PYEOF

# The moving target moves on: web-1 again, now with post-copy (its memory follows after the resume).
now=$(python3 -c 'import json, sys; print([m["target"] for m in json.load(open(sys.argv[1]))["migrations"] if m["name"] == "web-1"][0])' "$OUT/defend.json")
echo
echo "=== post-copy: move web-1 on from $now (migrate_memory=lazy: it resumes at once, its memory follows)"
ansible-playbook playbooks/migrate.yml -e mtd_container=web-1 -e mtd_source="$now" -e migrate_memory=lazy \
  -e mtd_report="$OUT/web-1-lazy.json" -e '{"mtd_health_cmd": ["true"]}' | sed -n '/"msg": \[/,/^    \]/p'
python3 - "$OUT/web-1-lazy.json" <<'PYEOF'
import json, subprocess, sys
m = json.load(open(sys.argv[1]))
sock = 'unix:///var/lib/mtd-lab/%s/docker.sock' % m['target']
values = [int(x) for x in subprocess.run(['/usr/bin/docker', '-H', sock, 'exec', 'web-1', 'cat', '/data/counter.log'],
                                         capture_output=True, text=True, check=True).stdout.split()]
print('web-1 now runs on %s: %s, frozen %.2f s; its counter file holds 1..%d, %s' % (
    m['target'], m['state'], m['frozen_seconds'], values[-1],
    'every value once, in order: state intact' if values == list(range(1, len(values) + 1)) else 'WITH GAPS OR REPEATS'))
PYEOF

echo
echo "demo: reports in .build/demo/; the lab stays up (make lab-down removes it)"
