"""``azcmagent show``: the agent's state, as the real agent shows it (docs/reference/azcmagent.md).

Text: one ``Display Name : value`` line per property, in the real agent's order. JSON (``-j``):
one object whose keys are the camelCase of the display names (``resourceId``, ``status``,
``lastHeartbeat``, ``agentVersion``...; the real agent's JSON schema is not public beyond the
keys the reference lists). Arguments filter the properties, by display name or JSON key
(``azcmagent show status lastHeartbeat``). Needs no root.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arc_agent import __version__
from arc_agent.arcproxy.core import LISTEN_URL, read_gateway_file
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.config.connection import ConnectionState, load_state
from arc_agent.config.settings import LocalConfig
from arc_agent.config.statedir import problems
from arc_agent.cpclient.proxy import ProxyError, parse_proxy
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import read_no_follow
from arc_agent.identity.store import MachineIdentity
from arc_agent.paths import AgentPaths
from arc_agent.systemd import UNKNOWN, service_states

NAMESPACE = "Microsoft.HybridCompute"
SERVICES = (
    ("agentService", "Agent Service (himds)", "himdsd.service"),
    ("arcProxy", "Azure Arc Proxy (arcproxy)", "arcproxyd.service"),
    ("extensionService", "Extension Service (extensionservice)", "extd.service"),
    ("gcService", "GC Service (gcarcservice)", "gcad.service"),
)
# (JSON key, display name), in the real agent's order.
PROPERTIES = (
    ("resourceName", "Resource Name"),
    ("resourceGroup", "Resource Group Name"),
    ("resourceNamespace", "Resource Namespace"),
    ("resourceId", "Resource Id"),
    ("subscriptionId", "Subscription ID"),
    ("tenantId", "Tenant ID"),
    ("vmId", "VM ID"),
    ("correlationId", "Correlation ID"),
    ("vmUuid", "VM UUID"),
    ("location", "Location"),
    ("cloud", "Cloud"),
    ("identityKeyStore", "Identity Key Store"),
    ("agentVersion", "Agent Version"),
    ("agentLogfile", "Agent Logfile"),
    ("status", "Agent Status"),
    ("lastHeartbeat", "Agent Last Heartbeat"),
    ("agentErrorCode", "Agent Error Code"),
    ("agentErrorDetails", "Agent Error Details"),
    ("agentErrorTimestamp", "Agent Error Timestamp"),
    ("httpsProxy", "Using HTTPS Proxy"),
    ("proxyBypassList", "Proxy Bypass List"),
    ("upstreamProxy", "Upstream Proxy"),
    ("gatewayUrl", "Gateway URL"),
    ("controlPlaneUrl", "Control Plane URL"),
    ("stateDirectory", "State Directory"),
    ("credentialExpiry", "Credential Expiry"),
    ("tags", "Tags"),
    ("cloudProvider", "Cloud Provider"),
    ("manufacturer", "Manufacturer"),
    ("model", "Model"),
    ("dependentServiceStatus", "Dependent Service Status"),
)


# Added by --os (docs/reference/azcmagent.md: "--os adds OS info").
OS_PROPERTIES = (
    ("osName", "OS Name"),
    ("osVersion", "OS Version"),
    ("osType", "OS Type"),
    ("kernelVersion", "Kernel Version"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "properties", nargs="*", metavar="PROPERTY", help="show only these (name or JSON key)"
    )
    parser.add_argument("--os", action="store_true", help="also show the operating system")


def _himds_status(path: Path) -> Mapping[str, Any]:
    """What himds wrote of the machine's standing (in a directory of its own: never through a
    link, and only its scalar values are shown)."""
    try:
        document = json.loads(read_no_follow(path, 1024 * 1024))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _state_directory(paths: AgentPaths) -> str:
    """``as expected``, or what is wrong with the state directory's owners (``statedir.py``);
    ``not installed`` when there is none."""
    if not paths.state_dir.is_dir():
        return "not installed"
    found = problems(paths)
    return "; ".join(found) if found else "as expected"


def service_statuses() -> dict[str, str]:
    """``running``, ``stopped`` or ``not installed`` for each agent service (systemd)."""
    states = service_states([unit for _, _, unit in SERVICES])
    shown: dict[str, str] = {}
    for key, _, unit in SERVICES:
        state = states[unit]
        if state is UNKNOWN:
            shown[key] = "unknown"
        elif not state.installed:
            shown[key] = "not installed"
        else:
            shown[key] = "running" if state.running else "stopped"
    return shown


def _proxy_view(paths: AgentPaths, runtime: Mapping[str, Any]) -> dict[str, Any]:
    """``Using HTTPS Proxy`` (``proxy.url``, else the HTTPS_PROXY of himds's environment; never
    with credentials) and ``Proxy Bypass List``; in gateway mode (docs/gateway.md) the Arc proxy
    is the services' proxy, that one is the ``Upstream Proxy``, and ``Gateway URL`` is the
    gateway's endpoint."""
    settings = LocalConfig.load(paths.local_config, ignore_invalid=("proxy.url", "proxy.bypass"))
    url = str(settings.get("proxy.url") or "")
    shown = ""
    if url:
        try:
            shown = parse_proxy(url, "proxy.url").display
        except ProxyError:
            shown = ""
    elif isinstance(runtime.get("environmentProxy"), str):
        shown = runtime["environmentProxy"]
    bypass = settings.get("proxy.bypass")
    view = {
        "httpsProxy": shown,
        "proxyBypassList": list(bypass) if isinstance(bypass, list) else [],
        "upstreamProxy": "",
        "gatewayUrl": "",
    }
    if settings.get("connection.type") == "gateway":
        gateway = read_gateway_file(paths.gateway_file)
        view.update(
            httpsProxy=LISTEN_URL,
            proxyBypassList=[],
            upstreamProxy=shown,
            gatewayUrl=gateway.endpoint if gateway else "",
        )
    return view


def machine_view(paths: AgentPaths, with_services: bool = True) -> dict[str, Any]:
    """Every property of ``show``, by JSON key."""
    state: ConnectionState | None = load_state(paths.agent_config)
    runtime = _himds_status(paths.himds_status)
    view: dict[str, Any] = {key: "" for key, _ in PROPERTIES}
    view.update(
        resourceNamespace=NAMESPACE,
        identityKeyStore="Default",
        agentVersion=__version__,
        agentLogfile=str(paths.log_dir / "himds.log"),
        status="Disconnected",
        tags={},
        stateDirectory=_state_directory(paths),
    )
    if state is not None:
        view.update(
            resourceName=state.resource_name,
            resourceGroup=state.resource_group,
            resourceId=state.resource_id,
            subscriptionId=state.subscription_id,
            tenantId=state.tenant_id,
            vmId=state.vm_id,
            correlationId=state.correlation_id,
            vmUuid=state.vm_uuid,
            location=state.location,
            cloud=state.cloud,
            controlPlaneUrl=state.control_plane_url,
            credentialExpiry=MachineIdentity(paths).recorded_expiry() or state.credential_not_after,
            tags=dict(state.tags),
            status="Connected",
            lastHeartbeat=state.connected_at,  # registration counts as a heartbeat
        )
        if runtime.get("vmId") == state.vm_id:
            for key in (
                "status",
                "lastHeartbeat",
                "agentErrorCode",
                "agentErrorDetails",
                "agentErrorTimestamp",
            ):
                if isinstance(runtime.get(key), str) and runtime[key]:
                    view[key] = runtime[key]
            tags = runtime.get("tags")  # as the control plane last said (they change after connect)
            if isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values()):
                view["tags"] = dict(tags)
    for key in ("cloudProvider", "manufacturer", "model"):
        if isinstance(runtime.get(key), str):
            view[key] = runtime[key]
    view.update(_proxy_view(paths, runtime))
    if with_services:
        view["dependentServiceStatus"] = service_statuses()
    return view


def _text_value(key: str, value: Any) -> str:
    if key == "dependentServiceStatus" and isinstance(value, dict):
        names = {k: display for k, display, _ in SERVICES}
        return "".join(f"\n    {names.get(k, k)}: {v}" for k, v in value.items())
    if key == "tags" and isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def show(ctx: Context) -> CommandResult:
    wanted: list[str] = list(getattr(ctx.args, "properties", []) or [])
    selected = list(PROPERTIES)
    if wanted:
        by_name = {name.lower(): (key, name) for key, name in PROPERTIES}
        by_name.update({key.lower(): (key, name) for key, name in PROPERTIES})
        selected = []
        for item in wanted:
            found = by_name.get(item.lower())
            if found is None:
                keys = ", ".join(key for key, _ in PROPERTIES)
                raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"unknown property {item!r}; known: {keys}")
            selected.append(found)
    view = machine_view(ctx.paths, with_services=any(key == "dependentServiceStatus" for key, _ in selected))
    if getattr(ctx.args, "os", False):
        from arc_agent.metadata.sysinfo import collect_system_info  # only for --os: it costs start-up

        system = collect_system_info()
        view.update(
            osName=system.os_pretty_name or system.os_name,
            osVersion=system.os_version,
            osType="linux",
            kernelVersion=system.kernel_release,
        )
        selected += [key_name for key_name in OS_PROPERTIES if key_name not in selected]
    data = {key: view[key] for key, _ in selected}
    width = max(len(name) for _, name in selected)
    text = "\n".join(f"{name.ljust(width)} : {_text_value(key, data[key])}" for key, name in selected)
    return CommandResult(text=text, data=data)
