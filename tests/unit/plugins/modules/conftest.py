# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs a module's main() with given arguments. Only AnsibleModule.run_command is replaced: by a
# scripted azcmagent that checks each command line against the expected one, in order, and
# records the argv, the environment and the --config file (its mode and content) of every call.

import contextlib
import json
import os
import stat

import pytest
from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result)
        self.result = result
        self.failed = failed


class ScriptedAgent:
    """Answers run_command like azcmagent would, from an ordered script of
    (expected argv after the binary, without --json and --config, rc, stdout)."""

    def __init__(self, binary):
        self.binary = binary
        self.script = []
        self.calls = []

    def expect(self, argv, answer, rc=0):
        out = answer if isinstance(answer, str) else json.dumps(answer)
        self.script.append((list(argv), rc, out))
        return self

    def fail(self, argv, code, message):
        rc = int(code[4:])
        return self.expect(argv, {"error": {"code": code, "message": message}}, rc=rc)

    def run_command(self, module, args, environ_update=None, **kwargs):
        assert isinstance(args, list), "azcmagent must be run with an argv list, never a shell string"
        argv = list(args)
        config = None
        if "--config" in argv:
            index = argv.index("--config")
            path = argv[index + 1]
            with open(path) as f:
                content = json.load(f)
            config = {"path": path, "mode": stat.S_IMODE(os.stat(path).st_mode), "content": content}
            del argv[index : index + 2]
        assert argv[0] == self.binary
        assert argv[-1] == "--json"
        command = argv[1:-1]
        self.calls.append(
            {"argv": list(args), "command": command, "env": dict(environ_update or {}), "config": config}
        )
        assert self.script, "unexpected azcmagent call: %r" % (command,)
        expected, rc, out = self.script.pop(0)
        assert command == expected
        return rc, out, ""

    def commands(self):
        return [call["command"] for call in self.calls]


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """A scripted azcmagent; the module finds a real executable named azcmagent on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / "azcmagent"
    binary.write_text("#!/bin/sh\necho 'must not run: run_command is scripted' >&2\nexit 99\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    scripted = ScriptedAgent(str(binary))

    def run_command(self, args, **kwargs):
        return scripted.run_command(self, args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return scripted


@pytest.fixture
def no_agent(tmp_path, monkeypatch):
    """A host without azcmagent: nothing on PATH; run_command must not be called."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    calls = []
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: calls.append(args))
    return calls


@pytest.fixture
def run_module(tmp_path, monkeypatch):
    """run_module(module, args, check_mode=False, diff=False) -> ModuleExit (result, failed)."""
    tmpdir = tmp_path / "module-tmp"
    tmpdir.mkdir()

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=False)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        raise ModuleExit(kwargs, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(module, args, check_mode=False, diff=False):
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_tmpdir=str(tmpdir))
        with patch_module_args(full), pytest.raises(ModuleExit) as caught:
            module.main()
        leftovers = os.listdir(str(tmpdir))
        assert leftovers == [], "the module left files behind: %r" % leftovers
        return caught.value

    return run
