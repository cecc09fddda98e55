"""``azcmagent disconnect``: delete the machine resource, then reset the local state.

With ``-f/--force-local-only`` the control plane is not called: only this machine forgets its
identity (the way out for an expired, cloned or broken machine; docs/reference/azcmagent.md,
docs/reference/connection.md). The local
reset removes the connection state first (from then on the machine is not connected, even if
the rest is interrupted), then the key, the credential and the control plane's CA copy, and
tells himds.
"""

from __future__ import annotations

import argparse

from arc_agent.cli.connect import add_auth_arguments, control_plane, credentials
from arc_agent.cli.context import Context
from arc_agent.cli.local_state import reset_local_state
from arc_agent.cli.output import CommandResult
from arc_agent.config.connection import load_state
from arc_agent.config.statedir import secure, state_lock
from arc_agent.cpclient.onboarding import delete_machine, management_token
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.transport import HttpsClient
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.privileges import require_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--force-local-only",
        action="store_true",
        help="reset this machine only; the resource stays in the control plane",
    )
    parser.add_argument("--user-tenant-id", metavar="GUID", help="accepted for compatibility; not needed")
    add_auth_arguments(parser)


def disconnect(ctx: Context) -> CommandResult:
    require_root("disconnect")
    paths = ctx.paths
    if paths.state_dir.is_dir():
        secure(paths)
    with state_lock(paths, code=ErrorCode.DISCONNECT_FAILED):
        return _disconnect(ctx)


def _disconnect(ctx: Context) -> CommandResult:
    args, paths = ctx.args, ctx.paths
    force = bool(getattr(args, "force_local_only", False))
    try:
        state = load_state(paths.agent_config)
    except AzcmError:
        if not force:
            raise
        state = None  # unusable state: --force-local-only is the way out, so it must work
    if force:
        reset_local_state(paths)
        what = f" ({state.resource_id} stays in the control plane)" if state else ""
        return CommandResult(
            text=f"The local state of this machine was reset{what}.",
            data={"status": "Disconnected", "resourceId": state.resource_id if state else ""},
        )
    if state is None:
        reset_local_state(paths)  # leftovers of an interrupted connect, if any
        return CommandResult(
            text="This machine is not connected; nothing to disconnect.",
            data={"status": "Disconnected", "resourceId": ""},
        )
    creds = credentials(args, known_tenant=state.tenant_id)
    url, ca_file = control_plane(args, ctx, known_url=state.control_plane_url)
    if ca_file is None and paths.control_plane_ca.exists():
        ca_file = paths.control_plane_ca  # root's copy, in root's directory (statedir.py)
    named = (
        state.endpoints if url.rstrip("/").lower() == state.control_plane_url.rstrip("/").lower() else None
    )
    client = HttpsClient(url, ca_file, proxies=proxy_policy(paths), named=named)
    try:
        token = management_token(client, creds)
        deleted = delete_machine(client, token, state.vm_id, access_token_given=bool(creds.access_token))
    except AzcmError as error:
        if error.code == ErrorCode.NETWORK_ERROR:
            raise AzcmError(
                ErrorCode.RESOURCE_DELETION_FAILED,
                f"{error.message}. To reset this machine only, use --force-local-only",
            ) from None
        raise
    finally:
        client.close()
    reset_local_state(paths)
    gone = "deleted" if deleted else "was already gone"
    return CommandResult(
        text=f"Disconnected: the resource {state.resource_id} {gone}, and the local state was reset.",
        data={"status": "Disconnected", "resourceId": state.resource_id},
    )
