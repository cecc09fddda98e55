# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json
import os
import pathlib
import stat

import pytest
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import (
    Azcmagent,
    AzcmagentError,
    azcm_code,
)


class FakeModule:
    """Records run_command calls; answers with the next canned (rc, stdout, stderr)."""

    def __init__(self, tmpdir, answers, binary="/opt/azcmagent/bin/azcmagent"):
        self.tmpdir = str(tmpdir)
        self.answers = list(answers)
        self.calls = []
        self.binary = binary
        self.config_seen = None

    def get_bin_path(self, name, required=False, opt_dirs=None):
        assert name == "azcmagent"
        assert "/opt/azcmagent/bin" in opt_dirs
        return self.binary

    def run_command(self, argv, environ_update=None, **kwargs):
        self.calls.append({"argv": list(argv), "env": dict(environ_update or {}), "kwargs": kwargs})
        if "--config" in argv:
            path = argv[argv.index("--config") + 1]
            self.config_seen = {
                "path": path,
                "mode": stat.S_IMODE(os.stat(path).st_mode),
                "content": json.loads(pathlib.Path(path).read_text()),
            }
        return self.answers.pop(0)


def test_argv_is_a_list_with_json_and_c_locale(tmp_path):
    module = FakeModule(tmp_path, [(0, '{"version": "1.64.3414.2961"}', "")])
    out = Azcmagent(module).run_json("version", ["version"])
    assert out == {"version": "1.64.3414.2961"}
    call = module.calls[0]
    assert call["argv"] == ["/opt/azcmagent/bin/azcmagent", "version", "--json"]
    assert call["env"]["LC_ALL"] == "C"
    assert call["env"]["LANG"] == "C"


def test_secrets_go_to_a_private_config_file_never_argv(tmp_path):
    module = FakeModule(tmp_path, [(0, '{"resourceId": "/subscriptions/s/x"}', "")])
    secret = "sup3r-s3cret-value"
    Azcmagent(module).run_json(
        "connect", ["connect", "--resource-group", "rg"], secrets={"service-principal-secret": secret}
    )
    argv = module.calls[0]["argv"]
    assert all(secret not in a for a in argv)
    assert argv[:4] == ["/opt/azcmagent/bin/azcmagent", "connect", "--resource-group", "rg"]
    assert argv[-2] == "--config"
    seen = module.config_seen
    assert seen["mode"] == 0o600
    assert seen["content"] == {"service-principal-secret": secret}
    assert os.path.dirname(seen["path"]) == str(tmp_path)
    assert not os.path.exists(seen["path"]), "the secrets file must be removed afterwards"


def test_secrets_file_is_removed_when_the_command_raises(tmp_path):
    class Boom(FakeModule):
        def run_command(self, argv, environ_update=None, **kwargs):
            FakeModule.run_command(self, argv, environ_update, **kwargs)
            raise RuntimeError("interrupted")

    module = Boom(tmp_path, [(0, "{}", "")])
    with pytest.raises(RuntimeError):
        Azcmagent(module).run_json("connect", ["connect"], secrets={"access-token": "tok"})
    assert not os.path.exists(module.config_seen["path"])
    assert os.listdir(str(tmp_path)) == []


def test_json_error_carries_the_azcm_code(tmp_path):
    err = json.dumps({"error": {"code": "AZCM0041", "message": "invalid credentials"}})
    module = FakeModule(tmp_path, [(41, err, "")])
    with pytest.raises(AzcmagentError) as exc:
        Azcmagent(module).run_json("connect", ["connect"])
    assert exc.value.code == "AZCM0041"
    assert exc.value.rc == 41
    assert str(exc.value) == "azcmagent connect failed: AZCM0041: invalid credentials"


def test_non_json_failure_uses_the_exit_code(tmp_path):
    module = FakeModule(tmp_path, [(23, "", "unknown flag --bogus\n")])
    with pytest.raises(AzcmagentError) as exc:
        Azcmagent(module).run_json("show", ["show", "--bogus"])
    assert exc.value.code == "AZCM0023"
    assert "unknown flag --bogus" in str(exc.value)


def test_success_without_json_is_an_error(tmp_path):
    module = FakeModule(tmp_path, [(0, "not json", "")])
    with pytest.raises(AzcmagentError) as exc:
        Azcmagent(module).run_json("show", ["show"])
    assert "not JSON" in str(exc.value)


def test_missing_binary_names_the_fix(tmp_path):
    module = FakeModule(tmp_path, [], binary=None)
    with pytest.raises(AzcmagentError) as exc:
        Azcmagent(module).run_json("show", ["show"])
    assert "hybridops.arc.arc_agent" in str(exc.value)
    assert module.calls == []


@pytest.mark.parametrize("rc, code", [(0, "AZCM0000"), (23, "AZCM0023"), (108, "AZCM0108")])
def test_azcm_code(rc, code):
    assert azcm_code(rc) == code
