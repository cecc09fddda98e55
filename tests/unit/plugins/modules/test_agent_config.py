# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest
from ansible_collections.hybridops.arc.plugins.modules import agent_config

DEFAULTS = {
    "config.mode": "full",
    "connection.type": "direct",
    "controlplane.cafile": "",
    "controlplane.url": "",
    "extensions.agent.cpulimit": 5,
    "extensions.allowlist": [],
    "extensions.blocklist": [],
    "extensions.enabled": True,
    "guestconfiguration.agent.cpulimit": 5,
    "guestconfiguration.enabled": True,
    "incomingconnections.enabled": True,
    "incomingconnections.ports": [],
    "proxy.bypass": [],
    "proxy.url": "",
}
LIST = ["config", "list"]


def listing(**changed):
    values = dict(DEFAULTS)
    values.update(dict((k.replace("__", "."), v) for k, v in changed.items()))
    return {"localsettings": [{"key": k, "value": values[k]} for k in sorted(values)]}


def info():
    return {
        "properties": [
            {"key": k, "type": "x", "default": v, "allowed": "", "description": ""}
            for k, v in DEFAULTS.items()
        ]
    }


def test_sets_only_what_differs(agent, run_module):
    current = dict(incomingconnections__ports=["22"], proxy__url="http://proxy:3128")
    agent.expect(LIST, listing(**current))
    agent.expect(
        ["config", "set", "extensions.enabled", "false"], {"key": "extensions.enabled", "value": False}
    )
    agent.expect(
        ["config", "set", "incomingconnections.ports", "22,80"],
        {"key": "incomingconnections.ports", "value": ["22", "80"]},
    )
    agent.expect(
        LIST,
        listing(
            extensions__enabled=False, incomingconnections__ports=["22", "80"], proxy__url="http://proxy:3128"
        ),
    )
    settings = {
        "proxy.url": "http://proxy:3128",
        "Incomingconnections.Ports": [22, 80],
        "extensions.enabled": False,
        "config.mode": "FULL",
        "extensions.agent.cpulimit": "5",
    }
    out = run_module(agent_config, {"settings": settings}, diff=True)
    assert not out.failed
    assert agent.commands()[1:3] == [
        ["config", "set", "extensions.enabled", "false"],
        ["config", "set", "incomingconnections.ports", "22,80"],
    ]
    for call in agent.calls:
        assert call["env"]["LC_ALL"] == "C"
        assert call["config"] is None
    result = out.result
    assert result["changed"] is True
    assert result["changes"] == {
        "extensions.enabled": {"before": True, "after": False},
        "incomingconnections.ports": {"before": ["22"], "after": ["22", "80"]},
    }
    assert result["config"]["incomingconnections.ports"] == ["22", "80"]
    assert result["diff"]["before"]["incomingconnections.ports"] == ["22"]
    assert result["diff"]["after"]["extensions.enabled"] is False


def test_nothing_differs_runs_only_list(agent, run_module):
    agent.expect(
        LIST, listing(incomingconnections__ports=["80", "22"], extensions__allowlist=["Microsoft.A/B"])
    )
    settings = {
        "incomingconnections.ports": ["22", "80", "22"],
        "extensions.allowlist": ["microsoft.a/b"],
        "incomingconnections.enabled": "True",
    }
    out = run_module(agent_config, {"settings": settings})
    assert out.result["changed"] is False
    assert out.result["changes"] == {}
    assert agent.commands() == [LIST]


def test_check_mode_predicts_without_setting(agent, run_module):
    agent.expect(LIST, listing())
    out = run_module(
        agent_config,
        {"settings": {"incomingconnections.ports": [22], "extensions.agent.cpulimit": 20}},
        check_mode=True,
    )
    assert agent.commands() == [LIST]
    assert out.result["changed"] is True
    assert out.result["changes"]["incomingconnections.ports"] == {"before": [], "after": ["22"]}
    assert out.result["config"]["extensions.agent.cpulimit"] == 20


def test_list_add_and_remove_keep_the_other_entries(agent, run_module):
    agent.expect(LIST, listing(extensions__blocklist=["Pub.A/One", "Pub.B/Two"]))
    agent.expect(
        ["config", "set", "extensions.blocklist", "Pub.B/Two,Pub.C/Three"],
        {"key": "extensions.blocklist", "value": ["Pub.B/Two", "Pub.C/Three"]},
    )
    agent.expect(LIST, listing(extensions__blocklist=["Pub.B/Two", "Pub.C/Three"]))
    settings = {
        "extensions.blocklist": {"add": ["pub.b/two", "Pub.C/Three"], "remove": ["PUB.A/ONE", "Not/There"]}
    }
    out = run_module(agent_config, {"settings": settings})
    assert out.result["changes"] == {
        "extensions.blocklist": {"before": ["Pub.A/One", "Pub.B/Two"], "after": ["Pub.B/Two", "Pub.C/Three"]}
    }


def test_list_add_already_there_is_no_change(agent, run_module):
    agent.expect(LIST, listing(incomingconnections__ports=["22"]))
    out = run_module(
        agent_config, {"settings": {"incomingconnections.ports": {"add": [22], "remove": [443]}}}
    )
    assert out.result["changed"] is False
    assert agent.commands() == [LIST]


def test_empty_list_replaces_with_an_empty_value(agent, run_module):
    agent.expect(LIST, listing(proxy__bypass=["AAD"]))
    agent.expect(["config", "set", "proxy.bypass", ""], {"key": "proxy.bypass", "value": []})
    agent.expect(LIST, listing())
    out = run_module(agent_config, {"settings": {"proxy.bypass": []}})
    assert out.result["changes"] == {"proxy.bypass": {"before": ["AAD"], "after": []}}


def test_absent_clears_what_is_not_default(agent, run_module):
    agent.expect(LIST, listing(proxy__url="http://proxy:3128"))
    agent.expect(["config", "info"], info())
    agent.expect(["config", "clear", "proxy.url"], {"key": "proxy.url", "value": ""})
    agent.expect(LIST, listing())
    out = run_module(agent_config, {"state": "absent", "settings": {"proxy.url": None, "proxy.bypass": None}})
    assert agent.commands()[2] == ["config", "clear", "proxy.url"]
    assert out.result["changed"] is True
    assert out.result["changes"] == {"proxy.url": {"before": "http://proxy:3128", "after": ""}}


def test_absent_in_check_mode_never_clears(agent, run_module):
    agent.expect(LIST, listing(proxy__url="http://proxy:3128")).expect(["config", "info"], info())
    out = run_module(agent_config, {"state": "absent", "settings": {"proxy.url": None}}, check_mode=True)
    assert agent.commands() == [LIST, ["config", "info"]]
    assert out.result["changed"] is True
    assert out.result["config"]["proxy.url"] == ""


def test_bad_value_fails_with_the_agent_code(agent, run_module):
    agent.expect(LIST, listing())
    agent.fail(
        ["config", "set", "proxy.url", "ftp://nope"],
        "AZCM0023",
        "proxy.url: 'ftp://nope' is not http://HOST[:PORT]",
    )
    out = run_module(agent_config, {"settings": {"proxy.url": "ftp://nope"}})
    assert out.failed
    assert out.result["code"] == "AZCM0023"
    assert out.result["changed"] is False
    assert out.result["msg"] == (
        "azcmagent config set proxy.url failed for the local settings of this machine: "
        "AZCM0023: proxy.url: 'ftp://nope' is not http://HOST[:PORT]"
    )


def test_failure_after_earlier_changes_sets_them_back(agent, run_module):
    agent.expect(LIST, listing())
    agent.expect(["config", "set", "config.mode", "monitor"], {"key": "config.mode", "value": "monitor"})
    agent.fail(["config", "set", "proxy.url", "bad"], "AZCM0023", "bad")
    # monitor mode also turned guest configuration off: both go back, the mode first
    agent.expect(LIST, listing(config__mode="monitor", guestconfiguration__enabled=False))
    agent.expect(["config", "set", "config.mode", "full"], {"key": "config.mode", "value": "full"})
    agent.expect(
        ["config", "set", "guestconfiguration.enabled", "true"],
        {"key": "guestconfiguration.enabled", "value": True},
    )
    out = run_module(agent_config, {"settings": {"config.mode": "monitor", "proxy.url": "bad"}})
    assert out.failed
    assert out.result["code"] == "AZCM0023"
    assert out.result["changed"] is False
    assert out.result["changes"] == {}
    assert out.result["msg"].endswith(
        "AZCM0023: bad; set back what had changed before it: config.mode, guestconfiguration.enabled"
    )
    assert agent.script == []


def test_failure_reports_what_could_not_be_set_back(agent, run_module):
    agent.expect(LIST, listing())
    agent.expect(
        ["config", "set", "extensions.enabled", "false"], {"key": "extensions.enabled", "value": False}
    )
    agent.fail(["config", "set", "proxy.url", "bad"], "AZCM0023", "bad")
    agent.expect(LIST, listing(extensions__enabled=False))
    agent.fail(["config", "set", "extensions.enabled", "true"], "AZCM0069", "disk full")
    out = run_module(agent_config, {"settings": {"extensions.enabled": False, "proxy.url": "bad"}})
    assert out.failed
    assert out.result["changed"] is True
    assert out.result["changes"] == {"extensions.enabled": {"before": True, "after": False}}
    assert out.result["msg"].endswith("; could not set back, still changed: extensions.enabled")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"no.such.key": "x"}, "unknown setting no.such.key; the agent's settings are: config.mode"),
        ({"proxy.url": ["a"]}, "proxy.url is not a list"),
        ({"incomingconnections.ports": {"append": [1]}}, "takes the keys add and remove, not append"),
    ],
)
def test_settings_the_module_cannot_apply_fail_before_any_change(agent, run_module, settings, message):
    agent.expect(LIST, listing())
    out = run_module(agent_config, {"settings": settings})
    assert out.failed
    assert message in out.result["msg"]
    assert agent.commands() == [LIST]


def test_null_puts_a_setting_back_to_its_default_in_the_same_run(agent, run_module):
    agent.expect(LIST, listing(proxy__url="http://proxy:3128"))
    agent.expect(["config", "info"], info())
    agent.expect(
        ["config", "set", "controlplane.url", "https://cp:8443"], {"key": "controlplane.url", "value": "x"}
    )
    agent.expect(["config", "clear", "proxy.url"], {"key": "proxy.url", "value": ""})
    agent.expect(LIST, listing(controlplane__url="https://cp:8443"))
    out = run_module(
        agent_config,
        {"settings": {"proxy.url": None, "proxy.bypass": None, "controlplane.url": "https://cp:8443"}},
    )
    assert out.result["changed"] is True
    assert sorted(out.result["changes"]) == ["controlplane.url", "proxy.url"]
    assert agent.script == []


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_ca_certificate_is_written_with_the_settings_and_reports_what_it_held(
    agent, run_module, tmp_path
):
    ca = tmp_path / "controlplane-ca.pem"
    agent.expect(LIST, listing())
    agent.expect(
        ["config", "set", "controlplane.cafile", str(ca)], {"key": "controlplane.cafile", "value": str(ca)}
    )
    agent.expect(LIST, listing(controlplane__cafile=str(ca)))
    args = {
        "settings": {"controlplane.cafile": str(ca)},
        "control_plane_ca": {"path": str(ca), "content": PEM},
    }
    out = run_module(agent_config, args)
    assert out.result["changed"] is True
    assert out.result["control_plane_ca"] == {"path": str(ca), "before": None, "changed": True}
    assert ca.read_text() == PEM and oct(ca.stat().st_mode & 0o777) == "0o644"
    # again: the file is as wanted, the setting too
    agent.expect(LIST, listing(controlplane__cafile=str(ca)))
    out = run_module(agent_config, args)
    assert out.result["changed"] is False and out.result["control_plane_ca"]["changed"] is False


def test_check_mode_does_not_write_the_ca_certificate(agent, run_module, tmp_path):
    ca = tmp_path / "controlplane-ca.pem"
    ca.write_text("old\n")
    agent.expect(LIST, listing())
    out = run_module(agent_config, {"control_plane_ca": {"path": str(ca), "content": PEM}}, check_mode=True)
    assert out.result["changed"] is True
    assert out.result["control_plane_ca"] == {"path": str(ca), "before": "old\n", "changed": True}
    assert ca.read_text() == "old\n"


def test_a_refused_setting_sets_the_ca_certificate_back(agent, run_module, tmp_path):
    ca = tmp_path / "controlplane-ca.pem"
    ca.write_text("old\n")
    agent.expect(LIST, listing())
    agent.fail(["config", "set", "proxy.url", "bad"], "AZCM0023", "bad")
    out = run_module(
        agent_config,
        {"settings": {"proxy.url": "bad"}, "control_plane_ca": {"path": str(ca), "content": PEM}},
    )
    assert out.failed and out.result["changed"] is False
    assert out.result["msg"].endswith("; the control plane CA certificate was set back")
    assert ca.read_text() == "old\n"


def test_an_empty_ca_content_removes_the_file(agent, run_module, tmp_path):
    ca = tmp_path / "controlplane-ca.pem"
    ca.write_text(PEM)
    agent.expect(LIST, listing())
    out = run_module(agent_config, {"control_plane_ca": {"path": str(ca), "content": None}})
    assert out.result["changed"] is True and out.result["control_plane_ca"]["before"] == PEM
    assert not ca.exists()
