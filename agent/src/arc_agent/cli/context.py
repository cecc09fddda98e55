"""What every command receives: the parsed arguments, common options and the agent's paths."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from arc_agent.cli.options import CommonOptions
from arc_agent.paths import AgentPaths


@dataclass(frozen=True)
class Context:
    args: argparse.Namespace
    options: CommonOptions
    paths: AgentPaths
    parsers: Mapping[str, argparse.ArgumentParser]
    """The parser of each command by name, and the top-level one under ``""`` (for ``help``)."""
