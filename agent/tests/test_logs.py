"""``azcmagent logs`` on a connected agent's files: what the ZIP holds, and what it never holds.

The agent's tree is real (under ``AZCMAGENT_ROOT``): a machine key made by the agent's own
key code, the connection state saved by ``state.save_state``, logs with rotated files, a token
key file, and traps (a symbolic link and hard links to the key named like logs). The command
runs as a real process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from certificates import self_signed
from cryptography.hazmat.primitives import serialization

from arc_agent.cli import logs
from arc_agent.cli.context import Context
from arc_agent.cli.main import main
from arc_agent.cli.options import CommonOptions
from arc_agent.cli.parser import build_parsers
from arc_agent.config.connection import ConnectionState, save_state
from arc_agent.config.settings import LocalConfig
from arc_agent.errors import AzcmError
from arc_agent.fsutil import write_json_atomic
from arc_agent.identity.keys import generate_machine_key, save_private_key
from arc_agent.paths import AgentPaths

CLI = "arc_agent.cli.main"
TOKEN_SECRET = b"token-key-secret-4f1e9c0b7a"
MiB = 1024 * 1024
VM_ID = "45af4677-2e1d-4922-be74-d8676b4a413e"
RESOURCE_ID = (
    "/subscriptions/0b5c1f52-8f3b-4c5e-9d59-1f5c3f8e2a11/resourceGroups/rg"
    "/providers/Microsoft.HybridCompute/machines/logs-test"
)


def make_agent(root: Path) -> AgentPaths:
    """A connected agent's files, as connect and himds leave them, plus traps for the collector."""
    paths = AgentPaths.under(root)
    for directory in (paths.certs_dir, paths.tokens_dir, paths.log_dir, paths.status_dir):
        directory.mkdir(parents=True)
    key = generate_machine_key()
    save_private_key(paths.identity_key, key)
    certificate, _ = self_signed(VM_ID, key, days=90)
    paths.identity_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.control_plane_ca.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (paths.tokens_dir / "3b1f.key").write_bytes(TOKEN_SECRET)
    save_state(
        paths.agent_config,
        ConnectionState(
            resource_id=RESOURCE_ID,
            resource_name="logs-test",
            resource_group="rg",
            subscription_id="0b5c1f52-8f3b-4c5e-9d59-1f5c3f8e2a11",
            tenant_id="6f0b2b84-3ed1-4a4e-9d0b-58c1c4f3a1d2",
            location="westeurope",
            cloud="AzureCloud",
            vm_id=VM_ID,
            vm_uuid="",
            host_id="host",
            principal_id="",
            control_plane_url="https://cp.example.net:8443",
            assertion_audience="https://cp.example.net:8443/agent/v1",
            credential_not_after="2027-01-01T00:00:00Z",
            connected_at="2026-10-01T00:00:00Z",
        ),
    )
    config = LocalConfig.load(paths.local_config)
    config.set("proxy.url", "http://proxy.example.net:3128")
    config.save(paths.local_config)
    write_json_atomic(paths.himds_status, {"vmId": VM_ID, "status": "Connected"})
    (paths.log_dir / "himds.log").write_text("2026-10-01 himds started\n2026-10-01 heartbeat accepted\n")
    (paths.log_dir / "himds.log.1").write_text("older himds lines\n")
    (paths.log_dir / "himds.log.2").write_text("oldest himds lines\n")
    lines = b"".join(b"%08d arcproxy line of the big log ...........\n" % n for n in range(300_000))
    # ~15 MiB: more than the 10 MiB cut. (Not azcmagent.log: the CLI itself logs there, and rotates
    # it at 5 MiB.)
    (paths.log_dir / "arcproxy.log").write_bytes(lines)
    (paths.log_dir / "notes.txt").write_text("not a log\n")
    os.symlink(paths.identity_key, paths.log_dir / "leak.log")
    os.link(paths.identity_key, paths.log_dir / "hard.log")
    os.link(paths.tokens_dir / "3b1f.key", paths.log_dir / "token.log")
    return paths


@pytest.fixture
def agent(tmp_path: Path) -> AgentPaths:
    return make_agent(tmp_path / "root")


def azcmagent(paths: AgentPaths, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as root (the tests run as root, as in CI) in ``cwd``."""
    if os.geteuid() != 0:
        pytest.skip("azcmagent logs runs as root")
    root = paths.state_dir.parent.parent.parent
    env = {**os.environ, "AZCMAGENT_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, "-m", CLI, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def collect(paths: AgentPaths, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    result = azcmagent(paths, "logs", "-j", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def secrets(paths: AgentPaths) -> list[bytes]:
    """The key file, its base64 body lines, and the token key."""
    pem = paths.identity_key.read_bytes()
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    return [pem, *body, TOKEN_SECRET]


def test_the_zip_holds_the_agent_files_and_no_secret(agent: AgentPaths, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    answer = collect(agent, "-o", str(out))
    path = Path(answer["path"])
    assert path.parent == out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = members(path)
    assert answer["files"] == list(found)
    assert sorted(found) == [
        "agentconfig.json",
        "certs/identity.crt",
        "collection.json",
        "connection-ca.pem",
        "localconfig.json",
        "log/arcproxy.log",
        "log/azcmagent.log",
        "log/himds.log",
        "show.json",
        "status/himds-status.json",
        *(["system/journalctl-himdsd.txt"] if _installed("journalctl") else []),
        *(["system/systemctl-status.txt"] if _installed("systemctl") else []),
    ]
    for secret in secrets(agent):
        for name, data in found.items():
            assert secret not in data, f"{name} holds a secret"
        assert secret not in path.read_bytes()
    assert found["agentconfig.json"] == agent.agent_config.read_bytes()
    assert found["certs/identity.crt"] == agent.identity_cert.read_bytes()
    assert json.loads(found["localconfig.json"]) == {"proxy.url": "http://proxy.example.net:3128"}
    assert found["log/himds.log"] == (agent.log_dir / "himds.log").read_bytes()
    shown = json.loads(found["show.json"])
    assert shown["resourceId"] == RESOURCE_ID and shown["status"] == "Connected"
    collection = json.loads(found["collection.json"])
    assert collection["full"] is False
    reasons = {entry["name"]: entry["reason"] for entry in collection["skipped"]}
    assert "is a symbolic link" in reasons["log/leak.log"]
    assert "key file" in reasons["log/hard.log"] and "key file" in reasons["log/token.log"]
    if _installed("systemctl"):
        assert found["system/systemctl-status.txt"].startswith(
            b"$ systemctl status --no-pager himdsd extd gcad arcproxyd\n(exit code "
        )


def _installed(program: str) -> bool:
    return any(os.access(Path(d) / program, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


def test_without_full_each_log_is_its_last_10_mib_from_a_line_start(
    agent: AgentPaths, tmp_path: Path
) -> None:
    found = members(Path(collect(agent, "-o", str(tmp_path / "recent.zip"))["path"]))
    source = (agent.log_dir / "arcproxy.log").read_bytes()
    cut = found["log/arcproxy.log"]
    assert 10 * MiB - 64 < len(cut) <= 10 * MiB
    assert source.endswith(cut)
    assert source[len(source) - len(cut) - 1 : len(source) - len(cut)] == b"\n"  # begins a line
    assert not any(name.startswith("log/himds.log.") for name in found)
    collection = json.loads(found["collection.json"])
    entry = next(item for item in collection["files"] if item["name"] == "log/arcproxy.log")
    assert entry["truncated"] == f"the last {len(cut)} of {len(source)} bytes"


def test_full_takes_every_log_whole_and_leaves_the_config_file_out(agent: AgentPaths, tmp_path: Path) -> None:
    config = tmp_path / "logs-config.json"
    config.write_text('{"full": true}')
    found = members(Path(collect(agent, "--config", str(config), "-o", str(tmp_path / "all.zip"))["path"]))
    assert found["log/arcproxy.log"] == (agent.log_dir / "arcproxy.log").read_bytes()
    assert b"running logs" in found["log/azcmagent.log"]  # this very run, logged before collecting
    assert found["log/himds.log.1"] == b"older himds lines\n"
    assert found["log/himds.log.2"] == b"oldest himds lines\n"
    assert "log/notes.txt" not in found
    assert json.loads(found["collection.json"])["full"] is True
    assert not any(config.read_bytes() in data for data in found.values())
    for secret in secrets(agent):
        assert not any(secret in data for data in found.values())


def test_the_default_name_is_in_the_current_directory(agent: AgentPaths, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    answer = collect(agent, cwd=here)
    path = Path(answer["path"])
    assert path.parent == here
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".", 1)[0])
    assert re.fullmatch(rf"azcmagent-\d{{8}}T\d{{6}}Z-{re.escape(host)}\.zip", path.name)
    assert os.listdir(here) == [path.name]  # no temporary file left


def test_a_relative_output_is_taken_from_the_current_directory(agent: AgentPaths, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    answer = collect(agent, "-o", "sub/mine.zip", cwd=tmp_path)
    assert answer["path"] == str(tmp_path / "sub" / "mine.zip")
    assert zipfile.is_zipfile(answer["path"])


def test_an_existing_file_is_replaced_whole_with_mode_0600(agent: AgentPaths, tmp_path: Path) -> None:
    target = tmp_path / "logs.zip"
    target.write_bytes(b"old content")
    target.chmod(0o644)
    result = azcmagent(agent, "logs", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Collected ") and result.stdout.rstrip().endswith(f" into {target}")
    assert zipfile.is_zipfile(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("missing/logs.zip", "the directory {tmp}/missing does not exist"),
        ("missing/", "there is no such directory"),
        ("/proc/logs.zip", "cannot write the logs archive /proc/logs.zip: "),
    ],
)
def test_an_unusable_output_is_azcm0023_and_leaves_nothing(
    agent: AgentPaths, tmp_path: Path, output: str, words: str
) -> None:
    before = sorted(os.listdir(tmp_path))
    result = azcmagent(agent, "logs", "-o", output, cwd=tmp_path)
    assert result.returncode == 23, result.stdout + result.stderr
    assert words.format(tmp=tmp_path) in result.stderr
    assert "-o/--output" in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_an_unusable_state_is_recorded_not_fatal(agent: AgentPaths, tmp_path: Path) -> None:
    agent.agent_config.write_text("{not json")
    found = members(Path(collect(agent, "-o", str(tmp_path / "broken.zip"))["path"]))
    assert found["agentconfig.json"] == b"{not json"
    error = json.loads(found["show.json"])["error"]
    assert error["code"] == "AZCM0006" and "--force-local-only" in error["message"]


def test_a_machine_without_files_still_gives_an_archive(tmp_path: Path) -> None:
    paths = AgentPaths.under(tmp_path / "empty")
    found = members(Path(collect(paths, "-o", str(tmp_path))["path"]))
    assert "show.json" in found and not any(name.startswith("log/") for name in found)
    skipped = {entry["name"] for entry in json.loads(found["collection.json"])["skipped"]}
    assert {"agentconfig.json", "certs/identity.crt"} <= skipped


def test_logs_needs_root(agent: AgentPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    parsers = build_parsers([])
    ctx = Context(
        args=parsers[""].parse_args([]),
        options=CommonOptions(),
        paths=agent,
        parsers=parsers,
    )
    with pytest.raises(AzcmError) as info:
        logs.logs(ctx, geteuid=lambda: 1000)
    assert info.value.code == 18
    assert info.value.message == "'azcmagent logs' must run as root (use sudo)"
    assert not list(tmp_path.glob("*.zip"))


def test_help_describes_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help", "logs"]) == 0
    out = capsys.readouterr().out
    assert "-f, --full" in out and "-o PATH, --output PATH" in out


def test_key_bytes_would_be_found(agent: AgentPaths) -> None:
    """The secret checks above look for what is really in the key file (not a vacuous search)."""
    pem = agent.identity_key.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert base64.b64decode(b"".join(secrets(agent)[1:-1]))  # the body lines are the key's DER
