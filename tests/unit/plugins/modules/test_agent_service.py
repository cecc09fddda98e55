# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# agent_service against a scripted host: run_command answers as getent, groupadd, useradd,
# usermod, systemd-tmpfiles and systemctl would, from a small account database and unit table,
# and records every command; the files are real (in a temporary folder).

import os

import pytest
from ansible.module_utils import basic
from ansible_collections.hybridops.arc.plugins.modules import agent_service

NOLOGIN = "/usr/sbin/nologin"


def valued(argv):
    """The options of a command line that take a value (--gid NAME ...)."""
    takes = ("--gid", "--home-dir", "--home", "--shell", "--comment")
    return dict((argv[i], argv[i + 1]) for i in range(len(argv) - 1) if argv[i] in takes)


class ScriptedHost:
    def __init__(self, root):
        self.root = root
        self.groups = {"root": 0}
        self.users = {"root": ["root", "x", "0", "0", "root", "/root", "/bin/bash"]}
        self.units = {}  # name: {"enabled": bool, "active": bool}
        self.calls = []

    def run_command(self, args, environ_update=None, **kwargs):
        assert isinstance(args, list)
        self.calls.append(list(args))
        tool, rest = args[0], args[1:]
        if tool == "getent":
            database, name = rest
            if database == "group" and name in self.groups:
                return 0, "%s:x:%d:\n" % (name, self.groups[name]), ""
            if database == "passwd" and name in self.users:
                return 0, ":".join(self.users[name]) + "\n", ""
            return 2, "", ""
        if tool == "groupadd":
            self.groups[rest[-1]] = 990
            return 0, "", ""
        if tool == "useradd":
            name = rest[-1]
            options = valued(rest)
            gid = str(self.groups[options["--gid"]])
            self.users[name] = [
                name,
                "x",
                "991",
                gid,
                options["--comment"],
                options["--home-dir"],
                options["--shell"],
            ]
            return 0, "", ""
        if tool == "usermod":
            name = rest[-1]
            options = valued(rest)
            entry = self.users[name]
            entry[3], entry[5], entry[6] = (
                str(self.groups[options["--gid"]]),
                options["--home"],
                options["--shell"],
            )
            return 0, "", ""
        if tool == "systemd-tmpfiles":
            with open(rest[-1]) as stream:
                for line in stream:
                    fields = line.split()
                    if fields and fields[0] == "d":
                        os.makedirs(fields[1], exist_ok=True)
                        os.chmod(fields[1], int(fields[2], 8))
                        os.chown(fields[1], int(self.users[fields[3]][2]), self.groups[fields[4]])
            return 0, "", ""
        if tool == "systemctl":
            verb, name = (rest + [""])[:2]
            unit = self.units.setdefault(name, {"enabled": False, "active": False})
            if verb == "is-enabled":
                return (0, "enabled\n", "") if unit["enabled"] else (1, "disabled\n", "")
            if verb == "is-active":
                return (0, "active\n", "") if unit["active"] else (3, "inactive\n", "")
            if verb == "enable":
                unit["enabled"] = True
            if verb in ("start", "restart"):
                unit["active"] = True
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (args,))

    def changing(self):
        """The commands that change the host (not the reads)."""
        return [
            call
            for call in self.calls
            if call[0] != "getent" and call[1:2] not in (["is-enabled"], ["is-active"])
        ]


@pytest.fixture
def host(tmp_path, monkeypatch):
    scripted = ScriptedHost(tmp_path)
    monkeypatch.setattr(
        basic.AnsibleModule, "run_command", lambda self, args, **kw: scripted.run_command(args, **kw)
    )
    return scripted


def args(root, unit="[Service]\nExecStart=/opt/azcmagent/bin/himds\n"):
    state = root / "state"
    declaration = root / "tmpfiles.d" / "azcmagent.conf"
    return dict(
        name="himdsd.service",
        user="himds",
        home=str(state),
        tmpfiles=str(declaration),
        files=[
            dict(
                path=str(declaration),
                content="d %s 0755 root himds -\nd %s/certs 0750 himds himds -\n" % (state, state),
            ),
            dict(path=str(root / "system" / "himdsd.service"), content=unit),
        ],
    )


def test_a_bare_host_gets_account_files_directories_and_a_running_service(host, run_module, tmp_path):
    out = run_module(agent_service, args(tmp_path))
    assert not out.failed, out.result
    assert out.result["changes"] == [
        "group himds",
        "user himds",
        str(tmp_path / "tmpfiles.d" / "azcmagent.conf"),
        str(tmp_path / "system" / "himdsd.service"),
        "directories",
        "daemon-reload",
        "himdsd.service enabled",
        "himdsd.service started",
    ]
    assert host.users["himds"][3] == "990" and host.users["himds"][5:] == [str(tmp_path / "state"), NOLOGIN]
    unit = tmp_path / "system" / "himdsd.service"
    assert unit.read_text().startswith("[Service]") and oct(unit.stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "state" / "certs").stat().st_mode & 0o7777) == "0o750"
    assert host.units["himdsd.service"] == {"enabled": True, "active": True}
    assert not [name for name in os.listdir(str(tmp_path / "system")) if name.startswith(".")]


def test_a_second_run_changes_nothing_and_runs_no_changing_command(host, run_module, tmp_path):
    run_module(agent_service, args(tmp_path))
    host.calls = []
    again = run_module(agent_service, args(tmp_path))
    assert again.result == {"changed": False, "changes": []}
    assert host.changing() == []


def test_check_mode_tells_what_it_would_do_and_does_nothing(host, run_module, tmp_path):
    out = run_module(agent_service, args(tmp_path), check_mode=True)
    assert out.result["changed"] is True and "himdsd.service started" in out.result["changes"]
    assert host.changing() == [] and not (tmp_path / "system").exists() and "himds" not in host.users


def test_a_changed_unit_reloads_and_restarts_the_running_service(host, run_module, tmp_path):
    run_module(agent_service, args(tmp_path))
    host.calls = []
    out = run_module(agent_service, args(tmp_path, unit="[Service]\nExecStart=/opt/azcmagent/bin/himds -v\n"))
    assert out.result["changes"] == [
        str(tmp_path / "system" / "himdsd.service"),
        "daemon-reload",
        "himdsd.service restarted",
    ]
    assert host.changing() == [["systemctl", "daemon-reload"], ["systemctl", "restart", "himdsd.service"]]


def test_restart_restarts_a_running_service_without_other_change(host, run_module, tmp_path):
    run_module(agent_service, args(tmp_path))
    host.calls = []
    out = run_module(agent_service, dict(args(tmp_path), restart=True))
    assert out.result["changes"] == ["himdsd.service restarted"]


def test_drifted_directories_and_account_are_set_back(host, run_module, tmp_path):
    run_module(agent_service, args(tmp_path))
    os.chmod(str(tmp_path / "state" / "certs"), 0o777)
    host.users["himds"][6] = "/bin/bash"
    host.calls = []
    out = run_module(agent_service, args(tmp_path))
    assert out.result["changes"] == ["user himds", "directories"]
    assert oct((tmp_path / "state" / "certs").stat().st_mode & 0o7777) == "0o750"
    assert host.users["himds"][6] == NOLOGIN


def test_a_failing_command_is_named(host, run_module, tmp_path, monkeypatch):
    monkeypatch.setattr(
        basic.AnsibleModule,
        "run_command",
        lambda self, argv, **kw: (
            (1, "", "Failed to start himdsd.service")
            if argv[:2] == ["systemctl", "start"]
            else host.run_command(argv, **kw)
        ),
    )
    out = run_module(agent_service, args(tmp_path))
    assert out.failed
    assert out.result["msg"] == "systemctl start himdsd.service failed (rc 1): Failed to start himdsd.service"


def test_a_declaration_with_a_mode_that_is_not_octal_fails_before_any_change(host, run_module, tmp_path):
    given = args(tmp_path)
    given["files"][0]["content"] = "d %s 07x5 root himds -\n" % (tmp_path / "state")
    out = run_module(agent_service, given)
    assert out.failed
    assert (
        "gives %s the mode '07x5', which is not an octal number" % (tmp_path / "state") in out.result["msg"]
    )
    assert out.result["msg"].endswith("Nothing was changed.")
    assert host.calls == [] and not (tmp_path / "tmpfiles.d").exists()


def test_a_path_unit_restarted_restarts_its_running_service(host, run_module, tmp_path):
    """A service started on demand is set up through its path unit; when a file changed, the path
    unit is restarted and so is its service if it runs (systemctl try-restart)."""
    given = args(tmp_path)
    given["name"] = ["extd.path"]
    run_module(agent_service, given)
    assert host.units["extd.path"] == {"enabled": True, "active": True}
    host.calls = []
    given["restart"] = True
    out = run_module(agent_service, given)
    assert out.result["changes"] == ["extd.path restarted"]
    assert ["systemctl", "try-restart", "extd.service"] in [call[:3] for call in host.calls]


def test_several_units_share_the_files_and_each_is_enabled_and_started(host, run_module, tmp_path):
    given = args(tmp_path)
    given["name"] = ["himdsd.service", "extd.service"]
    extd = dict(path=str(tmp_path / "system" / "extd.service"), content="[Service]\nExecStart=x\n")
    given["files"].append(extd)
    out = run_module(agent_service, given)
    assert out.result["changes"][-5:] == [
        "daemon-reload",
        "himdsd.service enabled",
        "himdsd.service started",
        "extd.service enabled",
        "extd.service started",
    ]
    assert host.units["extd.service"] == {"enabled": True, "active": True}
    host.calls = []
    assert run_module(agent_service, given).result == {"changed": False, "changes": []}
