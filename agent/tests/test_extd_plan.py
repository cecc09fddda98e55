"""The extension service's decisions (arc_agent.extd.plan): goal state and records in, steps out."""

from __future__ import annotations

from typing import Any

import pytest

from arc_agent.extd.plan import (
    DOWNLOAD,
    ENABLE,
    FORGET,
    INSTALL,
    REFUSE,
    REMOVE,
    REPORT,
    SETTINGS,
    UPDATE,
    Goal,
    Installed,
    Policy,
    plan,
    plan_extension,
)

PACKAGE = {
    "version": "2.1.0",
    "sha256": "a" * 64,
    "size": 10,
    "uri": "https://cp/p",
    "signatureUri": "https://cp/p/s",
}


def goal(sequence: int = 1, state: str = "enabled", version: str = "2.1.0", **changes: Any) -> Goal:
    entry = {
        "name": "script",
        "publisher": "Microsoft.Azure.Extensions",
        "type": "CustomScript",
        "sequenceNumber": sequence,
        "state": state,
        "package": {**PACKAGE, "version": version} if version else {},
        "settings": {"commandToExecute": "date"},
        "protectedSettings": "",
        "protectedSettingsCertThumbprint": "",
        **changes,
    }
    return Goal.from_wire(entry)


def installed(
    sequence: int = 1, version: str = "2.1.0", status: str = "success", **changes: Any
) -> Installed:
    values: dict[str, Any] = {
        "name": "script",
        "publisher": "Microsoft.Azure.Extensions",
        "type": "CustomScript",
        "version": version,
        "sequence": sequence,
        "status": status,
        "reported": True,
        **changes,
    }
    return Installed(**values)


def verbs(steps: list[Any]) -> list[str]:
    return [step.verb for step in steps]


def test_a_new_extension_is_downloaded_installed_configured_enabled_and_reported() -> None:
    steps = plan_extension(goal(), None, Policy())
    assert verbs(steps) == [DOWNLOAD, INSTALL, SETTINGS, ENABLE, REPORT]
    assert steps[0].details["package"] == PACKAGE
    assert steps[1].details == {"version": "2.1.0"} and steps[2].details == {"sequence": 1}


def test_a_sequence_number_handled_already_is_not_run_again_only_reported_if_needed() -> None:
    assert plan_extension(goal(), installed(), Policy()) == []
    assert verbs(plan_extension(goal(), installed(reported=False), Policy())) == [REPORT]
    assert verbs(plan_extension(goal(), installed(status="error", reported=False), Policy())) == [REPORT]


def test_new_settings_enable_again_and_a_new_version_updates() -> None:
    assert verbs(plan_extension(goal(sequence=2), installed(), Policy())) == [SETTINGS, ENABLE, REPORT]
    steps = plan_extension(goal(sequence=3, version="2.2.0"), installed(sequence=2), Policy())
    assert verbs(steps) == [DOWNLOAD, UPDATE, SETTINGS, ENABLE, REPORT]
    assert steps[1].details == {"from": "2.1.0", "version": "2.2.0"}


def test_a_deleted_extension_is_removed_and_one_no_longer_wanted_is_removed_and_forgotten() -> None:
    assert verbs(plan_extension(goal(sequence=2, state="deleted"), installed(), Policy())) == [REMOVE, REPORT]
    assert verbs(plan_extension(goal(sequence=2, state="deleted"), None, Policy())) == [REPORT]
    assert verbs(plan_extension(None, installed(), Policy())) == [REMOVE, FORGET]
    assert plan_extension(None, None, Policy()) == []


def test_an_interrupted_or_failed_install_is_done_again_from_the_start() -> None:
    crashed = installed(sequence=1, status="transitioning")
    assert verbs(plan_extension(goal(), crashed, Policy())) == [DOWNLOAD, INSTALL, SETTINGS, ENABLE, REPORT]
    failed = installed(sequence=1, status="error", handler_state="NotInstalled")
    assert verbs(plan_extension(goal(sequence=2), failed, Policy())) == [
        DOWNLOAD,
        INSTALL,
        SETTINGS,
        ENABLE,
        REPORT,
    ]


@pytest.mark.parametrize(
    "policy, says",
    [
        (Policy(enabled=False), "extensions.enabled is false"),
        (
            Policy(blocklist=("microsoft.azure.extensions/customscript",)),
            "is blocked on this machine (extensions.blocklist)",
        ),
        (Policy(allowlist=("Contoso/Other",)), "extensions.allowlist does not list it"),
        (Policy(allowlist=("Allow/None",)), "extensions.allowlist is Allow/None"),
        (
            Policy(
                allowlist=("Microsoft.Azure.Extensions/CustomScript",),
                blocklist=("Microsoft.Azure.Extensions/CustomScript",),
            ),
            "extensions.blocklist",
        ),
    ],
)
def test_local_policy_refuses_installs_and_updates_naming_the_setting(policy: Policy, says: str) -> None:
    for record in (None, installed(), installed(version="2.0.0")):
        steps = plan_extension(goal(sequence=2), record, policy)
        assert verbs(steps) == [REFUSE, REPORT], steps
        assert says in steps[0].details["message"]
        assert "azcmagent config set" in steps[0].details["message"]
    # removal is always allowed
    assert verbs(plan_extension(goal(sequence=2, state="deleted"), installed(), policy)) == [REMOVE, REPORT]


def test_no_package_to_install_is_refused_naming_the_extension() -> None:
    steps = plan_extension(goal(version=""), None, Policy())
    assert verbs(steps) == [REFUSE, REPORT]
    assert "Microsoft.Azure.Extensions.CustomScript" in steps[0].details["message"]


def test_the_whole_goal_state_is_planned_by_name_without_regard_to_case() -> None:
    other = Goal.from_wire({
        "name": "monitor", "publisher": "Microsoft.Azure.Monitor", "type": "AzureMonitorLinuxAgent",
        "sequenceNumber": 1, "state": "enabled", "package": PACKAGE,
    })  # fmt: skip
    steps = plan([goal(), other], {"SCRIPT": installed(), "old": installed(name="old")}, Policy())
    assert sorted(steps) == ["monitor", "old"]
    assert verbs(steps["old"]) == [REMOVE, FORGET]
