#!/usr/bin/env bash
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# What CRIU's network lock costs a dump and a restore of a process in its own network namespace (as a
# container with network mode none has): raw criu, no engine, no lab. A small python3 process is started
# with `unshare -n`; then, alternating, ROUNDS times each:
#   criu dump --leave-running --network-lock iptables|skip    (as runc checkpoint --leave-running dumps)
#   criu dump; criu restore -d                               (restore uses the dump's lock method)
# Prints the command's wall time and, from CRIU's log, the time from "Running network-unlock scripts" to
# the next log line (CRIU's iptables-restore that removes its lock rules).
# Usage: bash bench/network_lock_cost.sh [ROUNDS]   (root; CRIU >= 4.1 at $CRIU)
set -eu
ROUNDS=${1:-5}
CRIU=${CRIU:-/usr/local/sbin/criu}
DIR=$(mktemp -d /dev/shm/bench-netlock-XXXXXX)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
printf 'import time\nwhile True:\n    time.sleep(0.01)\n' > "$DIR/w.py"
setsid unshare -n python3 "$DIR/w.py" </dev/null >/dev/null 2>&1 &
PID=$!
sleep 0.5
[ "$(readlink /proc/$PID/ns/net)" != "$(readlink /proc/self/ns/net)" ] || { echo "the workload is not in its own netns" >&2; exit 1; }

unlock_gap() {
  python3 - "$1" <<'EOF'
import re, sys
st = [(float(m.group(1)), m.group(2).strip()) for m in
      (re.match(r'^\((\d+\.\d+)\)(.*)', line) for line in open(sys.argv[1], errors='replace')) if m]
i = [k for k, (t, s) in enumerate(st) if 'Running network-unlock scripts' in s]
gap = None
if i:
    j = i[0] + 1
    while j < len(st) and st[j][1] == 'RPC':
        j += 1
    gap = st[j][0] - st[i[0]][0] if j < len(st) else None
print('unlock %s, criu %.3f' % ('-' if gap is None else '%.3f' % gap, st[-1][0]))
EOF
}
now() { date +%s.%N; }
echo "load: $(uptime)"
for r in $(seq "$ROUNDS"); do
  for m in iptables skip; do
    rm -rf "$DIR/img"; mkdir "$DIR/img"
    t0=$(now); "$CRIU" dump --leave-running -t "$PID" -D "$DIR/img" -o dump.log -v4 --network-lock "$m"; t1=$(now)
    echo "round $r $m dump --leave-running $(echo "$t1 - $t0" | bc) s ($(unlock_gap "$DIR/img/dump.log"))"
  done
done
for r in $(seq "$ROUNDS"); do
  for m in iptables skip; do
    rm -rf "$DIR/img"; mkdir "$DIR/img"
    "$CRIU" dump -t "$PID" -D "$DIR/img" -o dump.log -v4 --network-lock "$m"
    for _ in $(seq 200); do [ -e "/proc/$PID" ] || break; sleep 0.01; done
    t0=$(now); "$CRIU" restore -d -D "$DIR/img" -o restore.log -v4; t1=$(now)
    echo "round $r $m restore -d $(echo "$t1 - $t0" | bc) s ($(unlock_gap "$DIR/img/restore.log"))"
  done
done
echo "load: $(uptime)"
