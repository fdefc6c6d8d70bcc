#!/usr/bin/env bash
# make demo: bring the local lab up, start sample workloads, mark one as attacked and run the plan.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
bash lab/lab.sh up
echo
echo "=== sample workloads (web-1 on lab-1 will be marked as attacked)"
ansible-playbook lab/demo/workloads.yml
echo
echo "=== plan: when and where each container moves"
ansible-playbook playbooks/plan.yml -e @lab/demo/plan-vars.yml -e mtd_plan_report="$ROOT/.build/demo-plan.json"
echo
echo "demo: plan written to .build/demo-plan.json; the lab stays up (make lab-down removes it)"
