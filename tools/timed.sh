#!/usr/bin/env bash
# tools/timed.sh STEP COMMAND...: run COMMAND; append "STEP SECONDS STATUS" to the durations log
# (build/durations.log, or $ARC_DURATIONS), so that `make test` can print what each step cost.
set -uo pipefail
step=$1; shift
log=${ARC_DURATIONS:-$(dirname "$0")/../build/durations.log}
mkdir -p "$(dirname "$log")"
start=$(date +%s)
"$@"
status=$?
printf '%s %s %s\n' "$step" "$(( $(date +%s) - start ))" "$status" >>"$log"
exit "$status"
