#!/usr/bin/env bash
# make demo: the control plane up on the test network, three real hosts up, the agent
# installed on them with the arc_agent role, and what each host runs printed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
hosts=$top/tests/hosts/testhosts.sh
n=${DEMO_HOSTS:-3}
step() { printf '\n==> %s\n' "$*"; }

step "Starting $n test hosts (Debian, systemd as PID 1, each in its own network namespace)"
"$hosts" up "$n"
step "Starting the control plane on the controller side of the test network"
"$hosts" controlplane start
inventory=$("$hosts" inventory)
report=$(mktemp)
trap 'rm -f "$report"' EXIT
step "Installing the agent runtime with the hybridops.arc.arc_agent role"
ARC_DEMO_URL=$("$hosts" controlplane url) ARC_DEMO_CA=$("$hosts" controlplane ca) ARC_DEMO_REPORT=$report \
  ANSIBLE_PIPELINING=true ANSIBLE_HOST_KEY_CHECKING=false \
  ansible-playbook -i "$inventory" "$top/tools/demo/site.yml"

step "What each host runs"
printf '%-6s %-14s %-20s %s\n' HOST ADDRESS AGENT "CONTROL PLANE (HTTPS)"
while IFS=$'\t' read -r host addr version health; do
  printf '%-6s %-14s %-20s %s\n' "$host" "$addr" "$version" "$health"
done <"$report"
cat <<MSG

Done: control plane at $("$hosts" controlplane url) (CA: $("$hosts" controlplane ca)),
$n hosts in $inventory, agent runtime installed on each.
Log in:     ssh -i $("$hosts" key) -o ProxyCommand='$hosts ctl socat - TCP:%h:%p' root@$("$hosts" hosts-json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
Stop it:    make test-hosts-down
MSG
