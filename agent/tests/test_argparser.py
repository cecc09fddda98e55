"""The agent's argument parser: usage errors as AZCM0023, and values that begin with '-'."""

from __future__ import annotations

import pytest

from arc_agent.argparser import AzcmArgumentParser
from arc_agent.errors import AzcmError


def parser() -> AzcmArgumentParser:
    top = AzcmArgumentParser(prog="azcmagent", allow_abbrev=False)
    commands = top.add_subparsers(dest="command")
    connect = commands.add_parser("connect", allow_abbrev=False)
    connect.add_argument("-p", "--service-principal-secret")
    connect.add_argument("-t", "--tags", action="append")
    connect.add_argument("-j", "--json", action="store_true")
    return top


@pytest.mark.parametrize(
    "argv",
    [
        ["connect", "-p", "-Xy3_secret", "-j"],
        ["connect", "--service-principal-secret", "-Xy3_secret", "-j"],
        ["connect", "--service-principal-secret=-Xy3_secret", "-j"],
        ["connect", "-j", "-p-Xy3_secret"],
    ],
)
def test_a_value_that_begins_with_a_dash_is_taken_as_the_value(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert args.service_principal_secret == "-Xy3_secret" and args.json is True


def test_an_option_is_not_taken_for_a_value_and_mistakes_are_azcm0023() -> None:
    with pytest.raises(AzcmError, match=r"expected one argument"):
        parser().parse_args(["connect", "-p", "-j"])
    args = parser().parse_args(["connect", "-t", "-env=prod", "-t", "x=y"])
    assert args.tags == ["-env=prod", "x=y"]
