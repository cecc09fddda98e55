"""What the alternative scenario leaves on each host: another agent version from the package
server, connected with an access token under a resource name of its own, tags, monitor mode."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import yaml

TOP = pathlib.Path(__file__).resolve().parents[3]
TESTHOSTS = str(TOP / "tests/hosts/testhosts.sh")
DEFAULT_VERSION = yaml.safe_load((TOP / "roles/arc_agent/defaults/main.yml").read_text())["arc_agent_version"]


def _variables() -> dict[str, str]:
    ephemeral = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    document: dict[str, str] = yaml.safe_load((ephemeral / "credentials.yml").read_text())
    document.update(yaml.safe_load((ephemeral / "alternative.yml").read_text()))
    return document


def _machines() -> dict[str, dict[str, str]]:
    env = subprocess.run([TESTHOSTS, "env"], check=True, capture_output=True, text=True).stdout
    data_dir = pathlib.Path(json.loads(env)["state_dir"]) / "controlplane" / "data"
    listed = subprocess.run(
        [str(TOP / ".venv/bin/arc-controlplane"), "machine", "list", "--data-dir", str(data_dir), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {m["name"]: m for m in json.loads(listed)["machines"]}


def test_the_other_version_runs(host):
    version = _variables()["molecule_alt_version"]
    assert version != DEFAULT_VERSION
    assert json.loads(host.check_output("azcmagent version --json")) == {"version": version}
    assert host.check_output("/opt/azcmagent/bin/himds --version") == f"himds version {version}"
    record = json.loads(host.check_output("cat /opt/azcmagent/package.json"))
    assert record["version"] == version and record["archive"].startswith(f"arc-agent-{version}-cp")


def test_connected_with_the_token_under_its_own_name(host):
    wanted = _variables()
    shown = json.loads(host.check_output("azcmagent show -j"))
    name = "arc-" + host.check_output("hostname -s")
    assert shown["status"] == "Connected"
    assert shown["resourceName"] == name
    assert shown["resourceGroup"] == wanted["arc_agent_resource_group"]
    assert shown["tags"] == {"environment": "molecule", "auth": "access-token"}
    # the token was the only credential: no secret was given to the role
    assert wanted["arc_agent_service_principal_secret"] == ""
    assert wanted["arc_agent_access_token"]


def test_control_plane_hears_the_running_version(host):
    machine = _machines()["arc-" + host.check_output("hostname -s")]
    assert machine["status"] == "Connected"
    assert machine["agentVersion"] == _variables()["molecule_alt_version"]
    assert machine["lastHeartbeat"]


def test_monitor_mode(host):
    config = json.loads(host.check_output("azcmagent config list -j"))
    settings = {item["key"]: item["value"] for item in config["localsettings"]}
    assert settings["config.mode"] == "monitor"
    # the agent turns guest configuration off with monitor mode, and keeps the lists locked
    assert settings["guestconfiguration.enabled"] is False
    # so gcad does not run (the role installed its unit and left it stopped), and show says so
    shown = json.loads(host.check_output("azcmagent show -j"))
    assert shown["dependentServiceStatus"]["gcService"] == "stopped"
    assert host.file("/etc/systemd/system/gcad.service").exists
    refused = host.run("azcmagent config set extensions.allowlist Vendor/Type")
    assert refused.rc == 27, refused.stdout + refused.stderr


def test_token_directory_and_key_are_private(host):
    tokens = host.file("/var/opt/azcmagent/tokens")
    assert tokens.is_directory and tokens.user == "himds" and tokens.mode == 0o750
    key = host.file("/var/opt/azcmagent/certs/identity.key")
    assert key.user == "himds" and key.group == "himds" and key.mode == 0o600
    assert host.socket("tcp://127.0.0.1:40342").is_listening
    assert not host.socket("tcp://0.0.0.0:40342").is_listening
