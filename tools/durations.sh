#!/usr/bin/env bash
# tools/durations.sh [LOG]: what each step of `make test` took (a step's lines are summed), and
# the wall time from the first step's start to now.
set -euo pipefail
log=${1:-${ARC_DURATIONS:-$(dirname "$0")/../build/durations.log}}
[ -f "$log" ] || { echo "durations: no log at $log"; exit 0; }
echo "Step durations (seconds; the host lanes run side by side):"
awk '{ total[$1] += $2; if (!($1 in order)) { order[$1] = n++; names[n - 1] = $1 } }
     END { for (i = 0; i < n; i++) printf "  %-22s %6d\n", names[i], total[names[i]] }' "$log"
start=$(stat -c %Y "$log.start" 2>/dev/null || echo 0)
[ "$start" -gt 0 ] && printf '  %-22s %6d\n' "wall time" "$(( $(date +%s) - start ))"
exit 0
