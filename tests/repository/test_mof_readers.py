"""The agent (gcad) and the control plane each read machine configuration documents (``.mof``):
the control plane to check a package when it is published, the agent to evaluate it. Two
distributions, two readers (agent/src/arc_agent/gcad/mof.py, controlplane/src/arc_controlplane/
machines/mof.py); this test keeps them reading every document alike, and refusing alike."""

from __future__ import annotations

import pathlib
import zipfile

import pytest
from arc_agent.gcad import mof as agent_mof
from arc_controlplane.machines import mof as plane_mof
from hypothesis import given, settings
from hypothesis import strategies as st

TOP = pathlib.Path(__file__).resolve().parents[2]
DOC = '\ninstance of OMI_ConfigurationDocument { Name = "n"; };'
CORPUS = [
    'instance of nxFile as $a\n{\n  ResourceID = "[nxFile]x";\n  DestinationPath = "/tmp/x";\n'
    '  Mode = "0644";\n'
    '  Flags = {"a", "b"};\n  Size = 3;\n  On = True;\n  None = NULL;\n  Joined = "a" "b";\n};\n'
    'instance of OMI_ConfigurationDocument\n{\n  Name = "Doc";\n};\n',
    '/* comment */ // line\ninstance of OMI_ConfigurationDocument { Name = "Empty"; };',
    'instance of X { ResourceID = "[X]a"; A = "x\\"y\\\\z\\n"; };' + DOC,
    "instance of X { A = 1 };",
    'instance of X { ResourceID = "a"; };' + DOC,
    "instance of X { A = ?; };",
    'instance of X { ResourceID = "[X]a"; A = "\\q"; };' + DOC,
]


def shipped() -> list[str]:
    """The documents of the packages ``make configurations`` built (none before it ran)."""
    documents = []
    for package in sorted((TOP / "build/configurations").glob("*.zip")):
        with zipfile.ZipFile(package) as archive:
            documents += [archive.read(n).decode() for n in archive.namelist() if n.endswith(".mof")]
    return documents


def outcome(module: object, text: str) -> object:
    try:
        document = module.parse(text)  # type: ignore[attr-defined]
    except ValueError as exc:
        return ("refused", str(exc))
    return (document.name, [(r.class_name, r.alias, r.properties) for r in document.resources])


@pytest.mark.parametrize("text", CORPUS + shipped())
def test_both_readers_read_each_document_alike(text: str) -> None:
    assert outcome(agent_mof, text) == outcome(plane_mof, text)


@settings(max_examples=200)
@given(st.text(alphabet='instance of X{}=;,"\\$a1 \n[]/*TrueNULL', max_size=120))
def test_both_readers_agree_on_any_text(text: str) -> None:
    assert outcome(agent_mof, text) == outcome(plane_mof, text)


def test_what_the_control_plane_writes_the_agent_reads() -> None:
    written = plane_mof.render(
        "Doc", [("nxFile", "x", {"DestinationPath": "/tmp/x", "Mode": "0600", "On": False})]
    )
    (resource,) = agent_mof.parse(written).resources
    assert resource.properties["Mode"] == "0600" and resource.properties["On"] is False
