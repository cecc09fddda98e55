"""``azcmagent connect``: create the machine resource and this machine's identity
(docs/reference/azcmagent.md).

Order of work, so that a failure at any step leaves the machine as it was (not connected), and
success leaves it wholly connected: check the arguments and the local state; get an access
token; generate the key pair (written aside, ``identity.key.pending``); register; then write
the certificate, the CA, move the key in place, and last of all the connection state
(``agentconfig.json``): the machine is connected exactly when that file exists. A connect
interrupted after registering leaves a resource without local state; connecting again from
this host takes it over (the control plane re-onboards a machine from its own host).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from arc_agent import __version__, ipc
from arc_agent.arcproxy.core import GatewayFileError, gateway_settings
from arc_agent.cli import gateway_mode
from arc_agent.cli.config_cmd import GATEWAY_UNITS
from arc_agent.cli.context import Context
from arc_agent.cli.local_state import forget_cached
from arc_agent.cli.output import CommandResult
from arc_agent.cli.show import machine_view
from arc_agent.cli.tags import parse_tags
from arc_agent.config.connection import ConnectionState, load_state, save_state
from arc_agent.config.settings import CONTROL_PLANE_CAFILE, CONTROL_PLANE_URL, LocalConfig
from arc_agent.config.statedir import secure, state_lock
from arc_agent.cpclient.onboarding import (
    Credentials,
    check_gateway_id,
    delete_machine,
    link_gateway,
    management_token,
    read_gateway,
    register,
    subscription_id_by_name,
    with_endpoints,
)
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.transport import HttpsClient
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import remove_if_present, write_atomic
from arc_agent.hostid import host_id
from arc_agent.identity.keys import generate_machine_key, public_key_pem, save_private_key
from arc_agent.identity.store import MachineIdentity
from arc_agent.metadata.sysinfo import collect_system_info
from arc_agent.paths import AgentPaths
from arc_agent.privileges import require_root
from arc_agent.systemd import restart_running

CLOUDS = ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud")
RESOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{0,53}[A-Za-z0-9_-]")  # not ending in "."
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NOT_OFFERED = (
    "interactive sign-in (a browser or a device code) is not offered by this control plane; "
    "use a service principal (--service-principal-id with --service-principal-secret or "
    "--service-principal-cert) or --access-token"
)


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    """The authentication and control plane flags that ``connect`` and ``disconnect`` share."""
    auth = parser.add_argument_group("authentication (pick one; pass secrets with --config)")
    auth.add_argument("-i", "--service-principal-id", metavar="ID", help="the service principal's client id")
    auth.add_argument(
        "-p", "--service-principal-secret", metavar="SECRET", help="its secret (prefer a --config file)"
    )
    auth.add_argument(
        "--service-principal-cert", metavar="FILE", help="PEM file with its certificate and key"
    )
    auth.add_argument("--access-token", metavar="TOKEN", help="an access token (prefer a --config file)")
    auth.add_argument("--use-device-code", action="store_true", help="not offered by this control plane")
    auth.add_argument(
        "-t", "--tenant-id", metavar="GUID", help="the tenant (required with a service principal)"
    )
    plane = parser.add_argument_group("control plane (hybridops.arc)")
    plane.add_argument(
        "--control-plane-url", metavar="URL", help="https://HOST[:PORT]; default: config controlplane.url"
    )
    plane.add_argument(
        "--control-plane-ca",
        metavar="FILE",
        help="its CA certificate (PEM); default: config controlplane.cafile",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s", "--subscription-id", metavar="ID", help="the subscription: its id or its name (required)"
    )
    parser.add_argument("-g", "--resource-group", metavar="NAME", help="the resource group (required)")
    parser.add_argument("-l", "--location", metavar="REGION", help="the location, e.g. westeurope (required)")
    parser.add_argument("-n", "--resource-name", metavar="NAME", help="default: the host name")
    parser.add_argument("--tags", metavar="TAGS", help="k=v,k2=v2; quote names and values with spaces with '")
    parser.add_argument("--cloud", metavar="CLOUD", help=f"one of {', '.join(CLOUDS)} (default AzureCloud)")
    parser.add_argument("--correlation-id", metavar="GUID", help="written to the control plane's audit log")
    parser.add_argument(
        "--enable-automatic-upgrade", action="store_true",
        help="let the control plane keep the agent on its newest published version (agentUpgrade)",
    )  # fmt: skip
    # ours, for the collection's reconnects: the connection in place is kept until the new one is
    # made, then replaced (docs/agent-cli.md, "Reconnect")
    parser.add_argument("--reconnect", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--private-link-scope", metavar="ID", help="not offered by this control plane")
    parser.add_argument(
        "--gateway-id", metavar="ID", help="the Arc gateway's resource id: connect and work through it"
    )
    parser.add_argument(
        "--ignore-network-check", action="store_true", help="accepted; connect checks the network as it goes"
    )
    add_auth_arguments(parser)


def _given(args: argparse.Namespace, name: str) -> str:
    value = getattr(args, name, None)
    return value.strip() if isinstance(value, str) else ""


def _missing(flag: str, what: str) -> AzcmError:
    return AzcmError(ErrorCode.MISSING_MANDATORY_PARAMETER, f"{flag} is required: {what}")


def control_plane(args: argparse.Namespace, ctx: Context, known_url: str = "") -> tuple[str, Path | None]:
    """The control plane URL and CA file: the flags, else ``known_url`` (the one a connected
    machine uses), else the local configuration."""
    config = LocalConfig.load(ctx.paths.local_config)
    url = _given(args, "control_plane_url") or known_url or str(config.get(CONTROL_PLANE_URL) or "")
    ca = _given(args, "control_plane_ca") or str(config.get(CONTROL_PLANE_CAFILE) or "")
    if not url:
        raise _missing(
            "--control-plane-url",
            "where the control plane is; or set it once with 'azcmagent config set controlplane.url URL'",
        )
    return url.rstrip("/"), Path(ca) if ca else None


def credentials(args: argparse.Namespace, known_tenant: str | None = None) -> Credentials:
    """Exactly one way to authenticate, from the flags (and the --config file behind them).

    A service principal needs its tenant: ``--tenant-id``, else ``known_tenant`` (the connected
    machine's, for ``disconnect``, which Microsoft documents without ``--tenant-id``)."""
    if getattr(args, "use_device_code", False):
        raise AzcmError(ErrorCode.NOT_SUPPORTED, NOT_OFFERED)
    client_id = _given(args, "service_principal_id")
    secret = _given(args, "service_principal_secret")
    cert = _given(args, "service_principal_cert")
    token = _given(args, "access_token")
    given_tenant = _given(args, "tenant_id")
    tenant = given_tenant or known_tenant
    chosen = [name for name, value in (("secret", secret), ("certificate", cert), ("token", token)) if value]
    if len(chosen) > 1:
        raise AzcmError(
            ErrorCode.CONFIGURATION_CONFLICT,
            "give one way to authenticate: --service-principal-secret, --service-principal-cert or "
            "--access-token, not several",
        )
    if not chosen:
        raise _missing("authentication", NOT_OFFERED)  # Microsoft's default is a device code
    if token:
        tenant = given_tenant or _token_tenant(token)
        return Credentials(tenant_id=tenant, access_token=token)
    if not client_id:
        raise _missing("--service-principal-id", "the client id of the service principal")
    if not tenant:
        raise _missing("--tenant-id", "the tenant of the service principal")
    _check_guid(client_id, "--service-principal-id")
    _check_guid(tenant, "--tenant-id")
    return Credentials(
        tenant_id=tenant.lower(),
        client_id=client_id.lower(),
        client_secret=secret,
        certificate_file=Path(cert) if cert else None,
    )


def _token_tenant(token: str) -> str:
    """The ``tid`` claim of an access token (read, not verified: the control plane verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        tenant = claims.get("tid", "") if isinstance(claims, dict) else ""
    except (IndexError, ValueError):
        raise AzcmError(ErrorCode.INVALID_ACCESS_TOKEN, "the access token is not a JWT") from None
    if not isinstance(tenant, str) or not _GUID.fullmatch(tenant):
        raise _missing("--tenant-id", "the access token names no tenant")
    return tenant.lower()


def _check_guid(value: str, flag: str) -> None:
    if value and not _GUID.fullmatch(value):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"{flag} must be a GUID, got {value!r}")


def _resource_name(args: argparse.Namespace) -> str:
    name = _given(args, "resource_name")
    if name:
        if not RESOURCE_NAME.fullmatch(name):
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"--resource-name {name!r} is not a valid name: 1-54 letters, digits, '-', '_' or '.', "
                "not ending in '.'",
            )
        return name
    host = socket.gethostname().split(".", 1)[0]
    if not RESOURCE_NAME.fullmatch(host):
        raise AzcmError(
            ErrorCode.RESOURCE_NAME_FROM_HOSTNAME_FAILED,
            f"the host name {host!r} is not a valid resource name; give one with --resource-name",
        )
    return host


def _cloud(args: argparse.Namespace) -> str:
    given = _given(args, "cloud") or "AzureCloud"
    for cloud in CLOUDS:
        if cloud.lower() == given.lower():
            return cloud
    raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"--cloud {given!r} is not one of {', '.join(CLOUDS)}")


def connect(ctx: Context) -> CommandResult:
    require_root("connect")
    args, paths = ctx.args, ctx.paths
    if getattr(args, "private_link_scope", None):
        raise AzcmError(ErrorCode.NOT_SUPPORTED, "private link scopes are not offered by this control plane")
    gateway_id = _given(args, "gateway_id")
    if gateway_id:
        check_gateway_id(gateway_id)
    replacing = bool(getattr(args, "reconnect", False))
    existing = load_state(paths.agent_config)
    if existing is not None and not replacing:
        raise AzcmError(
            ErrorCode.ALREADY_CONNECTED,
            f"this machine is already connected as {existing.resource_id}; run 'azcmagent disconnect' first",
        )
    request = _request(args)
    creds = credentials(args)
    url, ca_file = control_plane(args, ctx)
    ca_pem = _read_ca(ca_file) if ca_file is not None else None  # before anything is registered
    client = HttpsClient(url, ca_file, proxies=proxy_policy(paths))
    try:
        client = with_endpoints(client)
        secure(paths)
        with state_lock(paths, code=ErrorCode.CONNECT_FAILED):
            current = load_state(paths.agent_config)
            if current is not None and not replacing:  # another connect won the race
                raise AzcmError(ErrorCode.ALREADY_CONNECTED, "this machine was connected meanwhile")
            token = management_token(client, creds)
            if not _GUID.fullmatch(request.subscription):  # a name, as Microsoft's examples give it
                request = replace(
                    request, subscription=subscription_id_by_name(client, token, request.subscription)
                )
            undo, link = None, None
            if gateway_id:
                client, undo, link = _through_gateway(ctx, client, token, gateway_id, url, ca_file)
            try:
                result = _register(
                    ctx, client, token, creds, request, ca_pem, replaced=current is not None, link=link
                )
            except BaseException:
                if undo is not None:
                    undo()
                raise
            if gateway_id:
                result = _services_follow(ctx, result)
            return result if current is None else _retire(client, token, creds, current, result)
    finally:
        client.close()


def _services_follow(ctx: Context, result: CommandResult) -> CommandResult:
    """The running services take gateway mode at once (their proxy is the Arc proxy now)."""
    if ctx.paths != AgentPaths.under(Path("/")):
        return result  # an agent relocated for tests has no units of its own
    lines = restart_running(GATEWAY_UNITS)
    return CommandResult(text="\n".join([result.text, *lines]), data=result.data) if lines else result


def _through_gateway(
    ctx: Context, client: HttpsClient, token: str, gateway_id: str, url: str, ca_file: Path | None
) -> tuple[HttpsClient, Callable[[], None], Callable[[str], None]]:
    """``--gateway-id``: read the gateway (the way requests go now, as the real agent needs the
    management endpoint for this), switch to gateway mode (docs/gateway.md), and go on through the
    Arc proxy. The new client, the undo of the switch, and the link of the new resource to the
    gateway (its settings/default)."""
    try:
        found = read_gateway(client, token, gateway_id)
        if ca_file is not None:
            found["caCertificate"] = _read_ca(ca_file).decode("ascii", "replace")
        settings = gateway_settings(found)
    except GatewayFileError as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT, f"the Arc gateway {gateway_id} cannot be used: {exc}"
        ) from None
    undo = gateway_mode.enter(ctx.paths, settings, prove=lambda: None)  # the registration proves it
    client.close()
    through = HttpsClient(url, ca_file, proxies=proxy_policy(ctx.paths), named=client.endpoints.document())

    def link(resource_id: str) -> None:
        link_gateway(through, token, resource_id, settings.resource_id)

    return through, undo, link


@dataclass(frozen=True)
class Registration:
    """What the flags ask the machine resource to be (checked)."""

    subscription: str
    """Its id (lower case), or the name given, until ``connect`` looks it up."""
    group: str
    location: str
    name: str
    tags: dict[str, str]
    cloud: str
    correlation: str
    automatic_upgrade: bool = False


def _request(args: argparse.Namespace) -> Registration:
    subscription = _given(args, "subscription_id")
    group = _given(args, "resource_group")
    location = _given(args, "location")
    if not subscription:
        raise _missing("--subscription-id", "the subscription of the machine resource")
    if not group:
        raise _missing("--resource-group", "the resource group of the machine resource")
    if not location:
        raise _missing("--location", "the location (region) of the machine resource, e.g. westeurope")
    correlation = _given(args, "correlation_id")
    _check_guid(correlation, "--correlation-id")
    return Registration(
        subscription=subscription.lower() if _GUID.fullmatch(subscription) else subscription,
        group=group,
        location=location,
        name=_resource_name(args),
        tags=parse_tags(_given(args, "tags")),
        cloud=_cloud(args),
        correlation=correlation.lower(),
        automatic_upgrade=bool(getattr(args, "enable_automatic_upgrade", False)),
    )


def _register(
    ctx: Context,
    client: HttpsClient,
    token: str,
    creds: Credentials,
    request: Registration,
    ca_pem: bytes | None,
    replaced: bool = False,
    link: Callable[[str], None] | None = None,
) -> CommandResult:
    """Register this machine and write its connection state, last. With ``replaced``, the
    connection in place stays untouched until the control plane has accepted the new one.
    ``link``: called with the new resource id before anything is written (the gateway link)."""
    paths = ctx.paths
    this_host = host_id()
    system = collect_system_info()
    key = generate_machine_key()
    pending = MachineIdentity(paths).pending_key
    save_private_key(pending, key)
    body: dict[str, Any] = {
        "subscriptionId": request.subscription,
        "resourceGroup": request.group,
        "resourceName": request.name,
        "location": request.location,
        "tenantId": creds.tenant_id,
        "tags": request.tags,
        "cloud": request.cloud,
        "publicKey": public_key_pem(key),
        "hostId": this_host,
        "agentVersion": __version__,
        "properties": system.to_arm(),
    }
    if request.correlation:
        body["correlationId"] = request.correlation
    if request.automatic_upgrade:
        body["enableAutomaticUpgrade"] = True
    try:
        answer = register(client, token, body, access_token_given=bool(creds.access_token))
        if link is not None:
            link(str(answer["resourceId"]))
        state = ConnectionState(
            resource_id=str(answer["resourceId"]),
            resource_name=request.name,
            resource_group=request.group,
            subscription_id=request.subscription,
            tenant_id=str(answer["tenantId"]),
            location=str(answer["location"]),
            cloud=request.cloud,
            vm_id=str(answer["vmId"]),
            vm_uuid=system.bios_uuid,
            host_id=this_host,
            principal_id=str(answer.get("principalId") or ""),
            control_plane_url=client.base_url,
            assertion_audience=str(answer["assertionAudience"]),
            credential_not_after=str(answer["credential"]["notAfter"]),
            connected_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            correlation_id=request.correlation or str(uuid.uuid4()),
            tags=request.tags,
            endpoints=client.endpoints.document(),
        )
        identity = MachineIdentity(paths)
        identity.install_certificate(str(answer["credential"]["certificate"]))
        if ca_pem is not None:
            write_atomic(paths.control_plane_ca, ca_pem, mode=0o644)
        else:
            remove_if_present(paths.control_plane_ca)
        identity.install_pending_key()
        save_state(paths.agent_config, state)  # last: from here on the machine is connected
        if replaced:
            forget_cached(paths)  # himds's status and token keys were the old identity's
    except (KeyError, TypeError) as exc:
        remove_if_present(pending)
        raise AzcmError(
            ErrorCode.CONNECT_FAILED,
            f"the control plane's answer lacks {exc}; is it a hybridops.arc control plane?",
        ) from None
    except BaseException:
        remove_if_present(pending)
        raise
    reloaded = ipc.ask(paths.himds_socket, {"op": "reload"}) is not None
    view = machine_view(ctx.paths)
    note = "" if reloaded else "\nhimds is not running: start it with 'systemctl start himdsd'"
    return CommandResult(
        text=f"Connected machine to the control plane. Resource Id: {state.resource_id}{note}",
        data=view,
    )


def _retire(
    client: HttpsClient, token: str, creds: Credentials, old: ConnectionState, result: CommandResult
) -> CommandResult:
    """After a reconnect to another resource, delete the one it was connected to (as ``disconnect``
    would have); when that fails, the new connection stands and the result says so."""
    new_id = str(result.data.get("resourceId") or "")
    if new_id.lower() == old.resource_id.lower() and old.control_plane_url == client.base_url:
        return result  # the same resource, re-onboarded
    if old.control_plane_url != client.base_url:
        note = (
            f"the previous resource {old.resource_id} is in another control plane ({old.control_plane_url});"
            " delete it there"
        )
        return _with_note(result, old, note)
    try:
        gone = delete_machine(client, token, old.vm_id, access_token_given=bool(creds.access_token))
        note = f"the previous resource {old.resource_id} {'was deleted' if gone else 'was already gone'}"
    except AzcmError as error:
        note = f"the previous resource {old.resource_id} could not be deleted ({error}); delete it yourself"
    return _with_note(result, old, note)


def _with_note(result: CommandResult, old: ConnectionState, note: str) -> CommandResult:
    return CommandResult(
        text=f"{result.text}\n{note[0].upper()}{note[1:]}",
        data={**result.data, "previousResource": {"resourceId": old.resource_id, "note": note}},
    )


def _read_ca(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT, f"cannot read the control plane CA file {path}: {exc.strerror}"
        ) from None
