"""Arc gateways: the ``Microsoft.HybridCompute/gateways`` resource and a machine's
``settings/default`` through Azure's SDK (unmodified) and raw HTTP, their RBAC and bad input, and
the gateway service (``serve --gateway-port``) that admits tunnels to the control plane's own
endpoints only (docs/gateway.md)."""

from __future__ import annotations

import socket
import ssl
import types
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from armenv import ArmEnv, arm_environment, error_of
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.hybridcompute import HybridComputeManagementClient
from azure.mgmt.hybridcompute.models import (
    Gateway,
    GatewayProperties,
    GatewayUpdate,
    GatewayUpdateProperties,
    Settings,
    SettingsGatewayProperties,
    SettingsProperties,
)
from conftest import ca_context, free_port

T = TypeVar("T")
GROUP = "edge"
OTHER = "core"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    gateway_port = free_port()
    with arm_environment(request, tmp_path_factory, ["--gateway-port", str(gateway_port)]) as env:
        env.add_group(GROUP)
        env.add_group(OTHER)
        env.add_machines(GROUP, ["m-1", "m-2"])
        env.add_principal("edge-reader", "Reader", env.group(GROUP))
        env.add_principal("core-admin", "Resource Administrator", env.group(OTHER))
        env.gateway_port = gateway_port  # type: ignore[attr-defined]
        yield env


class _Token:
    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, 2**31)


@pytest.fixture
def sdk(arm: ArmEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[HybridComputeManagementClient]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.server.ca_file))
    client = HybridComputeManagementClient(
        _Token(arm.callers["admin"].token),
        arm.subscription_id,
        base_url=arm.server.url(""),
        credential_scopes=["https://management.azure.com/.default"],
        polling_interval=0.1,
    )
    try:
        yield client
    finally:
        client.close()


def _gateway_path(arm: ArmEnv, name: str, group: str = GROUP) -> str:
    return f"{arm.group(group)}/providers/Microsoft.HybridCompute/gateways/{name}"


def _settings_path(arm: ArmEnv, machine: str) -> str:
    return arm.machine(GROUP, machine) + "/providers/Microsoft.HybridCompute/settings/default"


def test_the_sdk_manages_gateways_and_links_machines(arm: ArmEnv, sdk: HybridComputeManagementClient) -> None:
    made = sdk.gateways.begin_create_or_update(
        GROUP, "gw-sdk", Gateway(location="westeurope", properties=GatewayProperties(gateway_type="Public"))
    ).result()
    assert made.name == "gw-sdk" and made.type == "Microsoft.HybridCompute/gateways"
    assert made.properties is not None
    assert made.properties.provisioning_state == "Succeeded"
    assert made.properties.allowed_features == ["*"]
    assert made.properties.gateway_endpoint == f"https://127.0.0.1:{arm.gateway_port}"  # type: ignore[attr-defined]
    gateway_id = made.properties.gateway_id
    assert gateway_id and len(gateway_id) == 36

    again = sdk.gateways.get(GROUP, "GW-SDK")  # names are case-insensitive
    assert again.properties is not None and again.properties.gateway_id == gateway_id
    assert [g.name for g in sdk.gateways.list_by_resource_group(GROUP)] == ["gw-sdk"]
    assert "gw-sdk" in [g.name for g in sdk.gateways.list_by_subscription()]

    updated = sdk.gateways.update(
        GROUP,
        "gw-sdk",
        GatewayUpdate(
            tags={"site": "lyon"}, properties=GatewayUpdateProperties(gateway_bypass=["pkg.example.test"])
        ),
    )
    assert updated.tags == {"site": "lyon"}
    assert updated.properties is not None and updated.properties.gateway_bypass == ["pkg.example.test"]
    assert updated.properties.gateway_id == gateway_id  # a change keeps the gateway's identity

    machine = arm.machine(GROUP, "m-1")
    empty = sdk.settings.get(GROUP, "Microsoft.HybridCompute", "machines", "m-1", "default")
    assert empty.properties is not None and empty.properties.tenant_id == arm.tenant_id
    assert empty.properties.gateway_properties is not None
    assert empty.properties.gateway_properties.gateway_resource_id is None
    link = Settings(
        properties=SettingsProperties(
            gateway_properties=SettingsGatewayProperties(gateway_resource_id=str(made.id))
        )
    )
    linked = sdk.settings.update(GROUP, "Microsoft.HybridCompute", "machines", "m-1", "default", link)
    assert (
        linked.id is not None
        and linked.id.lower() == (machine + "/providers/Microsoft.HybridCompute/settings/default").lower()
    )
    assert linked.properties is not None and linked.properties.gateway_properties is not None
    assert linked.properties.gateway_properties.gateway_resource_id == made.id
    generation = arm.machine_row(GROUP, "m-1").generation  # type: ignore[union-attr]

    with pytest.raises(HttpResponseError) as refused:
        sdk.gateways.begin_delete(GROUP, "gw-sdk").result()
    assert refused.value.status_code == 409 and "m-1" in str(refused.value.message)

    unlink = Settings(properties=SettingsProperties(gateway_properties=SettingsGatewayProperties()))
    sdk.settings.patch(GROUP, "Microsoft.HybridCompute", "machines", "m-1", "default", unlink)
    assert arm.machine_row(GROUP, "m-1").generation == generation + 1  # type: ignore[union-attr]
    sdk.gateways.begin_delete(GROUP, "gw-sdk").result()
    assert [g.name for g in sdk.gateways.list_by_resource_group(GROUP)] == []


def test_put_answers_201_then_200_and_delete_202_then_204(arm: ArmEnv) -> None:
    path = _gateway_path(arm, "gw-raw")
    first = arm.call("PUT", path, json={"location": "westeurope", "properties": {"allowedFeatures": ["*"]}})
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {"id", "name", "type", "location", "tags", "properties"}
    second = arm.call("PUT", path, json=body)  # what GET gives can be sent back
    assert second.status_code == 200, second.text
    assert second.json()["properties"]["gatewayId"] == body["properties"]["gatewayId"]
    moved = arm.call("PUT", path, json={"location": "northeurope"})
    assert moved.status_code == 409 and error_of(moved)["code"] == "InvalidResourceLocation"
    deleted = arm.call("DELETE", path)
    assert deleted.status_code == 202
    status = arm.call(
        "GET", deleted.headers["Azure-AsyncOperation"].split("?")[0].split(str(arm.server.port))[1]
    )
    assert status.json()["status"] == "Succeeded"
    assert arm.call("DELETE", path).status_code == 204
    missing = arm.call("GET", path)
    assert missing.status_code == 404 and error_of(missing)["code"] == "ResourceNotFound"


@pytest.mark.parametrize(
    ("properties", "code", "named"),
    [
        ({"allowedFeatures": ["Arc"]}, "InvalidAllowedFeatures", "Arc"),
        ({"gatewayType": "Private"}, "InvalidGatewayType", "Private"),
        ({"gatewayBypass": ["not a host"]}, "InvalidGatewayBypass", "not a host"),
        ({"allowedFeatures": "*"}, "InvalidRequestContent", "allowedFeatures"),
        ({"unknown": 1}, "InvalidRequestContent", "unknown"),
    ],
)
def test_bad_gateways_are_refused_by_name(
    arm: ArmEnv, properties: dict[str, object], code: str, named: str
) -> None:
    reply = arm.call(
        "PUT", _gateway_path(arm, "gw-bad"), json={"location": "westeurope", "properties": properties}
    )
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["code"] == code and named in error["message"]
    assert arm.call("GET", _gateway_path(arm, "gw-bad")).status_code == 404


def test_a_subscription_holds_five_gateways(arm: ArmEnv) -> None:
    paths = [_gateway_path(arm, f"gw-{i}") for i in range(6)]
    try:
        for path in paths[:5]:
            assert arm.call("PUT", path, json={"location": "westeurope"}).status_code == 201
        sixth = arm.call("PUT", paths[5], json={"location": "westeurope"})
        assert sixth.status_code == 409 and error_of(sixth)["code"] == "GatewayLimitExceeded"
        assert (
            arm.call("PUT", paths[0], json={"location": "westeurope", "tags": {"a": "b"}}).status_code == 200
        )
    finally:
        for path in paths:
            arm.call("DELETE", path)


def test_roles(arm: ArmEnv) -> None:
    path = _gateway_path(arm, "gw-rbac")
    assert arm.call("PUT", path, caller="onboarding", json={"location": "westeurope"}).status_code == 403
    assert arm.call("PUT", path, caller="admin", json={"location": "westeurope"}).status_code == 201
    try:
        assert arm.call("GET", path, caller="reader").status_code == 200
        assert arm.call("GET", path, caller="nobody").status_code == 403
        assert arm.call("PATCH", path, caller="reader", json={"tags": {}}).status_code == 403
        assert arm.call("DELETE", path, caller="edge-reader").status_code == 403
        listed = arm.call(
            "GET", f"{arm.sub}/providers/Microsoft.HybridCompute/gateways", caller="edge-reader"
        )
        assert [g["name"] for g in listed.json()["value"]] == ["gw-rbac"]
        hidden = arm.call("GET", f"{arm.sub}/providers/Microsoft.HybridCompute/gateways", caller="core-admin")
        assert hidden.json()["value"] == []

        gateway_id = arm.call("GET", path).json()["id"]
        link = {"properties": {"gatewayProperties": {"gatewayResourceId": gateway_id}}}
        # Onboarding may link a machine (join the gateway); a reader may not.
        assert arm.call("PUT", _settings_path(arm, "m-2"), caller="reader", json=link).status_code == 403
        linked = arm.call("PUT", _settings_path(arm, "m-2"), caller="onboarding", json=link)
        assert linked.status_code == 200, linked.text
        assert arm.call("GET", _settings_path(arm, "m-2"), caller="reader").json() == linked.json()
        unlinked = arm.call("PUT", _settings_path(arm, "m-2"), caller="onboarding", json={"properties": {}})
        assert unlinked.json()["properties"]["gatewayProperties"] == {}
    finally:
        arm.call("DELETE", path)


def test_bad_settings_are_refused_by_name(arm: ArmEnv) -> None:
    missing = f"{arm.group(GROUP)}/providers/Microsoft.HybridCompute/gateways/nowhere"
    reply = arm.call(
        "PUT",
        _settings_path(arm, "m-1"),
        json={"properties": {"gatewayProperties": {"gatewayResourceId": missing}}},
    )
    assert reply.status_code == 400 and error_of(reply)["code"] == "GatewayNotFound"
    assert "nowhere" in error_of(reply)["message"]
    other = arm.call("GET", _settings_path(arm, "m-1").replace("/default", "/custom"))
    assert other.status_code == 404 and "'default'" in error_of(other)["message"]
    absent = arm.call("GET", _settings_path(arm, "no-such-machine"))
    assert absent.status_code == 404


# --- the gateway service -------------------------------------------------------------------------


def _tunnel(
    arm: ArmEnv, target: str, gateway_id: str | None, method: str = "CONNECT"
) -> tuple[ssl.SSLSocket, bytes]:
    """TLS to the gateway port, a tunnel request; the socket and the answer's head."""
    raw = socket.create_connection(("127.0.0.1", arm.gateway_port), timeout=10)  # type: ignore[attr-defined]
    tls = ca_context(arm.server.ca_file).wrap_socket(raw, server_hostname="127.0.0.1")
    header = f"Arc-Gateway-Id: {gateway_id}\r\n" if gateway_id else ""
    tls.sendall(f"{method} {target} HTTP/1.1\r\nHost: {target}\r\n{header}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        if not chunk:
            break
        head += chunk
    return tls, head


def _get_inside(outer: ssl.SSLSocket, context: ssl.SSLContext, path: bytes) -> bytes:
    """An HTTPS GET over a TLS session carried inside ``outer`` (TLS in TLS, through memory BIOs)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    inner = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

    def pump(call: Callable[[], T]) -> T:
        while True:
            try:
                result = call()
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    outer.sendall(outgoing.read())
                data = outer.recv(65536)
                if not data:
                    raise ConnectionError("the tunnel closed") from None
                incoming.write(data)
                continue
            if outgoing.pending:
                outer.sendall(outgoing.read())
            return result

    pump(inner.do_handshake)
    pump(lambda: inner.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    answer = b""
    while True:
        try:
            chunk = pump(lambda: inner.read(65536))
        except (ConnectionError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        if not chunk:
            break
        answer += chunk
    outer.close()
    return answer


def test_the_gateway_carries_the_agent_endpoints_only(arm: ArmEnv) -> None:
    path = _gateway_path(arm, "gw-svc")
    created = arm.call("PUT", path, json={"location": "westeurope"})
    gateway_id = created.json()["properties"]["gatewayId"]
    target = f"127.0.0.1:{arm.server.port}"
    try:
        tls, head = _tunnel(arm, target, gateway_id)
        assert head.startswith(b"HTTP/1.1 200"), head
        # The agent's own TLS runs inside the tunnel, end to end.
        answer = _get_inside(tls, ca_context(arm.server.ca_file), b"/healthz")
        assert answer.startswith(b"HTTP/1.1 200"), answer

        for authority, named, method, status, reason in [
            ("example.com:443", gateway_id, "CONNECT", b"403", b"does not allow example.com:443"),
            (f"127.0.0.1:{arm.server.port + 1}", gateway_id, "CONNECT", b"403", b"does not allow"),
            (target, None, "CONNECT", b"403", b"names no gateway"),
            (target, "00000000-0000-0000-0000-000000000000", "CONNECT", b"403", b"no Arc gateway"),
            (target, gateway_id, "GET", b"405", b"only opens tunnels"),
            ("no-port", gateway_id, "CONNECT", b"400", b"host:port"),
        ]:
            tls, head = _tunnel(arm, authority, named, method)
            tls.close()
            assert head.split(b" ")[1] == status, (authority, head)
            assert b"X-Arc-Gateway-Error: " in head and reason in head, head
    finally:
        arm.call("DELETE", path)
    tls, head = _tunnel(arm, target, gateway_id)  # a deleted gateway carries nothing
    tls.close()
    assert head.startswith(b"HTTP/1.1 403") and b"no Arc gateway" in head


def test_without_the_gateway_service_no_gateway_can_be_made(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sqlite = types.SimpleNamespace(param="sqlite")
    with arm_environment(sqlite, tmp_path_factory) as env:  # type: ignore[arg-type]
        env.add_group(GROUP)
        reply = env.call("PUT", _gateway_path(env, "gw"), json={"location": "westeurope"})
        assert reply.status_code == 409 and error_of(reply)["code"] == "GatewayServiceNotRunning"
        assert "--gateway-port" in error_of(reply)["message"]
