"""``azcmagent extension list|remove``: the extensions installed on this machine, managed locally
(docs/agent-cli.md; docs/reference/azcmagent.md). Both work while disconnected. ``remove`` runs
each handler's disable and uninstall commands (in the handler's CPU scope, after waiting for a
command left running) and deletes it, as the extension service would; it
needs root and the extension service stopped (``systemctl stop extd.path extd``), since both change the same
state (AZCM0072 otherwise). While the control plane still asks for a removed extension, extd
installs it again when it runs: remove it there, or block it with ``extensions.blocklist``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from arc_agent.cli.context import Context
from arc_agent.cli.options import common_flags_parser
from arc_agent.cli.output import CommandResult
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.extd.executor import Commands
from arc_agent.extd.governance import CpuGovernor, cpu_limit_setting
from arc_agent.extd.handler import Handler, HandlerError
from arc_agent.extd.plan import Installed
from arc_agent.extd.records import Busy, Records, exclusive
from arc_agent.paths import AgentPaths
from arc_agent.systemd import systemd_running

ACTIONS = ("list", "remove")


def run(ctx: Context) -> CommandResult:
    """``azcmagent extension`` without an action."""
    raise AzcmError(
        ErrorCode.INVALID_ARGUMENT,
        "'azcmagent extension' needs an action: list or remove (e.g. 'azcmagent extension list')",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = common_flags_parser()
    actions = parser.add_subparsers(dest="extension_action", title="actions", metavar="ACTION")
    listing = actions.add_parser(
        "list", help="List the extensions installed on this machine", parents=[common], allow_abbrev=False
    )
    listing.set_defaults(handler=list_extensions)
    remove = actions.add_parser(
        "remove",
        help="Uninstall extensions from this machine (the extension service must be stopped)",
        parents=[common],
        allow_abbrev=False,
    )
    which = remove.add_mutually_exclusive_group(required=True)
    which.add_argument("-n", "--name", help="the extension's name (as `extension list` shows it)")
    which.add_argument("-a", "--all", action="store_true", help="every installed extension")
    remove.set_defaults(handler=remove_extensions)


def _records(ctx: Context) -> Records:
    return Records(ctx.paths.extension_state_dir / "records")


def _row(record: Installed) -> dict[str, object]:
    return {
        "name": record.name,
        "publisher": record.publisher,
        "type": record.type,
        "version": record.version,
        "state": record.handler_state,
        "status": record.status,
        "message": record.last_message,
    }


def removed(record: Installed) -> bool:
    """Removed, kept only until the control plane has forgotten it (extd then forgets it too)."""
    return record.handler_state == "NotInstalled" and record.status == "success"


def list_extensions(ctx: Context) -> CommandResult:
    rows = [_row(record) for _, record in sorted(_records(ctx).load().items()) if not removed(record)]
    if not rows:
        return CommandResult(text="No extensions are installed on this machine.", data={"extensions": []})
    header = ("NAME", "TYPE", "VERSION", "STATE", "STATUS")
    table = [header] + [
        (
            str(r["name"]),
            f"{r['publisher']}.{r['type']}",
            str(r["version"]),
            str(r["state"]),
            str(r["status"]),
        )
        for r in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    return CommandResult(text="\n".join(lines), data={"extensions": rows})


def _wrapper(paths: AgentPaths) -> Callable[[Handler], Sequence[str]]:
    """The handlers' CPU scopes, as extd gives them (none without systemd)."""
    if not systemd_running():
        return lambda handler: ()
    return CpuGovernor(cpu_limit_setting(paths.local_config))


def remove_extensions(ctx: Context) -> CommandResult:
    if os.geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, "'azcmagent extension remove' must run as root (use sudo)")
    paths = ctx.paths
    try:
        with exclusive(paths.extension_state_dir):
            records = _records(ctx)
            installed = records.load()
            if ctx.args.all:
                chosen = list(installed.values())
            else:
                found = installed.get(ctx.args.name.lower())
                if found is None:
                    names = ", ".join(sorted(record.name for record in installed.values())) or "none"
                    raise AzcmError(
                        ErrorCode.INVALID_ARGUMENT,
                        f"no extension named {ctx.args.name!r} is installed (installed: {names}); "
                        "'azcmagent extension list' shows them",
                    )
                chosen = [found]
            removed: list[str] = []
            from arc_agent.cpclient.outbound import proxy_policy  # (here: list needs no TLS)
            from arc_agent.cpclient.proxy import extension_environment

            environment = extension_environment(proxy_policy(paths), os.environ)
            commands = Commands(records, _wrapper(paths), environment=environment)
            for record in chosen:
                record = commands.settle(record)
                handler = Handler(
                    record.publisher, record.type, record.version,
                    lib_dir=paths.waagent_dir, log_root=paths.extension_logs_dir,
                )  # fmt: skip
                if record.version and handler.folder.exists():
                    try:
                        commands.run(handler, "disable", record)
                        commands.run(handler, "uninstall", record)
                    except HandlerError as exc:
                        raise AzcmError(
                            ErrorCode.EXTENSION_TOOL,
                            f"{record.name} was not removed: {exc}"
                            + (f" (removed before it: {', '.join(removed)})" if removed else ""),
                        ) from None
                    handler.remove()
                records.forget(record.name)
                removed.append(record.name)
    except Busy:
        raise AzcmError(
            ErrorCode.EXTENSION_TOOL,
            "the extension service (extd) is running; stop it first, with the unit that starts it on "
            "demand: systemctl stop extd.path extd (start it again afterwards: systemctl start extd.path)",
        ) from None
    text = ("\n".join(f"Extension {name} removed" for name in removed) or "No extensions are installed.") + (
        "\nWhile the control plane asks for an extension, the extension service installs it again; "
        "remove it there, or block it: azcmagent config set extensions.blocklist --add Publisher/Type"
        if removed
        else ""
    )
    return CommandResult(text=text, data={"removed": removed})
