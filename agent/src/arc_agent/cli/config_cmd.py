"""``azcmagent config list|get|set|clear|info``: the local settings (docs/reference/azcmagent.md).

``set`` and ``clear`` change ``localconfig.json`` and need root (AZCM0018); ``list``, ``get``
and ``info`` only read it. Text output follows the real agent (``Local Configuration Settings``
then ``  key : value`` lines; ``Config property proxy.url set to value X``). JSON (``-j``):
``list`` gives ``{"localsettings": [{"key": k, "value": v}, ...]}`` (shape [inferred] from the
reference), ``get``/``set``/``clear`` give ``{"key": k, "value": v}`` with the new value,
``info`` gives ``{"properties": [...]}`` (ours). Values are typed in JSON: booleans, integers,
lists. A change of ``proxy.url`` or ``proxy.bypass`` restarts the services that run (they build
their connections when they start); ``connection.type`` switches gateway mode on or off
(docs/gateway.md) and restarts them too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
from collections.abc import Callable, Iterator

from arc_agent.cli.context import Context
from arc_agent.cli.options import common_flags_parser
from arc_agent.cli.output import CommandResult
from arc_agent.config.settings import (
    CONFIG_MODE,
    GUEST_CONFIGURATION_ENABLED,
    SETTINGS,
    LocalConfig,
    Value,
    format_value,
    guest_configuration_off,
    setting,
)
from arc_agent.config.statedir import secure, state_lock
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.ondemand import timer_of, wake
from arc_agent.paths import AgentPaths
from arc_agent.systemd import ON_DEMAND, restart_running, service_states, systemd_running, unit_states, which

ACTIONS = ("list", "get", "set", "clear", "info")
SUMMARY = "Change configuration settings for this machine"
LIST_TITLE = "Local Configuration Settings"

EffectiveUid = Callable[[], int]
GCAD_UNIT = "gcad.service"
PROXY_SETTINGS = frozenset({"proxy.url", "proxy.bypass"})
EXTENSION_SETTINGS = frozenset(
    {
        "extensions.enabled",
        "extensions.allowlist",
        "extensions.blocklist",
        "extensions.agent.cpulimit",
        CONFIG_MODE,
    }
)
"""Settings extd applies: it is woken when one changes (it may not be running)."""
ARCPROXY_UNIT = "arcproxyd.service"
CONNECTION_TYPE = "connection.type"
PROXIED_UNITS = ("himdsd.service", "extd.service", GCAD_UNIT, ARCPROXY_UNIT)
"""What restarts when the proxy settings change (arcproxy: its upstream proxy)."""
GATEWAY_UNITS = ("himdsd.service", "extd.service", GCAD_UNIT)
"""What restarts when connection.type changes (their proxy becomes, or stops being, arcproxy)."""


def run(ctx: Context) -> CommandResult:
    """``azcmagent config`` without an action."""
    raise AzcmError(
        ErrorCode.INVALID_ARGUMENT,
        f"'azcmagent config' needs an action: {', '.join(ACTIONS)} (e.g. 'azcmagent config list'; "
        "'azcmagent config -h' describes them)",
    )


def add_arguments(parser: argparse.ArgumentParser, *, geteuid: EffectiveUid = os.geteuid) -> None:
    """The actions of ``config``; ``geteuid`` decides who is root (injectable for tests)."""
    common = common_flags_parser()
    actions = parser.add_subparsers(dest="config_action", title="actions", metavar="ACTION")

    def action(
        name: str, summary: str, handler: Callable[[Context], CommandResult]
    ) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name, help=summary, description=summary, parents=[common], allow_abbrev=False
        )
        sub.set_defaults(handler=handler)
        return sub

    action("list", "List all configuration properties and values", list_settings)
    getter = action("get", "Get a configuration property's value", get_setting)
    getter.add_argument("key", metavar="PROPERTY", help="e.g. config.mode")
    setter = action(
        "set", "Set a value for a configuration property", functools.partial(set_setting, geteuid=geteuid)
    )
    setter.add_argument("key", metavar="PROPERTY", help="e.g. proxy.url")
    setter.add_argument("value", metavar="VALUE", help="the value; lists are comma-separated (22,80)")
    mode = setter.add_mutually_exclusive_group()
    mode.add_argument("-a", "--add", action="store_true", help="add the entries to a list property")
    mode.add_argument("-r", "--remove", action="store_true", help="remove the entries from a list property")
    clearer = action(
        "clear",
        "Clear a configuration property's value (back to its default)",
        functools.partial(clear_setting, geteuid=geteuid),
    )
    clearer.add_argument("key", metavar="PROPERTY", help="e.g. proxy.url")
    action("info", "Describe all configuration properties and their supported values", info)


def _require_root(action: str, geteuid: EffectiveUid) -> None:
    if geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, f"'azcmagent config {action}' must run as root (use sudo)")


@contextlib.contextmanager
def _changing(ctx: Context) -> Iterator[None]:
    """The settings are read, changed and written back under the state lock, so that
    concurrent commands each see the others' changes (none is lost)."""
    paths = ctx.paths
    if os.geteuid() == 0:
        secure(paths)  # made, or mended: root must own what it trusts (statedir.py)
    else:
        paths.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    with state_lock(paths, code=ErrorCode.LOCAL_CONFIG_UPDATE_FAILED):
        yield


def _pair(key: str, value: Value) -> dict[str, object]:
    return {"key": key, "value": value}


def list_settings(ctx: Context) -> CommandResult:
    items = LocalConfig.load(ctx.paths.local_config).items()
    lines = [LIST_TITLE] + [f"  {key} : {format_value(value)}" for key, value in items]
    return CommandResult(
        text="\n".join(lines), data={"localsettings": [_pair(key, value) for key, value in items]}
    )


def get_setting(ctx: Context) -> CommandResult:
    key = setting(ctx.args.key).key
    value = LocalConfig.load(ctx.paths.local_config).get(key)
    return CommandResult(text=format_value(value), data=_pair(key, value))


def set_setting(ctx: Context, *, geteuid: EffectiveUid) -> CommandResult:
    _require_root("set", geteuid)
    key = setting(ctx.args.key).key
    mode = "add" if ctx.args.add else "remove" if ctx.args.remove else "replace"
    with _changing(ctx):
        config = LocalConfig.load(ctx.paths.local_config)
        changes = config.set(key, ctx.args.value, mode)
        if key == CONNECTION_TYPE:
            _switch_connection_type(ctx.paths, str(changes[0][1]))
        else:
            config.save(ctx.paths.local_config)
    lines = [f"Config property {changed} set to value {format_value(value)}" for changed, value in changes]
    if key == CONNECTION_TYPE:
        lines += _restart(geteuid, GATEWAY_UNITS)
    _follow_services(ctx.paths, geteuid, [changed for changed, _value in changes])
    lines += _follow_proxy(geteuid, [changed for changed, _value in changes])
    return CommandResult(text="\n".join(lines), data=_pair(*changes[0]))


def clear_setting(ctx: Context, *, geteuid: EffectiveUid) -> CommandResult:
    _require_root("clear", geteuid)
    key = setting(ctx.args.key).key
    with _changing(ctx):
        config = LocalConfig.load(ctx.paths.local_config, ignore_invalid=[key])
        value = config.clear(key)
        if key == CONNECTION_TYPE:
            _switch_connection_type(ctx.paths, str(value))
        else:
            config.save(ctx.paths.local_config)
    _follow_services(ctx.paths, geteuid, [key])
    shown = format_value(value)
    text = f"Config property {key} cleared" + (f", back to its default value {shown}" if shown else "")
    restarted = _restart(geteuid, GATEWAY_UNITS) if key == CONNECTION_TYPE else []
    text = "\n".join([text, *_follow_proxy(geteuid, [key]), *restarted])
    return CommandResult(text=text, data=_pair(key, value))


def _switch_connection_type(paths: AgentPaths, wanted: str) -> None:
    """Gateway mode on (the machine's linked gateway, the Arc proxy, a request through it) or
    off; the previous setting stays in force when switching on fails (docs/gateway.md)."""
    # Imported here: it needs the HTTPS client, which read-only commands do not load.
    from arc_agent.cli import gateway_mode

    if wanted == "gateway":
        gateway_mode.enter(paths, gateway_mode.linked_gateway(paths))
    else:
        gateway_mode.leave(paths)


def _follow_proxy(geteuid: EffectiveUid, keys: list[str]) -> list[str]:
    """The running services take a new proxy setting at once: each builds its connections from
    the settings when it starts, so those that run are restarted (docs/proxy.md)."""
    if not PROXY_SETTINGS & set(keys):
        return []
    return _restart(geteuid, PROXIED_UNITS)


def _restart(geteuid: EffectiveUid, units: tuple[str, ...]) -> list[str]:
    """Restart those of ``units`` that run; the line that says so."""
    return restart_running(units) if geteuid() == 0 else []


def _follow_services(paths: AgentPaths, geteuid: EffectiveUid, keys: list[str]) -> None:
    """The services started on demand follow the settings (docs/architecture.md, "Services
    started on demand"): gcad's path unit (``gcad.path``) waits for work and starts at boot while
    machine configuration is on (``guestconfiguration.enabled`` and not monitor mode), and is
    stopped and disabled, with gcad and its timer, while it is off, so that ``show`` says which
    (docs/machine-configuration.md, "Turning it off"); extd is woken when a setting it applies
    changed (its policy, its handlers' CPU quota)."""
    if geteuid() != 0 or not systemd_running():
        return
    if EXTENSION_SETTINGS & set(keys):
        wake(paths, "its settings changed", ["extd"])
    if not {GUEST_CONFIGURATION_ENABLED, CONFIG_MODE} & set(keys):
        return
    state = service_states([GCAD_UNIT])[GCAD_UNIT]
    if not state.installed:
        return
    off = guest_configuration_off(LocalConfig.load(paths.local_config))
    if bool(off) == (not state.running):
        return
    systemctl = which("systemctl") or "/usr/bin/systemctl"
    trigger = ON_DEMAND[GCAD_UNIT]
    on_demand = unit_states([trigger])[trigger].installed
    if off:
        commands = (
            [["disable", "--now", trigger], ["stop", GCAD_UNIT, timer_of(GCAD_UNIT)]]
            if on_demand
            else [["stop", GCAD_UNIT]]
        )
    else:  # on: waiting for work and at boot (a host set up in monitor mode never had it enabled)
        commands = [["enable", "--now", trigger]] if on_demand else [["enable", "--now", GCAD_UNIT]]
        if on_demand:
            wake(paths, "machine configuration turned on", ["gcad"])
    for action in commands:
        subprocess.run(  # noqa: S603 - a fixed argv
            [systemctl, *action], capture_output=True, check=False, timeout=60
        )


def info(ctx: Context) -> CommandResult:
    rows = [
        {
            "key": item.key,
            "type": item.type_name,
            "default": item.default,
            "allowed": item.allowed,
            "description": item.description,
        }
        for item in sorted(SETTINGS.values(), key=lambda found: found.key)
    ]
    header = ("Property", "Type", "Default", "Allowed values", "Description")
    table = [header] + [
        (
            str(row["key"]),
            str(row["type"]),
            format_value(SETTINGS[str(row["key"])].default),
            str(row["allowed"]),
            str(row["description"]),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1]
        for line in table
    ]
    return CommandResult(text="\n".join(lines), data={"properties": rows})
