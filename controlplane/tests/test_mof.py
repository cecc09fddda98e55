"""The ``.mof`` reader and writer of machine configuration packages (machines/mof.py): what DSC's
compiler writes reads back, every value kind round-trips, and what is not a document is refused
naming its line."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_controlplane.machines import mof

COMPILED = r"""/*
@TargetNode='localhost'
@GeneratedBy=someone
*/

instance of MSFT_ChefInSpecResource as $MSFT_ChefInSpecResource1ref
{
  ResourceID = "[ChefInSpecResource]Audit Linux path exists";
  Name = "linux-path";
  SourceInfo = "C:\\code\\config.ps1::5::5::ChefInSpecResource";
  ModuleName = "GuestConfiguration";
  ModuleVersion = "1.0.0";
  // a comment
  AttributesYmlContent = "path: /tmp" "/x";
  Weight = 3; Ratio = 0.5; Enabled = True; Nothing = NULL;
  DependsOn = {"[nxFile]a", "[nxFile]b"};
  ConfigurationName = "AuditFilePathExists";
};
instance of OMI_ConfigurationDocument
{
  Version="2.0.0";
  MinimumCompatibleVersion = "1.0.0";
  CompatibleVersionAdditionalProperties= {"Omi_BaseResource:ConfigurationName"};
  Name="AuditFilePathExists";
};
"""


def test_a_compiled_document_is_read() -> None:
    document = mof.parse(COMPILED)
    assert document.name == "AuditFilePathExists"
    (resource,) = document.resources
    assert (
        resource.class_name == "MSFT_ChefInSpecResource" and resource.alias == "$MSFT_ChefInSpecResource1ref"
    )
    assert resource.properties["SourceInfo"] == "C:\\code\\config.ps1::5::5::ChefInSpecResource"
    assert resource.properties["AttributesYmlContent"] == "path: /tmp/x"
    assert (resource.properties["Weight"], resource.properties["Ratio"]) == (3, 0.5)
    assert resource.properties["Enabled"] is True and resource.properties["Nothing"] is None
    assert resource.properties["DependsOn"] == ["[nxFile]a", "[nxFile]b"]
    assert document.find("[chefinspecresource]AUDIT linux path exists") is resource


@pytest.mark.parametrize(
    "text, says",
    [
        ("instance of X as $x { A = 1; };", "has 0 OMI_ConfigurationDocument instances"),
        ('instance of X { ResourceID = "[X]a"; A = 1 };'
         'instance of OMI_ConfigurationDocument { Name = "n"; };',
         "line 1: expected ;, found '}'"),
        ('instance of X { ResourceID = "[X]a"; A = "x\\q"; };', "unknown escape \\q"),
        ('instance of X { ResourceID = "a"; };\ninstance of OMI_ConfigurationDocument { Name = "n"; };',
         "its ResourceID must be [Class]Name"),
        ('instance of X { ResourceID = "[X]a"; A = 1; A = 2; };', "X sets A twice"),
        ('instance of X { ResourceID = "[X]a"; };\ninstance of X { ResourceID = "[x]A"; };\n'
         'instance of OMI_ConfigurationDocument { Name = "n"; };', "two resources have the ResourceID [x]A"),
        ("instance of OMI_ConfigurationDocument { Version = \"2\"; };", "has no Name"),
        ("instance of X { A = ?; };", "line 1: unexpected '?"),
        ("instance of X {\n A = \"open", "line 2: unexpected"),
    ],
)  # fmt: skip
def test_what_is_not_a_document_is_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(mof.MofError) as refused:
        mof.parse(text)
    assert says in str(refused.value)


scalars = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=40),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.booleans(),
    st.none(),
)
names = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)


@given(st.dictionaries(names, st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=6))
def test_every_value_round_trips(properties: dict[str, object]) -> None:
    properties = {k: v for k, v in properties.items() if k not in ("ResourceID", "ConfigurationName")}
    text = mof.render("Roundtrip", [("nxFile", "one", properties)])
    (resource,) = mof.parse(text).resources
    assert {
        k: v for k, v in resource.properties.items() if k not in ("ResourceID", "ConfigurationName")
    } == properties
