from __future__ import annotations

import ipaddress

import pytest

from arc_controlplane.names import IPAddress, ServerNames, parse_name, server_names


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def test_specific_bind_address() -> None:
    names = server_names("192.0.2.10", "Host1", [])
    assert names == ServerNames(
        dns=frozenset({"localhost", "host1"}), ips=frozenset({ip("127.0.0.1"), ip("192.0.2.10")})
    )


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_all_addresses_bind_takes_the_host_addresses(bind: str) -> None:
    def addresses_of(hostname: str) -> set[IPAddress]:
        assert hostname == "host1"
        return {ip("198.51.100.4"), ip("2001:db8::4"), ip("::1")}

    names = server_names(bind, "host1", [], addresses_of)
    assert names.ips == {ip("127.0.0.1"), ip("::1"), ip("198.51.100.4"), ip("2001:db8::4")}
    assert names.dns == {"localhost", "host1"}


def test_extra_names_are_detected_as_ip_or_dns() -> None:
    names = server_names("127.0.0.1", "host1", ["Arc.Example.COM.", "10.0.0.5", "*.apps.example.com", "::2"])
    assert {"arc.example.com", "*.apps.example.com"} <= names.dns
    assert {ip("10.0.0.5"), ip("::2")} <= names.ips


def test_host_name_bind_is_a_dns_name() -> None:
    assert "cp.example.com" in server_names("cp.example.com", "host1", []).dns


def test_invalid_host_name_is_left_out_but_invalid_extra_is_refused() -> None:
    assert server_names("127.0.0.1", "bad host", []).dns == {"localhost"}
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        server_names("127.0.0.1", "host1", ["not a name"])


@pytest.mark.parametrize("value", ["", "a..b", "-a.example", "with space", "x" * 64 + ".example", "a/b"])
def test_parse_name_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_name(value)


def test_local_addresses_include_loopback() -> None:
    from arc_controlplane.names import local_addresses

    found = local_addresses("localhost")
    assert {ip("127.0.0.1"), ip("::1")} <= found


def test_missing_from() -> None:
    wanted = server_names("127.0.0.1", "host1", ["10.0.0.1", "b.example"])
    have = server_names("127.0.0.1", "host1", [])
    assert wanted.missing_from(have) == ["b.example", "10.0.0.1"]
    assert have.missing_from(wanted) == []
