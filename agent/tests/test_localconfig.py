from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from arc_agent.config.settings import (
    CONTROL_PLANE_CAFILE,
    CONTROL_PLANE_URL,
    KEYS,
    LocalConfig,
    format_value,
)
from arc_agent.errors import AzcmError, ErrorCode

REFERENCE_DEFAULTS = {
    "incomingconnections.enabled": True,
    "incomingconnections.ports": [],
    "connection.type": "direct",
    "proxy.url": "",
    "proxy.bypass": [],
    "extensions.allowlist": [],
    "extensions.blocklist": [],
    "extensions.enabled": True,
    "guestconfiguration.enabled": True,
    "config.mode": "full",
    "guestconfiguration.agent.cpulimit": 5,
    "extensions.agent.cpulimit": 5,
}
OURS = {CONTROL_PLANE_URL: "", CONTROL_PLANE_CAFILE: ""}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def error_of(config: LocalConfig, key: str, text: str, mode: str = "replace") -> AzcmError:
    with pytest.raises(AzcmError) as info:
        config.set(key, text, mode)
    return info.value


# --- keys and defaults -------------------------------------------------------------------------


def test_the_reference_keys_and_ours_with_their_defaults() -> None:
    assert CONTROL_PLANE_URL == "controlplane.url" and CONTROL_PLANE_CAFILE == "controlplane.cafile"
    items = LocalConfig().items()
    assert [key for key, _ in items] == sorted({**REFERENCE_DEFAULTS, **OURS})
    assert dict(items) == {**REFERENCE_DEFAULTS, **OURS}
    assert tuple(sorted({**REFERENCE_DEFAULTS, **OURS})) == KEYS


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    config = LocalConfig.load(tmp_path / "no" / "such" / "localconfig.json")
    assert dict(config.items()) == {**REFERENCE_DEFAULTS, **OURS}
    assert config.stored() == {}


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(AzcmError) as info:
        LocalConfig().get("proxy.uri")
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert "'proxy.uri'" in info.value.message
    for key in KEYS:
        assert key in info.value.message
    assert error_of(LocalConfig(), "heartbeat.interval", "5").code == 23


def test_keys_are_case_insensitive_and_lists_are_copies() -> None:
    config = LocalConfig()
    config.set("Proxy.Bypass", "arc")
    value = config.get("PROXY.BYPASS")
    assert value == ["Arc"]
    assert isinstance(value, list)
    value.append("AAD")
    assert config.get("proxy.bypass") == ["Arc"]


# --- types -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["incomingconnections.enabled", "extensions.enabled", "guestconfiguration.enabled"]
)
@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("FALSE", False), ("True", True), (" false ", False)]
)
def test_boolean_keys(key: str, text: str, expected: bool) -> None:
    config = LocalConfig()
    config.set(key, text)
    assert config.get(key) is expected


@pytest.mark.parametrize("text", ["yes", "1", "", "on", "truth"])
def test_boolean_keys_refuse_other_words(text: str) -> None:
    error = error_of(LocalConfig(), "extensions.enabled", text)
    assert error.code == ErrorCode.INVALID_ARGUMENT
    assert "extensions.enabled" in error.message
    assert repr(text) in error.message
    assert "true, false" in error.message


def test_ports_are_a_list_of_canonical_port_numbers() -> None:
    config = LocalConfig()
    assert config.set("incomingconnections.ports", "22, 80,022,65535") == [
        ("incomingconnections.ports", ["22", "80", "65535"])
    ]
    assert config.get("incomingconnections.ports") == ["22", "80", "65535"]
    config.set("incomingconnections.ports", "")
    assert config.get("incomingconnections.ports") == []


@pytest.mark.parametrize("text", ["0", "65536", "ssh", "22,,80", ",22", "22,", "-1", "8000-8080", "2 2"])
def test_bad_ports(text: str) -> None:
    error = error_of(LocalConfig(), "incomingconnections.ports", text)
    assert error.code == ErrorCode.INVALID_ARGUMENT
    assert "incomingconnections.ports" in error.message and "1-65535" in error.message


def test_add_and_remove_on_lists() -> None:
    config = LocalConfig()
    config.set("incomingconnections.ports", "22", "add")
    config.set("incomingconnections.ports", "80,22", "add")
    assert config.get("incomingconnections.ports") == ["22", "80"]
    config.set("incomingconnections.ports", "22,3389", "remove")
    assert config.get("incomingconnections.ports") == ["80"]
    config.set("incomingconnections.ports", "80", "remove")
    assert config.get("incomingconnections.ports") == []


def test_add_and_remove_need_a_list_key_and_entries() -> None:
    error = error_of(LocalConfig(), "proxy.url", "http://p:3128", "add")
    assert error.code == 23 and "--add applies to list properties only" in error.message
    assert "proxy.url" in error.message
    assert error_of(LocalConfig(), "proxy.bypass", "", "remove").message.startswith("nothing to remove")
    assert error_of(LocalConfig(), "proxy.bypass", "AAD", "merge").code == 23


def test_proxy_bypass_takes_the_canonical_spelling() -> None:
    config = LocalConfig()
    config.set("proxy.bypass", "aad,ARM,arc,ama,ARCDATA,Aad")
    assert config.get("proxy.bypass") == ["AAD", "ARM", "Arc", "AMA", "ArcData"]
    error = error_of(config, "proxy.bypass", "AAD,Storage")
    assert "'Storage'" in error.message and "ArcData" in error.message


def test_extension_lists() -> None:
    config = LocalConfig()
    config.set(
        "extensions.allowlist",
        "Microsoft.Azure.Monitor/AzureMonitorLinuxAgent,microsoft.azure.monitor/azuremonitorlinuxagent",
    )
    assert config.get("extensions.allowlist") == ["Microsoft.Azure.Monitor/AzureMonitorLinuxAgent"]
    config.set("extensions.allowlist", "MICROSOFT.AZURE.MONITOR/AzureMonitorLinuxAgent", "add")
    assert config.get("extensions.allowlist") == ["Microsoft.Azure.Monitor/AzureMonitorLinuxAgent"]
    config.set("extensions.allowlist", "microsoft.azure.monitor/AZUREMONITORLINUXAGENT", "remove")
    assert config.get("extensions.allowlist") == []
    config.set("extensions.allowlist", "allow/none")
    assert config.get("extensions.allowlist") == ["Allow/None"]
    config.set("extensions.blocklist", "Microsoft.CPlat.Core/RunCommandHandlerLinux")
    assert config.get("extensions.blocklist") == ["Microsoft.CPlat.Core/RunCommandHandlerLinux"]


@pytest.mark.parametrize("text", ["Publisher", "a/b/c", "/Type", "Publisher/", "Pub lisher/Type", "a//b"])
@pytest.mark.parametrize("key", ["extensions.allowlist", "extensions.blocklist"])
def test_bad_extension_entries(key: str, text: str) -> None:
    error = error_of(LocalConfig(), key, text)
    assert error.code == 23 and "Publisher/Type" in error.message and key in error.message


def test_allow_none_only_in_the_allowlist() -> None:
    error = error_of(LocalConfig(), "extensions.blocklist", "Allow/None")
    assert error.code == 23 and "only meaningful in extensions.allowlist" in error.message


def test_enums() -> None:
    config = LocalConfig()
    config.set("connection.type", "Gateway")
    assert config.get("connection.type") == "gateway"
    config.set("config.mode", "MONITOR")
    assert config.get("config.mode") == "monitor"
    assert "direct, gateway" in error_of(config, "connection.type", "proxy").message
    assert "full, monitor" in error_of(config, "config.mode", "").message


@pytest.mark.parametrize(
    "url",
    ["http://proxy.example.com:3128", "http://proxy", "http://10.0.0.1:80/", "http://[fd00::1]:3128", ""],
)
def test_good_proxy_urls(url: str) -> None:
    config = LocalConfig()
    config.set("proxy.url", url)
    assert config.get("proxy.url") == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://proxy:443", "HTTPS proxies are not supported"),
        ("socks5://proxy:1080", "http://HOST[:PORT]"),
        ("proxy:3128", "http://HOST[:PORT]"),
        ("http://", "no host"),
        ("http://user:secret@proxy:3128", "credentials"),
        ("http://proxy:0", "1 to 65535"),
        ("http://proxy:70000", "1 to 65535"),
        ("http://proxy:port", "1 to 65535"),
        ("http://proxy:3128/path", "no path"),
        ("http://proxy:3128?x=1", "query"),
        ("http://pro xy:3128", "white space"),
        ("http://bad!host:3128", "not a host name"),
        ("http://[nothex]:3128", "IPv6"),
    ],
)
def test_bad_proxy_urls(url: str, words: str) -> None:
    error = error_of(LocalConfig(), "proxy.url", url)
    assert error.code == ErrorCode.INVALID_ARGUMENT
    assert words in error.message
    assert error.message.startswith(f"invalid value {url!r} for proxy.url")


@pytest.mark.parametrize("key", ["guestconfiguration.agent.cpulimit", "extensions.agent.cpulimit"])
def test_cpu_limits(key: str) -> None:
    config = LocalConfig()
    config.set(key, "100")
    assert config.get(key) == 100
    config.set(key, "1")
    assert config.get(key) == 1
    for bad in ("0", "101", "5%", "-1", "abc", "2.5", ""):
        assert "1-100" in error_of(config, key, bad).message


def test_control_plane_url() -> None:
    config = LocalConfig()
    config.set(CONTROL_PLANE_URL, "https://arc.example.com:8443/base")
    assert config.get(CONTROL_PLANE_URL) == "https://arc.example.com:8443/base"
    assert "https://" in error_of(config, CONTROL_PLANE_URL, "http://arc.example.com").message
    assert "query" in error_of(config, CONTROL_PLANE_URL, "https://arc.example.com/?a=b").message


def test_control_plane_ca_file(tmp_path: Path) -> None:
    config = LocalConfig()
    assert "absolute path" in error_of(config, CONTROL_PLANE_CAFILE, "ca.pem").message
    assert "cannot read it" in error_of(config, CONTROL_PLANE_CAFILE, str(tmp_path / "missing.pem")).message
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    assert "no PEM certificate" in error_of(config, CONTROL_PLANE_CAFILE, str(empty)).message
    good = tmp_path / "ca.pem"
    good.write_text(PEM)
    config.set(CONTROL_PLANE_CAFILE, str(good))
    assert config.get(CONTROL_PLANE_CAFILE) == str(good)
    config.set(CONTROL_PLANE_CAFILE, "")
    assert config.get(CONTROL_PLANE_CAFILE) == ""


# --- monitor mode ------------------------------------------------------------------------------


def test_monitor_mode_disables_guest_configuration_and_freezes_the_lists() -> None:
    config = LocalConfig()
    config.set("extensions.allowlist", "Microsoft.Azure.Monitor/AzureMonitorLinuxAgent")
    changes = config.set("config.mode", "monitor")
    assert changes == [("config.mode", "monitor"), ("guestconfiguration.enabled", False)]
    assert config.get("guestconfiguration.enabled") is False
    assert config.get("extensions.allowlist") == ["Microsoft.Azure.Monitor/AzureMonitorLinuxAgent"]

    for key, text, mode in [
        ("extensions.allowlist", "A/B", "replace"),
        ("extensions.allowlist", "A/B", "add"),
        ("extensions.blocklist", "A/B", "replace"),
        ("guestconfiguration.enabled", "true", "replace"),
    ]:
        error = error_of(config, key, text, mode)
        assert error.code == ErrorCode.CONFIGURATION_CONFLICT
        assert "config.mode" in error.message and "azcmagent config set config.mode full" in error.message
    with pytest.raises(AzcmError) as info:
        config.clear("extensions.allowlist")
    assert info.value.code == ErrorCode.CONFIGURATION_CONFLICT
    # Setting a frozen key to the value it has already is no change, so it is allowed.
    config.set("extensions.allowlist", "Microsoft.Azure.Monitor/AzureMonitorLinuxAgent")
    config.clear("extensions.blocklist")
    config.set("extensions.enabled", "false")

    config.set("config.mode", "full")
    config.set("extensions.blocklist", "A/B")
    assert config.get("guestconfiguration.enabled") is False, "leaving monitor mode changes nothing else"
    config.set("guestconfiguration.enabled", "true")
    assert config.get("guestconfiguration.enabled") is True


# --- the file ----------------------------------------------------------------------------------


def test_save_writes_only_changed_keys_typed_and_0644(tmp_path: Path) -> None:
    path = tmp_path / "state" / "localconfig.json"  # the directory does not exist yet
    config = LocalConfig()
    config.set("incomingconnections.ports", "22")
    config.set("extensions.enabled", "false")
    config.set("extensions.agent.cpulimit", "30")
    config.set("config.mode", "full")  # the default: not written
    config.save(path)
    assert json.loads(path.read_text()) == {
        "extensions.agent.cpulimit": 30,
        "extensions.enabled": False,
        "incomingconnections.ports": ["22"],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["localconfig.json"]  # no temporary left
    again = LocalConfig.load(path)
    assert again.items() == config.items()


def test_setting_a_key_back_to_its_default_removes_it_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "localconfig.json"
    config = LocalConfig()
    config.set("proxy.url", "http://proxy:3128")
    config.set("connection.type", "gateway")
    config.save(path)
    config.set("proxy.url", "")
    assert config.clear("connection.type") == "direct"
    config.save(path)
    assert json.loads(path.read_text()) == {}


def test_save_replaces_the_file_instead_of_writing_into_it(tmp_path: Path) -> None:
    path = tmp_path / "localconfig.json"
    config = LocalConfig()
    config.set("proxy.url", "http://old:3128")
    config.save(path)
    witness = tmp_path / "witness.json"
    os.link(path, witness)  # a second name for the old file's inode
    config.set("proxy.url", "http://new:3128")
    config.save(path)
    assert json.loads(witness.read_text()) == {"proxy.url": "http://old:3128"}
    assert json.loads(path.read_text()) == {"proxy.url": "http://new:3128"}


def test_a_write_failure_is_azcm0069(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(AzcmError) as info:
        LocalConfig().save(blocker / "localconfig.json")
    assert info.value.code == 69
    assert str(blocker / "localconfig.json") in info.value.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('["proxy.url"]', "not a JSON object"),
        ('{"proxy.url": "http://a:1", "proxy.url": "http://b:1"}', "appears twice"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_a_corrupted_file_is_azcm0066_naming_the_file(
    tmp_path: Path, content: str | bytes, words: str
) -> None:
    path = tmp_path / "localconfig.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(AzcmError) as info:
        LocalConfig.load(path)
    assert info.value.code == 66
    assert str(path) in info.value.message and words in info.value.message
    assert "delete it to restore all defaults" in info.value.message


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        ({"extensions.enabled": "yes"}, "expected true or false"),
        ({"extensions.agent.cpulimit": "5"}, "expected an integer"),
        ({"extensions.agent.cpulimit": True}, "expected an integer"),
        ({"extensions.agent.cpulimit": 500}, "1 to 100"),
        ({"incomingconnections.ports": "22"}, "list of strings"),
        ({"incomingconnections.ports": [22]}, "list of strings"),
        ({"proxy.url": "https://p:1"}, "HTTPS proxies"),
        ({"connection.type": 1}, "expected a string"),
    ],
)
def test_a_bad_value_in_the_file_names_the_key_and_the_repair(
    tmp_path: Path, stored: dict[str, object], words: str
) -> None:
    path = tmp_path / "localconfig.json"
    path.write_text(json.dumps(stored))
    key = next(iter(stored))
    with pytest.raises(AzcmError) as info:
        LocalConfig.load(path)
    assert info.value.code == 66
    assert str(path) in info.value.message and words in info.value.message
    assert f"azcmagent config clear {key}" in info.value.message
    repaired = LocalConfig.load(path, ignore_invalid=[key])
    assert repaired.stored() == {}


def test_an_unknown_key_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "localconfig.json"
    path.write_text('{"heartbeat.interval": 5}')
    with pytest.raises(AzcmError) as info:
        LocalConfig.load(path)
    assert info.value.code == 66
    assert "'heartbeat.interval'" in info.value.message and "delete" in info.value.message


def test_values_in_the_file_are_read_back_canonical(tmp_path: Path) -> None:
    path = tmp_path / "localconfig.json"
    path.write_text(
        json.dumps({"connection.type": "Gateway", "proxy.bypass": ["aad", "AAD"], "config.mode": "full"})
    )
    config = LocalConfig.load(path)
    assert config.get("connection.type") == "gateway"
    assert config.get("proxy.bypass") == ["AAD"]
    assert config.stored() == {"connection.type": "gateway", "proxy.bypass": ["AAD"]}


def test_an_unreadable_file_is_azcm0066(tmp_path: Path) -> None:
    path = tmp_path / "localconfig.json"
    path.mkdir()
    with pytest.raises(AzcmError) as info:
        LocalConfig.load(path)
    assert info.value.code == 66 and "cannot read the local configuration" in info.value.message


def test_format_value() -> None:
    assert format_value(True) == "true" and format_value(False) == "false"
    assert format_value(5) == "5"
    assert format_value([]) == "[]" and format_value(["22", "80"]) == "[22, 80]"
    assert format_value("http://p:1") == "http://p:1"


def test_the_constructor_checks_typed_values() -> None:
    config = LocalConfig({"Proxy.Bypass": ["aad"], "extensions.agent.cpulimit": 30})
    assert config.stored() == {"extensions.agent.cpulimit": 30, "proxy.bypass": ["AAD"]}
    with pytest.raises(AzcmError) as info:
        LocalConfig({"extensions.enabled": "true"})
    assert info.value.code == 23 and "extensions.enabled" in info.value.message
