#!/usr/bin/env bash
# What the encryption of the transfer costs: stop-and-copy migrations (path "ours" of bench/migrate_bench.py)
# with migrate_transfer_encryption=tls (the default) and =none, side by side in one run on the same lab:
#   bench/encryption_cost.sh [ROUNDS] [SIZE_MB ...]
# Each round runs one migration per size and mode, alternating which mode goes first. Prints the median
# downtime, total, transfer seconds and transfer throughput per size and mode (and the ratio tls / none), with
# the machine's description; writes nothing to RESULTS.md (paste the printed table there). Needs the lab up.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-3}"
shift || true
SIZES=("${@:-256}")
[ "${#SIZES[@]}" -gt 0 ] || SIZES=(256)
[ -f "$ROOT/lab/inventory.yml" ] || { echo "the lab is not up: run lab/lab.sh up" >&2; exit 1; }
OUT="$(mktemp -d "${TMPDIR:-/tmp}/mtd-encryption.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

run() { # mode round
  (cd "$ROOT" && PYTHONPATH="$ROOT/.build/collections" ANSIBLE_CONFIG="$ROOT/ansible.cfg" "$ROOT/.venv/bin/python" \
      bench/migrate_bench.py --sizes "${SIZES[@]}" --paths ours --repeat 1 --no-results \
      --ours-var "migrate_transfer_encryption=$1" --ours-var migrate_transfer_compression=none \
      --json "$OUT/$1-$2.json" >"$OUT/$1-$2.log" 2>&1) || { echo "run $1 round $2 failed:"; tail -20 "$OUT/$1-$2.log"; }
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order=(tls none); else order=(none tls); fi
  for mode in "${order[@]}"; do
    echo "round $round: $mode"
    run "$mode" "$round"
  done
done
"$ROOT/.venv/bin/python" - "$OUT" <<'PYEOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs, machine = {}, None
for path in sorted(glob.glob(os.path.join(out, '*.json'))):
    mode = os.path.basename(path).split('-')[0]
    data = json.load(open(path))
    machine = machine or data.get('machine')
    for sample in data.get('samples', []):
        if 'downtime' in sample:
            runs.setdefault((sample['mb'] if 'mb' in sample else sample.get('size'), mode), []).append(sample)
if machine:
    print('\nMachine: %(nproc)s CPUs (%(cpu)s), %(memory)s RAM, kernel %(kernel)s; Docker %(docker)s; %(date)s' % machine)
print('\nMedians of the rounds; compression none (the bytes on the wire are the bundle), lab-1 -> lab-2.\n')
print('| MB | encryption | downtime s | total s | transfer s | transfer MB/s | checkpoint.send s | runs |')
print('|---:|---|---:|---:|---:|---:|---:|---:|')
med = lambda rs, key: statistics.median(r[key] for r in rs if r.get(key) is not None)
phase = lambda rs, key: statistics.median(r['report_phases'][key] for r in rs if key in r.get('report_phases', {}))
for size in sorted(set(k[0] for k in runs)):
    row = {}
    for mode in ('none', 'tls'):
        rs = runs.get((size, mode), [])
        if not rs:
            print('| %s | %s | (no result) |' % (size, mode))
            continue
        row[mode] = (med(rs, 'downtime'), med(rs, 'total'), phase(rs, 'transfer.seconds'),
                     phase(rs, 'transfer.throughput_mb_s'), phase(rs, 'checkpoint.send'))
        print('| %s | %s | %.3f | %.2f | %.3f | %.0f | %.3f | %d |' % ((size, mode) + row[mode] + (len(rs),)))
    if len(row) == 2:
        ratio = [t / n if n else float('nan') for t, n in zip(row['tls'], row['none'])]
        print('| %s | tls / none | %.2f | %.2f | %.2f | %.2f | %.2f | |' % ((size,) + tuple(ratio)))
PYEOF
