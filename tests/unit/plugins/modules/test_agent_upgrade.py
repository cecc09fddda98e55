# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# hybridops.arc.agent_upgrade against a scripted azcmagent (the boundary): which commands run, in
# which order, in check mode and for real; refusals before anything changes; a failed health check.

from ansible_collections.hybridops.arc.plugins.modules import agent_upgrade

OLD = "1.64.3414.2961"
NEW = "1.66.3600.1"
CHECK = ["upgrade", "--version", "1.66", "--check"]
UPGRADE = ["upgrade", "--timeout", "60", "--version", NEW]


def test_an_upgrade_from_the_store_runs_checked_and_reports_both_versions(agent, run_module):
    agent.expect(["version"], {"version": OLD}).expect(CHECK, {"changed": True, "from": OLD, "to": NEW})
    agent.expect(UPGRADE, {"changed": True, "from": OLD, "to": NEW}).expect(["version"], {"version": NEW})
    out = run_module(agent_upgrade, dict(version="1.66"), diff=True)
    assert not out.failed, out.result
    assert agent.commands() == [["version"], CHECK, UPGRADE, ["version"]]
    assert out.result["changed"] is True
    assert (out.result["version_before"], out.result["version_after"], out.result["health"]) == (
        OLD,
        NEW,
        "passed",
    )
    assert out.result["diff"] == {"before": {"version": OLD}, "after": {"version": NEW}}


def test_check_mode_asks_the_store_and_changes_nothing(agent, run_module):
    agent.expect(["version"], {"version": OLD}).expect(CHECK, {"changed": True, "from": OLD, "to": NEW})
    out = run_module(agent_upgrade, dict(version="1.66"), check_mode=True)
    assert agent.commands() == [["version"], CHECK]
    assert out.result["changed"] is True and out.result["version_after"] == NEW


def test_the_version_running_already_is_no_change(agent, run_module):
    agent.expect(["version"], {"version": NEW}).expect(CHECK, {"changed": False, "from": NEW, "to": NEW})
    out = run_module(agent_upgrade, dict(version="1.66"))
    assert agent.commands() == [["version"], CHECK]
    assert out.result["changed"] is False and out.result["health"] == "not run"


def test_a_downgrade_is_refused_unless_allowed(agent, run_module):
    check = ["upgrade", "--version", OLD, "--check"]
    agent.expect(["version"], {"version": NEW}).expect(check, {"changed": True, "from": NEW, "to": OLD})
    out = run_module(agent_upgrade, dict(version=OLD))
    assert out.failed and "a downgrade, refused; set allow_downgrade: true" in out.result["msg"]
    assert agent.commands() == [["version"], check]
    agent.expect(["version"], {"version": NEW}).expect(check, {"changed": True, "from": NEW, "to": OLD})
    back = ["upgrade", "--timeout", "60", "--version", OLD]
    agent.expect(back, {"changed": True}).expect(["version"], {"version": OLD})
    out = run_module(agent_upgrade, dict(version=OLD, allow_downgrade=True))
    assert not out.failed and out.result["version_after"] == OLD


def test_a_version_the_store_lacks_fails_naming_it(agent, run_module):
    agent.expect(["version"], {"version": OLD})
    agent.fail(CHECK, "AZCM0080", "the control plane publishes no agent 1.66 for this machine (cp311-x86_64)")
    out = run_module(agent_upgrade, dict(version="1.66"))
    assert out.failed and out.result["code"] == "AZCM0080"
    assert "publishes no agent 1.66" in out.result["msg"] and "the host keeps %s" % OLD in out.result["msg"]
    assert out.result["changed"] is False


def test_a_failed_health_check_fails_with_the_host_on_its_version(agent, run_module):
    agent.expect(["version"], {"version": OLD}).expect(CHECK, {"changed": True, "from": OLD, "to": NEW})
    said = "the upgrade to %s failed its health check: himds does not answer; %s runs again" % (NEW, OLD)
    agent.fail(UPGRADE, "AZCM0080", said).expect(["version"], {"version": OLD})
    out = run_module(agent_upgrade, dict(version="1.66"))
    assert out.failed and out.result["code"] == "AZCM0080" and said in out.result["msg"]
    assert out.result["changed"] is False
    assert (out.result["version_after"], out.result["health"]) == (OLD, said)


def test_without_waiting_the_upgrade_runs_in_the_background(agent, run_module):
    agent.expect(["version"], {"version": OLD}).expect(CHECK, {"changed": True, "from": OLD, "to": NEW})
    started = ["upgrade", "--timeout", "120", "--background", "--version", NEW]
    agent.expect(started, {"changed": True, "background": True})
    out = run_module(agent_upgrade, dict(version="1.66", wait=False, timeout=120))
    assert agent.commands() == [["version"], CHECK, started]
    assert out.result["health"] == "started" and out.result["changed"] is True


def test_a_package_from_the_controller_is_installed_from_where_the_action_put_it(agent, run_module):
    args = dict(source="controller", src="/tmp/x/a.tar.gz", checksum="ab" * 32, package_version=NEW)
    agent.expect(["version"], {"version": OLD})
    package = ["upgrade", "--timeout", "60", "--package", "/tmp/x/a.tar.gz", "--sha256", "ab" * 32]
    agent.expect(package, {"changed": True}).expect(["version"], {"version": NEW})
    out = run_module(agent_upgrade, args)
    assert agent.commands() == [["version"], package, ["version"]]
    assert out.result["version_after"] == NEW
    agent.expect(["version"], {"version": OLD})
    out = run_module(agent_upgrade, dict(args, version="1.67"))
    assert out.failed and "the bundle holds agent %s, not 1.67" % NEW in out.result["msg"]


def test_bad_arguments_fail_before_any_command(agent, run_module):
    out = run_module(agent_upgrade, dict(version="1.66", timeout=0))
    assert out.failed and "timeout must be 1 to 3600" in out.result["msg"]
    agent.expect(["version"], {"version": OLD})
    out = run_module(agent_upgrade, dict())
    assert out.failed and "version is required with source=control_plane" in out.result["msg"]


def test_a_host_without_the_agent_fails_naming_the_fix(no_agent, run_module):
    out = run_module(agent_upgrade, dict(version="1.66"))
    assert out.failed and "install the agent first" in out.result["msg"]


def test_a_password_in_the_bundle_url_is_refused_before_anything_is_fetched(agent, run_module):
    agent.expect(["version"], {"version": OLD})
    out = run_module(agent_upgrade, dict(source="url", bundle_url="https://ops:s3cret@files.example/agent/"))
    assert out.failed and "give it in url_username and url_password" in out.result["msg"]
    assert "s3cret" not in str(out.result)
