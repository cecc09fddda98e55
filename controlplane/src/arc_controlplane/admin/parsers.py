"""The arguments of the admin subcommands, validated by argparse types.

A mistake in an argument is a one-line usage error (exit 2). This module stays light (no
database or web framework imports) so that ``arc-controlplane --help`` is fast; the commands
run in ``admin/commands.py``.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arc_controlplane.auth.roles import Role, find_role
from arc_controlplane.settings import DEFAULT_BIND, DEFAULT_PORT
from arc_controlplane.timing import (
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    DISCONNECTED_AFTER_INTERVALS,
    MAX_HEARTBEAT_INTERVAL_SECONDS,
    MIN_HEARTBEAT_INTERVAL_SECONDS,
)

_SCOPE = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}(/resourceGroups/[-\w._()]{1,90})?/?$", re.IGNORECASE)
SCOPE_FORM = "/subscriptions/<id> or /subscriptions/<id>/resourceGroups/<name>"
DEFAULT_LOCATION = "westeurope"
DEFAULT_RESOURCE_GROUP = "arc-servers"
# ARM's rule, as resource_ids.py has it (that module imports the web framework; a test keeps both equal).
RESOURCE_GROUP_NAME = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_LOCATION = re.compile(r"^[a-z0-9]{1,64}$")
MAX_NAME = 120
MAX_AUDIT_LIMIT = 10_000


# -- argument types ---------------------------------------------------------------------------


def _role(value: str) -> Role:
    try:
        return find_role(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scope(value: str) -> str:
    if not _SCOPE.match(value.strip()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a scope: use {SCOPE_FORM}")
    return value.strip()


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an id (a GUID such as {uuid.uuid4()})") from None


def _display_name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise argparse.ArgumentTypeError(f"{value!r} is not a name: use 1-{MAX_NAME} printable characters")
    return name


def _location(value: str) -> str:
    location = value.replace(" ", "").lower()
    if not _LOCATION.match(location):
        raise argparse.ArgumentTypeError(f"{value!r} is not a location: use a region name such as westeurope")
    return location


def _resource_group(value: str) -> str:
    if not RESOURCE_GROUP_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a resource group name: use 1-90 letters, digits, '_', '-', '.', '(' or ')', "
            "not ending in '.'"
        )
    return value


def _public_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 address
        valid = False
    if not valid or parts.query or parts.fragment or parts.path.strip("/"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL of this server: use https://HOST[:PORT]")
    return value.rstrip("/")


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of entries (1-{MAX_AUDIT_LIMIT})")
    return limit


# -- parsers ----------------------------------------------------------------------------------


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")


def add_admin_commands(
    commands: argparse._SubParsersAction[Any],
    store: argparse.ArgumentParser,
    port_type: Callable[[str], int],
    name_type: Callable[[str], str],
    interval_type: Callable[[str], int],
) -> None:
    """Add ``init``, ``sp``, ``role``, ``audit``, ``machine`` and ``extension``; ``store`` holds
    --data-dir and --database-url; ``port_type``, ``name_type`` and ``interval_type`` validate as
    for ``serve``."""
    init = commands.add_parser(
        "init",
        parents=[store],
        help="create the data directory, database, CA, keys, tenant and onboarding principal",
        description=(
            "Create everything a new control plane needs and a service principal 'arc-onboarding' with "
            "the Onboarding role on the new resource group; print its client secret once. Running it "
            "again changes nothing and shows the ids."
        ),
        allow_abbrev=False,
    )
    init.add_argument(
        "--location",
        type=_location,
        default=DEFAULT_LOCATION,
        metavar="REGION",
        help=f"location of the resource group (default {DEFAULT_LOCATION})",
    )
    init.add_argument(
        "--resource-group",
        type=_resource_group,
        default=DEFAULT_RESOURCE_GROUP,
        metavar="NAME",
        help=f"resource group that onboarded machines go to (default {DEFAULT_RESOURCE_GROUP})",
    )
    init.add_argument(
        "--public-url",
        type=_public_url,
        metavar="URL",
        help="how clients reach the server, recorded for scripts; give serve the same (default: "
        "https://BIND:PORT)",
    )
    init.add_argument("--bind", type=name_type, metavar="ADDR", help=f"as for serve (default {DEFAULT_BIND})")
    init.add_argument("--port", type=port_type, help=f"as for serve (default {DEFAULT_PORT})")
    _json_flag(init)
    init.set_defaults(admin_command="init")

    sp = commands.add_parser("sp", help="service principals", allow_abbrev=False)
    sp_commands = sp.add_subparsers(dest="sp_command", metavar="COMMAND", required=True)
    create = sp_commands.add_parser(
        "create",
        parents=[store],
        help="create a service principal with a role at a scope",
        description="Create a service principal with a client secret (printed once) or a certificate.",
        allow_abbrev=False,
    )
    create.add_argument("--name", type=_display_name, required=True, help="display name")
    _role_and_scope(create)
    create.add_argument(
        "--certificate",
        type=Path,
        metavar="PEMFILE",
        help="authenticate with this certificate (client_assertion) instead of a secret; only the "
        "certificate(s) in the file are kept, never a private key",
    )
    create.add_argument("--tenant", type=_guid, metavar="ID", help="tenant (default: the one init made)")
    _json_flag(create)
    create.set_defaults(admin_command="sp_create")

    listing = sp_commands.add_parser(
        "list", parents=[store], help="list service principals", allow_abbrev=False
    )
    listing.add_argument("--all", action="store_true", help="include the managed identities of machines")
    _json_flag(listing)
    listing.set_defaults(admin_command="sp_list")

    delete = sp_commands.add_parser(
        "delete",
        parents=[store],
        help="delete a service principal and its role assignments",
        allow_abbrev=False,
    )
    delete.add_argument("client_id", type=_guid, metavar="CLIENT_ID", help="client id (or object id)")
    _json_flag(delete)
    delete.set_defaults(admin_command="sp_delete")

    role = commands.add_parser("role", help="role assignments", allow_abbrev=False)
    role_commands = role.add_subparsers(dest="role_command", metavar="COMMAND", required=True)
    assign_parser = role_commands.add_parser(
        "assign", parents=[store], help="give a principal a role at a scope", allow_abbrev=False
    )
    assign_parser.add_argument(
        "--principal", type=_guid, required=True, metavar="ID", help="client id or object id"
    )
    _role_and_scope(assign_parser)
    _json_flag(assign_parser)
    assign_parser.set_defaults(admin_command="role_assign")
    role_list = role_commands.add_parser(
        "list", parents=[store], help="list role assignments", allow_abbrev=False
    )
    role_list.add_argument("--principal", type=_guid, metavar="ID", help="only this principal's")
    _json_flag(role_list)
    role_list.set_defaults(admin_command="role_list")

    audit = commands.add_parser("audit", help="the audit log", allow_abbrev=False)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    audit_list = audit_commands.add_parser(
        "list", parents=[store], help="show the newest entries first", allow_abbrev=False
    )
    audit_list.add_argument("--limit", type=_limit, default=50, metavar="N", help="how many (default 50)")
    _json_flag(audit_list)
    audit_list.set_defaults(admin_command="audit_list")

    machine = commands.add_parser(
        "machine", help="the machines as the control plane sees them", allow_abbrev=False
    )
    machine_commands = machine.add_subparsers(dest="machine_command", metavar="COMMAND", required=True)
    machine_list = machine_commands.add_parser(
        "list",
        parents=[store],
        help="list machines with their status, agent version and last heartbeat",
        description=(
            "List the machines sorted by subscription, resource group and name, with the status that "
            "the management API shows and the last heartbeat (which it does not show). A filter that "
            "names an unknown subscription or resource group lists nothing."
        ),
        allow_abbrev=False,
    )
    machine_list.add_argument(
        "--resource-group", type=_resource_group, metavar="NAME", help="only the machines of this group"
    )
    machine_list.add_argument(
        "--subscription-id", type=_guid, metavar="ID", help="only the machines of this subscription"
    )
    _heartbeat_interval(machine_list, interval_type)
    _json_flag(machine_list)
    machine_list.set_defaults(admin_command="machine_list")
    _add_extension_commands(commands, store)
    _add_agent_commands(commands, store, interval_type)
    _add_configuration_commands(commands, store)


def _extension_identity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publisher", required=True, metavar="NAME", help="e.g. Microsoft.Azure.Extensions")
    parser.add_argument("--type", required=True, metavar="NAME", help="e.g. CustomScript")
    parser.add_argument("--version", required=True, metavar="VERSION", help="e.g. 2.1.0")


def _add_extension_commands(
    commands: argparse._SubParsersAction[Any], store: argparse.ArgumentParser
) -> None:
    extension = commands.add_parser(
        "extension", help="the extension catalogue: packages agents may install", allow_abbrev=False
    )
    extension_commands = extension.add_subparsers(dest="extension_command", metavar="COMMAND", required=True)
    publish = extension_commands.add_parser(
        "publish",
        parents=[store],
        help="publish an extension handler package (a zip with HandlerManifest.json)",
        description=(
            "Check the package (a VM extension handler zip, HandlerManifest.json at its top), keep it in "
            "DATA_DIR/packages, and sign its SHA-256 with the control plane's package-signing key; agents "
            "check both before anything of it runs (docs/extensions.md)."
        ),
        allow_abbrev=False,
    )
    publish.add_argument("package", type=Path, metavar="PACKAGE.zip", help="the handler package")
    _extension_identity(publish)
    _json_flag(publish)
    publish.set_defaults(admin_command="extension_publish")
    listing = extension_commands.add_parser(
        "list", parents=[store], help="list the published packages", allow_abbrev=False
    )
    _json_flag(listing)
    listing.set_defaults(admin_command="extension_list")
    remove = extension_commands.add_parser(
        "remove",
        parents=[store],
        help="remove a published package (extensions that use it are not touched)",
        allow_abbrev=False,
    )
    _extension_identity(remove)
    _json_flag(remove)
    remove.set_defaults(admin_command="extension_remove")


def _heartbeat_interval(parser: argparse.ArgumentParser, interval_type: Callable[[str], int]) -> None:
    parser.add_argument(
        "--heartbeat-interval",
        type=interval_type,
        default=DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help=(
            f"the --heartbeat-interval that serve runs with, {MIN_HEARTBEAT_INTERVAL_SECONDS}-"
            f"{MAX_HEARTBEAT_INTERVAL_SECONDS} (default {DEFAULT_HEARTBEAT_INTERVAL_SECONDS}); a machine "
            f"shows Disconnected after {DISCONNECTED_AFTER_INTERVALS} intervals without a heartbeat"
        ),
    )


def _add_agent_commands(
    commands: argparse._SubParsersAction[Any],
    store: argparse.ArgumentParser,
    interval_type: Callable[[str], int],
) -> None:
    agent = commands.add_parser(
        "agent", help="the agent package store: agent versions machines may upgrade to", allow_abbrev=False
    )
    agent_commands = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)
    publish = agent_commands.add_parser(
        "publish",
        parents=[store],
        help="publish an agent version (an agent bundle: targets.json, SHA256SUMS, one archive per target)",
        description=(
            "Check every archive of the bundle against targets.json and SHA256SUMS, keep it in "
            "DATA_DIR/packages/agent, and sign its SHA-256 with the control plane's package-signing key; "
            "agents check both before they upgrade to it (docs/agent-upgrade.md)."
        ),
        allow_abbrev=False,
    )
    publish.add_argument(
        "bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle ('make wheelhouse' builds one)"
    )
    _json_flag(publish)
    publish.set_defaults(admin_command="agent_publish")
    listing = agent_commands.add_parser(
        "list", parents=[store], help="list the published agent packages", allow_abbrev=False
    )
    _json_flag(listing)
    listing.set_defaults(admin_command="agent_list")
    remove = agent_commands.add_parser(
        "remove",
        parents=[store],
        help="remove a published agent version (every target; machines running it are not touched)",
        allow_abbrev=False,
    )
    remove.add_argument("--version", required=True, metavar="VERSION", help="e.g. 1.64.3414.2961")
    _json_flag(remove)
    remove.set_defaults(admin_command="agent_remove")
    rollout = agent_commands.add_parser(
        "rollout",
        parents=[store],
        help="the automatic upgrade rollout: the version offered, its batches, halted versions and why",
        allow_abbrev=False,
    )
    _heartbeat_interval(rollout, interval_type)
    _json_flag(rollout)
    rollout.set_defaults(admin_command="agent_rollout")


def _add_configuration_commands(
    commands: argparse._SubParsersAction[Any], store: argparse.ArgumentParser
) -> None:
    configuration = commands.add_parser(
        "configuration",
        help="the machine configuration package store: packages guest configuration assignments name",
        allow_abbrev=False,
    )
    configuration_commands = configuration.add_subparsers(
        dest="configuration_command", metavar="COMMAND", required=True
    )
    publish = configuration_commands.add_parser(
        "publish",
        parents=[store],
        help="publish a machine configuration package (a zip with <Name>.mof and <Name>.metaconfig.json)",
        description=(
            "Check the package (its document parses, its metaconfig gives Type and Version, at most 100 MB "
            "unpacked), keep it in DATA_DIR/packages/configuration, and sign its SHA-256 with the control "
            "plane's package-signing key; agents check both before they evaluate it "
            "(docs/machine-configuration.md)."
        ),
        allow_abbrev=False,
    )
    publish.add_argument("package", type=Path, metavar="PACKAGE.zip", help="the package")
    _json_flag(publish)
    publish.set_defaults(admin_command="configuration_publish")
    listing = configuration_commands.add_parser(
        "list", parents=[store], help="list the published machine configuration packages", allow_abbrev=False
    )
    _json_flag(listing)
    listing.set_defaults(admin_command="configuration_list")
    remove = configuration_commands.add_parser(
        "remove",
        parents=[store],
        help="remove a published package (machines keep evaluating their cached copy)",
        allow_abbrev=False,
    )
    remove.add_argument("--name", required=True, metavar="NAME", help="the configuration's name")
    remove.add_argument("--version", required=True, metavar="VERSION", help="e.g. 1.0.0")
    _json_flag(remove)
    remove.set_defaults(admin_command="configuration_remove")
    build = configuration_commands.add_parser(
        "build",
        help="build a package from a document (JSON: name, version, type, resources)",
        description=(
            "Write OUT_DIR/<Name>.zip: the document compiled into <Name>.mof as DSC's compiler writes it, "
            "and <Name>.metaconfig.json; checked as publish checks it (docs/machine-configuration.md)."
        ),
        allow_abbrev=False,
    )
    build.add_argument("document", type=Path, metavar="DOCUMENT.json", help="the configuration document")
    build.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="where the zip goes")
    _json_flag(build)
    build.set_defaults(admin_command="configuration_build")


def _role_and_scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        type=_role,
        required=True,
        help="'Azure Connected Machine Onboarding' (onboarding), 'Azure Connected Machine Resource "
        "Administrator' (resource administrator), Reader or Owner",
    )
    parser.add_argument("--scope", type=_scope, required=True, metavar="SCOPE", help=SCOPE_FORM)
