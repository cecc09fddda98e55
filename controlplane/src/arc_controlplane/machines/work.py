"""New work for a machine's agent: the one place that bumps ``Machine.generation``.

The agent holds one long-poll (himds's) and learns of new work by the generation; it starts its
extension service (extd) and its machine configuration service (gcad) on demand. So that a change
starts only the service it is for, each bump also says which services the work is for: their own
generation (``extensions_generation``, ``configuration_generation``) is set to the new one, and the
machine's self-read answers them (docs/agent-protocol.md, 5.6). Work that is the agent's own
(tags, which it shows) concerns neither.
"""

from __future__ import annotations

from typing import Final

from arc_controlplane.db.tables import Machine

EXTENSIONS: Final = "extd"
"""Extensions and agent upgrades (the extension service upgrades the agent)."""
CONFIGURATION: Final = "gcad"
"""Guest configuration assignments."""
SERVICES: Final = (EXTENSIONS, CONFIGURATION)


def bump(machine: Machine, *services: str) -> None:
    """New work for ``machine``'s agent, for ``services`` (none: for the agent itself)."""
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"no such agent service: {sorted(unknown)}")
    machine.generation = (machine.generation or 0) + 1
    if EXTENSIONS in services:
        machine.extensions_generation = machine.generation
    if CONFIGURATION in services:
        machine.configuration_generation = machine.generation


def service_generations(
    extensions_generation: int | None, configuration_generation: int | None
) -> dict[str, int]:
    """What the self-read answers: each service's generation (0 before any work for it)."""
    return {EXTENSIONS: extensions_generation or 0, CONFIGURATION: configuration_generation or 0}
