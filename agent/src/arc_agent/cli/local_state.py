"""The machine's local connection state as ``disconnect`` resets it and a reconnect replaces it."""

from __future__ import annotations

import fnmatch

from arc_agent import ipc
from arc_agent.config.connection import clear_state
from arc_agent.fsutil import Directory, remove_if_present
from arc_agent.identity.store import MachineIdentity
from arc_agent.paths import AgentPaths


def reset_local_state(paths: AgentPaths) -> bool:
    """Forget the identity; whether there was a connection state. (Hold the state lock.)"""
    had_state = clear_state(paths.agent_config)
    MachineIdentity(paths).forget()
    remove_if_present(paths.control_plane_ca)
    forget_cached(paths)
    ipc.ask(paths.himds_socket, {"op": "reload"})
    return had_state


def forget_cached(paths: AgentPaths) -> None:
    """Remove what himds keeps of an identity (its status, its token keys). (Hold the state lock.)"""
    for directory, pattern in ((paths.status_dir, paths.himds_status.name), (paths.tokens_dir, "*.key")):
        try:
            with Directory(directory) as entries:
                for name in entries.names():
                    if fnmatch.fnmatchcase(name, pattern):
                        entries.remove(name)
        except OSError:
            continue  # not there (or not a directory: secure() mends that)
