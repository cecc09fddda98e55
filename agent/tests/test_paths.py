from __future__ import annotations

from pathlib import Path

import pytest

from arc_agent.errors import AzcmError
from arc_agent.paths import AgentPaths


def test_real_linux_paths_without_override() -> None:
    paths = AgentPaths.from_env({})
    assert paths.install_dir == Path("/opt/azcmagent")
    assert paths.bin_dir == Path("/opt/azcmagent/bin")
    assert paths.state_dir == Path("/var/opt/azcmagent")
    assert paths.certs_dir == Path("/var/opt/azcmagent/certs")
    assert paths.tokens_dir == Path("/var/opt/azcmagent/tokens")
    assert paths.himds_socket == Path("/var/opt/azcmagent/socks/himds.sock")
    assert paths.log_dir == Path("/var/opt/azcmagent/log")
    assert paths.agent_config == Path("/var/opt/azcmagent/agentconfig.json")
    assert paths.local_config == Path("/var/opt/azcmagent/localconfig.json")
    assert paths.systemd_env_file == Path("/lib/systemd/system.conf.d/azcmagent.conf")


def test_empty_override_means_no_override() -> None:
    assert AgentPaths.from_env({"AZCMAGENT_ROOT": ""}) == AgentPaths.from_env({})


def test_override_relocates_every_path(tmp_path: Path) -> None:
    real = AgentPaths.from_env({})
    moved = AgentPaths.from_env({"AZCMAGENT_ROOT": str(tmp_path)})
    for name in AgentPaths._fields:
        original: Path = getattr(real, name)
        relocated: Path = getattr(moved, name)
        assert relocated == tmp_path / original.relative_to("/"), name


def test_relative_override_is_rejected() -> None:
    with pytest.raises(AzcmError) as info:
        AgentPaths.from_env({"AZCMAGENT_ROOT": "relative/dir"})
    assert info.value.code == 23
    assert "AZCMAGENT_ROOT must be an absolute path" in str(info.value)
