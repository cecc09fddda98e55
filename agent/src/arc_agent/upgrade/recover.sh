#!/bin/sh
# Put back the version an upgrade came from when that upgrade was cut short (docs/agent-upgrade.md):
# a power loss, a kill -9. Installed as /opt/azcmagent/recover (outside every version, so that it
# runs whatever the current version is). systemd runs it before himds and extd start
# (ExecStartPre) and after an upgrade's own unit ends (ExecStopPost). It does nothing when no
# upgrade is pending, or while the upgrade runs (its process, in this boot, is alive): then the
# upgrade's own health checks decide.
set -u
prefix=${AZCMAGENT_PREFIX:-/opt/azcmagent}
status_file=${AZCMAGENT_UPGRADE_STATUS:-/var/opt/azcmagent/upgrade-status.json}
pending="$prefix/upgrade.pending"
[ -f "$pending" ] || exit 0
value() { sed -n "s/^$1=//p" "$pending" | head -n 1; }
pid=$(value pid)
if [ "$(value boot)" = "$(cat /proc/sys/kernel/random/boot_id)" ] && [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    started=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)
    [ "$started" = "$(value pidstart)" ] && exit 0
fi
from=$(value from)
to=$(value to)
previous=$(value previous)
case "$from" in '' | */* | .*) echo "recover: $pending names no version to go back to" >&2; exit 1 ;; esac
[ -d "$prefix/versions/$from" ] || { echo "recover: $prefix/versions/$from is gone" >&2; exit 1; }
relink() { ln -sfn "$2" "$prefix/.$1.recover" && mv -T "$prefix/.$1.recover" "$prefix/$1"; }
relink current "versions/$from"
if [ -n "$previous" ] && [ "$previous" != "$from" ] && [ -d "$prefix/versions/$previous" ]; then
    relink previous "versions/$previous"
else
    rm -f "$prefix/previous"
fi
case "$to" in '' | */* | .*) ;; *) [ "$to" = "$from" ] || [ "$to" = "$previous" ] || rm -rf "$prefix/versions/$to" ;; esac
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$(dirname "$status_file")"
# the correlation id is a GUID (the CLI checks it); anything else is left out
correlation=$(value correlation | tr -cd '0-9a-fA-F-' | cut -c1-36)
printf '{"lastAttemptDesiredVersion": "%s", "lastAttemptStatus": "Failed", "lastAttemptMessage": "%s", "lastAttemptTimestamp": "%s", "correlationId": "%s"}\n' \
    "$(value version)" "the upgrade to $(value version) was cut short (the machine stopped or the upgrade was killed); $from was put back" \
    "$now" "$correlation" > "$status_file.new" && mv "$status_file.new" "$status_file"
services=$(value services)
rm -f "$pending"
sync
echo "recover: the upgrade to $to was cut short; $from is current again" >&2
if [ -z "${AZCMAGENT_RECOVER_NO_START:-}" ]; then
    for unit in $services; do systemctl --no-block start "$unit"; done
fi
exit 0
