from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_module

from arc_agent.cli import config_cmd
from arc_agent.cli.commands import Command
from arc_agent.cli.configfile import parse_command_line
from arc_agent.cli.context import Context
from arc_agent.cli.main import main
from arc_agent.cli.options import resolve
from arc_agent.cli.parser import build_parsers
from arc_agent.config.settings import KEYS
from arc_agent.errors import AzcmError
from arc_agent.paths import AgentPaths


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AZCMAGENT_ROOT", str(tmp_path))
    return tmp_path


def local_config(root: Path) -> Path:
    return AgentPaths.under(root).local_config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_text_shows_every_key_with_its_default(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "config", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Local Configuration Settings"
    assert lines[1:] == [
        "  config.mode : full",
        "  connection.type : direct",
        "  controlplane.cafile : ",
        "  controlplane.url : ",
        "  extensions.agent.cpulimit : 5",
        "  extensions.allowlist : []",
        "  extensions.blocklist : []",
        "  extensions.enabled : true",
        "  guestconfiguration.agent.cpulimit : 5",
        "  guestconfiguration.enabled : true",
        "  incomingconnections.enabled : true",
        "  incomingconnections.ports : []",
        "  proxy.bypass : []",
        "  proxy.url : ",
    ]
    assert not local_config(root).exists(), "reading writes nothing"


def test_list_json_is_typed(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "config", "set", "incomingconnections.ports", "22,80")[0] == 0
    code, out, _ = run(capsys, "config", "list", "-j")
    assert code == 0
    settings = json.loads(out)["localsettings"]
    assert [entry["key"] for entry in settings] == list(KEYS)
    values = {entry["key"]: entry["value"] for entry in settings}
    assert values["incomingconnections.ports"] == ["22", "80"]
    assert values["extensions.enabled"] is True
    assert values["extensions.agent.cpulimit"] == 5
    assert values["proxy.url"] == ""


def test_set_then_get(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "config", "set", "proxy.url", "http://proxy.example.com:3128")
    assert (code, err) == (0, "")
    assert out == "Config property proxy.url set to value http://proxy.example.com:3128\n"
    path = local_config(root)
    assert json.loads(path.read_text()) == {"proxy.url": "http://proxy.example.com:3128"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert run(capsys, "config", "get", "proxy.url") == (0, "http://proxy.example.com:3128\n", "")
    code, out, _ = run(capsys, "config", "get", "proxy.url", "-j")
    assert json.loads(out) == {"key": "proxy.url", "value": "http://proxy.example.com:3128"}
    code, out, _ = run(capsys, "-j", "config", "get", "extensions.enabled")
    assert json.loads(out) == {"key": "extensions.enabled", "value": True}


def test_set_json_gives_the_new_value(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "set", "proxy.bypass", "aad,arc", "-j")
    assert code == 0 and json.loads(out) == {"key": "proxy.bypass", "value": ["AAD", "Arc"]}
    code, out, _ = run(capsys, "config", "set", "proxy.bypass", "ArcData", "--add", "-j")
    assert json.loads(out) == {"key": "proxy.bypass", "value": ["AAD", "Arc", "ArcData"]}
    code, out, _ = run(capsys, "config", "set", "proxy.bypass", "arc", "-r")
    assert out == "Config property proxy.bypass set to value [AAD, ArcData]\n"
    code, _, err = run(capsys, "config", "set", "proxy.bypass", "arc", "-a", "-r")
    assert code == 23 and "not allowed with argument" in err


def test_clear(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "config", "set", "extensions.agent.cpulimit", "30")
    run(capsys, "config", "set", "proxy.url", "http://p:8080")
    assert run(capsys, "config", "clear", "extensions.agent.cpulimit") == (
        0,
        "Config property extensions.agent.cpulimit cleared, back to its default value 5\n",
        "",
    )
    assert run(capsys, "config", "clear", "proxy.url") == (0, "Config property proxy.url cleared\n", "")
    _, out, _ = run(capsys, "config", "clear", "incomingconnections.ports", "-j")
    assert json.loads(out) == {"key": "incomingconnections.ports", "value": []}
    assert json.loads(local_config(root).read_text()) == {}


def test_info_describes_every_key(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "info")
    assert code == 0
    assert out.startswith("Property")
    for key in KEYS:
        assert f"\n{key} " in out
    code, out, _ = run(capsys, "config", "info", "-j")
    rows = json.loads(out)["properties"]
    assert [row["key"] for row in rows] == list(KEYS)
    by_key = {row["key"]: row for row in rows}
    assert by_key["incomingconnections.enabled"]["default"] is True
    assert by_key["extensions.agent.cpulimit"] == {
        "key": "extensions.agent.cpulimit",
        "type": "percent",
        "default": 5,
        "allowed": "1-100",
        "description": "CPU share the extension manager may use",
    }
    assert "Allow/None" in by_key["extensions.allowlist"]["allowed"]


def test_mistakes(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "get", "proxy.uri")
    assert code == 23 and err.startswith("AZCM0023: unknown configuration property 'proxy.uri'")
    code, _, err = run(capsys, "config", "set", "incomingconnections.enabled", "yes")
    assert code == 23
    assert err == (
        "AZCM0023: invalid value 'yes' for incomingconnections.enabled: expected true or false; "
        "allowed: true, false\n"
    )
    code, out, _ = run(capsys, "config", "set", "proxy.url", "https://p:443", "-j")
    assert code == 23 and "HTTPS proxies are not supported" in json.loads(out)["error"]["message"]
    code, _, err = run(capsys, "config")
    assert code == 23 and "needs an action: list, get, set, clear, info" in err
    code, _, err = run(capsys, "config", "frob")
    assert code == 23 and "invalid choice: 'frob'" in err
    code, _, err = run(capsys, "config", "set", "proxy.url")
    assert code == 23 and "VALUE" in err
    assert not local_config(root).exists(), "nothing written on a mistake"


def test_monitor_mode_through_the_cli(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "set", "config.mode", "monitor")
    assert code == 0
    assert out == (
        "Config property config.mode set to value monitor\n"
        "Config property guestconfiguration.enabled set to value false\n"
    )
    code, _, err = run(capsys, "config", "set", "extensions.blocklist", "A/B", "--add")
    assert code == 27
    assert err.startswith("AZCM0027: extensions.blocklist cannot be changed while config.mode is monitor")
    assert json.loads(local_config(root).read_text()) == {
        "config.mode": "monitor",
        "guestconfiguration.enabled": False,
    }


def test_a_corrupted_file_is_azcm0066_and_clear_repairs_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = local_config(root)
    path.parent.mkdir(parents=True)
    path.write_text('{"extensions.enabled": "maybe", "proxy.url": "http://p:1"}')
    code, _, err = run(capsys, "config", "list")
    assert code == 66
    assert str(path) in err and "azcmagent config clear extensions.enabled" in err
    assert run(capsys, "config", "clear", "extensions.enabled")[0] == 0
    assert json.loads(path.read_text()) == {"proxy.url": "http://p:1"}
    assert run(capsys, "config", "get", "extensions.enabled") == (0, "true\n", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")
def test_a_write_failure_is_azcm0069(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = local_config(root)
    path.parent.mkdir(parents=True)
    # Root may write anywhere; what blocks the write is a full file system under the state.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path.parent)], check=True)
    try:
        run(capsys, "config", "set", "proxy.url", "http://p:0")  # refused: makes the layout and lock only
        filler = os.open(path.parent / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        code, _, err = run(capsys, "config", "set", "proxy.url", "http://p:1")
        assert code == 69 and err.startswith(f"AZCM0069: cannot write the local configuration '{path}'")
        assert not path.exists()
        assert [
            name for name in os.listdir(path.parent) if name.startswith(".")
        ] == []  # no temporary file left
    finally:
        subprocess.run(["umount", "-l", str(path.parent)], check=False)


def test_an_unreadable_state_directory_is_azcm0066(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = local_config(root).parent
    state_dir.parent.mkdir(parents=True)
    state_dir.write_text("not a directory")
    code, _, err = run(capsys, "config", "list")
    assert code == 66 and err.startswith("AZCM0066: cannot read the local configuration")


def test_config_file_gives_the_flags_of_config_set(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "config", "set", "incomingconnections.ports", "22")
    flags = tmp_path / "flags.yaml"
    flags.write_text("# add instead of replace\nadd: true\njson: true\n")
    code, out, _ = run(capsys, "config", "set", "incomingconnections.ports", "80", "--config", str(flags))
    assert code == 0 and json.loads(out) == {"key": "incomingconnections.ports", "value": ["22", "80"]}
    code, out, err = run(
        capsys, "config", "set", "incomingconnections.ports", "80", "-r", "--config", str(flags)
    )
    assert (code, out) == (23, ""), "the error format is chosen from the command line"
    assert err.startswith("AZCM0023: --add and --remove cannot be used together")
    bad = tmp_path / "bad.json"
    bad.write_text('{"resource-group": "rg"}')
    code, _, err = run(capsys, "config", "set", "proxy.url", "", "--config", str(bad))
    assert code == 23
    assert "unknown flag 'resource-group' for 'azcmagent config set'" in err
    assert "add, json, log-stderr, no-color, remove, verbose" in err


def test_set_and_clear_need_root_list_get_info_do_not(root: Path) -> None:
    """Run the real handlers with an injected effective uid: 1000 (a user), then 0 (root)."""

    def invoke(uid: int, *argv: str) -> object:
        table = [
            Command(
                "config",
                config_cmd.SUMMARY,
                config_cmd.run,
                functools.partial(config_cmd.add_arguments, geteuid=lambda: uid),
            )
        ]
        parsers = build_parsers(table)
        namespace = parse_command_line(parsers[""], list(argv))
        ctx = Context(namespace, resolve(namespace), AgentPaths.from_env(os.environ), parsers)
        return namespace.handler(ctx)

    for argv in (["config", "set", "proxy.url", "http://p:1"], ["config", "clear", "proxy.url"]):
        with pytest.raises(AzcmError) as info:
            invoke(1000, *argv)
        assert info.value.code == 18
        assert info.value.message == f"'azcmagent config {argv[1]}' must run as root (use sudo)"
    assert not local_config(root).exists()
    invoke(0, "config", "set", "proxy.url", "http://p:1")
    for argv in (["config", "list"], ["config", "get", "proxy.url"], ["config", "info"]):
        invoke(1000, *argv)
    assert json.loads(local_config(root).read_text()) == {"proxy.url": "http://p:1"}


def test_help_knows_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "help", "config")
    assert code == 0 and out.startswith("usage: azcmagent config")
    for action in ("list", "get", "set", "clear", "info"):
        assert action in out


# --- as a real process ------------------------------------------------------------------------


def test_real_process_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "AZCMAGENT_ROOT": str(tmp_path)}
    flags = tmp_path / "flags.json"
    flags.write_text('{"json": true}')
    result = run_module(
        "arc_agent.cli.main", "config", "set", "extensions.allowlist", "Microsoft.Azure.Monitor/AMA", env=env
    )
    assert result.returncode == 0, result.stderr
    result = run_module(
        "arc_agent.cli.main", "config", "get", "extensions.allowlist", "--config", str(flags), env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "key": "extensions.allowlist",
        "value": ["Microsoft.Azure.Monitor/AMA"],
    }
    result = run_module("arc_agent.cli.main", "config", "set", "config.mode", "sleepy", env=env)
    assert result.returncode == 23
    assert result.stderr.startswith("AZCM0023: invalid value 'sleepy' for config.mode")


def test_concurrent_config_sets_lose_nothing(root: Path) -> None:
    """Issue 10, finding 5: twenty ``config set`` at once used to keep only 9-11 of 20 ``--add``
    entries and 5-8 of 9 keys, each command exiting 0. Writers now hold the state lock."""
    env = {**os.environ, "AZCMAGENT_ROOT": str(root)}
    ports = [str(1000 + n) for n in range(11)]
    keys = {
        "proxy.url": "http://proxy:3128",
        "proxy.bypass": "ARM",
        "extensions.blocklist": "Bad/Thing",
        "extensions.enabled": "false",
        "connection.type": "direct",  # (gateway needs a linked machine: test_gateway.py)
        "incomingconnections.enabled": "false",
        "guestconfiguration.agent.cpulimit": "7",
        "extensions.agent.cpulimit": "9",
        "controlplane.url": "https://cp.example:8443",
    }
    commands = [["config", "set", "incomingconnections.ports", port, "--add"] for port in ports]
    commands += [["config", "set", key, value] for key, value in keys.items()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "arc_agent.cli.main", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    stored = json.loads(local_config(root).read_text())
    assert sorted(stored["incomingconnections.ports"]) == ports
    assert stored["proxy.url"] == keys["proxy.url"]
    assert stored["proxy.bypass"] == ["ARM"]
    assert stored["extensions.blocklist"] == ["Bad/Thing"]
    assert stored["extensions.enabled"] is False
    assert stored.get("connection.type", "direct") == "direct"
    assert stored["incomingconnections.enabled"] is False
    assert stored["guestconfiguration.agent.cpulimit"] == 7
    assert stored["extensions.agent.cpulimit"] == 9
    assert stored["controlplane.url"] == "https://cp.example:8443"


def test_a_held_lock_makes_config_set_wait_then_fail_clearly(root: Path) -> None:
    from arc_agent.config.statedir import state_lock

    paths = AgentPaths.under(root)
    env = {**os.environ, "AZCMAGENT_ROOT": str(root)}
    assert (
        run_module("arc_agent.cli.main", "config", "set", "proxy.url", "http://a:1", env=env).returncode == 0
    )
    with state_lock(paths):
        waiting = subprocess.Popen([sys.executable, "-m", "arc_agent.cli.main", "config", "set", "proxy.url",
                                    "http://b:2"], env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(1.0)
        assert waiting.poll() is None, "config set did not wait for the lock"
    waiting.communicate(timeout=30)
    assert waiting.returncode == 0
    assert json.loads(local_config(root).read_text())["proxy.url"] == "http://b:2"
