# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The hybridops.arc.upgrade playbook's decisions and summary, from what each host's
# hybridops.arc.agent_upgrade returned (docs/playbooks.md, "upgrade").


def _results(hostvars, hosts):
    return [(host, (hostvars.get(host) or {}).get("__arc_upgrade")) for host in hosts]


def upgrade_halted(hostvars, hosts, max_fail_percentage):
    """Why the rollout stops before the next batch ("" to go on): the hosts upgraded so far (those
    of ``hosts`` with a result) failed beyond ``max_fail_percentage``."""
    done = [(host, result) for host, result in _results(hostvars, hosts) if isinstance(result, dict)]
    failed = [(host, result) for host, result in done if result.get("failed")]
    if not done or len(failed) * 100 <= int(max_fail_percentage) * len(done):
        return ""
    host, result = failed[0]
    return "%d of %d hosts upgraded so far failed (more than %s%%), %s first: %s" % (
        len(failed),
        len(done),
        max_fail_percentage,
        host,
        result.get("msg") or "no message",
    )


def upgrade_summary(hostvars, hosts, versions, halted=""):
    """Hosts per version before and after, the hosts that failed with their reason, and those the
    rollout did not reach. ``versions`` maps each host to the version it runs now."""
    before, after, failed, not_reached = {}, {}, {}, []
    for host, result in _results(hostvars, hosts):
        now = str((versions or {}).get(host) or "unknown")
        if isinstance(result, dict):
            was = str(result.get("version_before") or now)
            if result.get("failed"):
                failed[host] = result.get("msg") or "no message"
        else:
            was = now
            not_reached.append(host)
        before[was] = before.get(was, 0) + 1
        after[now] = after.get(now, 0) + 1
    return dict(
        before=dict(sorted(before.items())),
        after=dict(sorted(after.items())),
        failed=failed,
        not_reached=sorted(not_reached),
        halted=halted if not_reached else "",
    )


class FilterModule:
    def filters(self):
        return {"upgrade_halted": upgrade_halted, "upgrade_summary": upgrade_summary}
