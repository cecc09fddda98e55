from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cli.configfile import MAX_SIZE, parse_command_line, read_config_file
from arc_agent.cli.flatyaml import FlatYamlError, parse_flat_yaml
from arc_agent.cli.options import common_flags_parser
from arc_agent.errors import AzcmError, ErrorCode

SECRET = "s3cr3t-Value-42"

# --- the flat YAML reader ----------------------------------------------------------------------


def test_yaml_scalars() -> None:
    text = "\n".join(
        [
            "# a comment",
            "---",
            "",
            "service-principal-id: 0000-1111   # trailing comment",
            "service-principal-secret: 'it''s # not a comment'",
            "tags: \"env=prod,'Cost Center'='IT Ops'\"",
            "verbose: true",
            "json: FALSE",
            "count: 42",
            "negative: -7",
            "location: westeurope",
            "version: 1.64",
            "url: https://arc.example.com:8443/x#frag",
            "hash: a#b",
            "empty: ''",
            '"quoted-key": value',
            "'single-key'  :   spaced value  ",
            'escapes: "tab\\tnl\\nquote\\"back\\\\slash\\u00e9\\x41"',
        ]
    )
    assert parse_flat_yaml(text) == {
        "service-principal-id": "0000-1111",
        "service-principal-secret": "it's # not a comment",
        "tags": "env=prod,'Cost Center'='IT Ops'",
        "verbose": True,
        "json": False,
        "count": 42,
        "negative": -7,
        "location": "westeurope",
        "version": "1.64",
        "url": "https://arc.example.com:8443/x#frag",
        "hash": "a#b",
        "empty": "",
        "quoted-key": "value",
        "single-key": "spaced value",
        "escapes": 'tab\tnl\nquote"back\\slash\u00e9A',
    }


def test_yaml_crlf_bom_and_empty() -> None:
    assert parse_flat_yaml("\ufeffverbose: true\r\njson: true\r\n") == {"verbose": True, "json": True}
    assert parse_flat_yaml("") == {}
    assert parse_flat_yaml("# only comments\n\n   \n") == {}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\n  b: 2\n", 2, "indented line"),
        ("a:\n  b: 2\n", 1, "has no value"),
        ("a: # nothing\n", 1, "has no value"),
        ("- a\n", 1, "lists are not supported"),
        ("{a: 1}\n", 1, "a JSON file must start with '{'"),
        ("a: [1, 2]\n", 1, "starts with '['"),
        ("a: {b: 1}\n", 1, "starts with '{'"),
        ("a: &anchor x\n", 1, "starts with '&'"),
        ("a: *anchor\n", 1, "starts with '*'"),
        ("a: !!str x\n", 1, "starts with '!'"),
        ("a: |\n  text\n", 1, "starts with '|'"),
        ("a: >\n", 1, "starts with '>'"),
        ("a: - x\n", 1, "starts with '-'"),
        ("a: yes\n", 1, "ambiguous"),
        ("a: Off\n", 1, "ambiguous"),
        ("a: null\n", 1, "is null"),
        ("a: ~\n", 1, "is null"),
        ("a: 0755\n", 1, "plain decimal"),
        ("a: 0x1F\n", 1, "plain decimal"),
        ("a: 1_000\n", 1, "plain decimal"),
        ("a: 1:30\n", 1, "plain decimal"),
        ("a: b: c\n", 1, "contains ': '"),
        ("a: b:\n", 1, "contains ': '"),
        ("a:b\n", 1, "expected a space after ':'"),
        ("just text\n", 1, "expected 'flag-name: value'"),
        ("a: 1\nb: 2\na: 3\n", 3, "given twice (first on line 1)"),
        ("a: 'open\n", 1, "does not end on this line"),
        ('a: "open\n', 1, "does not end on this line"),
        ("a: 'x' y\n", 1, "unexpected text after the quoted value"),
        ('a: "\\q"\n', 1, "unsupported escape"),
        ('a: "\\u12"\n', 1, "bad \\u escape"),
        ('a: "\\ud800"\n', 1, "bad \\u escape"),
        ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
        ("a: 1\n...\n", 2, "several YAML documents"),
        ("'a' b: 1\n", 1, "expected ':' after the quoted name"),
        ("%YAML 1.2\na: 1\n", 1, "expected 'flag-name: value'"),
    ],
)
def test_yaml_refusals_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(FlatYamlError) as info:
        parse_flat_yaml(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert words in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        f"service-principal-secret: {SECRET}: x\n",
        f"service-principal-secret: '{SECRET}\n",
        f"service-principal-secret: [{SECRET}]\n",
        f"  service-principal-secret: {SECRET}\n",
        f'service-principal-secret: "{SECRET}\\q"\n',
    ],
)
def test_yaml_errors_never_repeat_the_value(text: str) -> None:
    with pytest.raises(FlatYamlError) as info:
        parse_flat_yaml(text)
    assert SECRET not in str(info.value)


# --- reading the file --------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_json_and_yaml_files(tmp_path: Path) -> None:
    as_json = write(tmp_path, "c.json", '  \n{"verbose": true, "tags": "a=b", "count": 3}')
    as_yaml = write(tmp_path, "c.yaml", "verbose: true\ntags: a=b\ncount: 3\n")
    expected = {"verbose": True, "tags": "a=b", "count": 3}
    assert read_config_file(as_json) == expected
    assert read_config_file(as_yaml) == expected


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        ('{"a": 1, "a": 2}', 23, "'a' is given twice"),
        ("[1, 2]", 23, "must hold a JSON object"),
        ('{"a": ', 23, "is not valid JSON"),
        (b"verbose: \xff\n", 23, "is not UTF-8 text"),
        ("a: yes\n", 23, "line 1: "),
        ("x" * (MAX_SIZE + 1), 23, f"larger than {MAX_SIZE} bytes"),
    ],
)
def test_bad_files(tmp_path: Path, content: str | bytes, code: int, words: str) -> None:
    path = write(tmp_path, "c", content)
    with pytest.raises(AzcmError) as info:
        read_config_file(path)
    assert info.value.code == code
    assert info.value.message.startswith(f"config file {str(path)!r}")
    assert words in info.value.message


def test_missing_or_unreadable_file_is_azcm0019(tmp_path: Path) -> None:
    for path, words in ((tmp_path / "missing.json", "does not exist"), (tmp_path, "cannot read config file")):
        with pytest.raises(AzcmError) as info:
            read_config_file(path)
        assert info.value.code == ErrorCode.BAD_CONFIG_FILE_PATH
        assert words in info.value.message


# --- parse_command_line with a throwaway command table -----------------------------------------


def positive(text: str) -> int:
    number = int(text)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def build() -> AzcmArgumentParser:
    common = common_flags_parser()
    root = AzcmArgumentParser(prog="azcmagent", parents=[common], allow_abbrev=False)
    root.add_argument("--version", action="store_true")
    commands = root.add_subparsers(dest="command")
    connect = commands.add_parser("connect", parents=[common], allow_abbrev=False)
    connect.add_argument("-i", "--service-principal-id")
    connect.add_argument("-p", "--service-principal-secret", help="secret (default %(default)s)")
    connect.add_argument("-g", "--resource-group", required=True)
    connect.add_argument("--tags", default="")
    connect.add_argument("--retries", type=positive, default="3")
    connect.add_argument("--cloud", choices=["AzureCloud", "AzureChinaCloud"], default="AzureCloud")
    connect.add_argument("--ignore-network-check", action="store_true")
    connect.add_argument("--keep", action="store_false", dest="delete")
    connect.add_argument("--extension", action="append", dest="extensions")
    connect.add_argument("--ports", nargs="+", type=int)
    connect.add_argument("--pair", nargs=2)
    connect.add_argument("--debug-level", action="count", default=0)
    connect.add_argument("--fancy", action=argparse.BooleanOptionalAction, default=None)
    group = connect.add_mutually_exclusive_group()
    group.add_argument("--use-device-code", action="store_true")
    group.add_argument("--access-token")
    extension = commands.add_parser("extension", parents=[common], allow_abbrev=False)
    actions = extension.add_subparsers(dest="action")
    remove = actions.add_parser("remove", parents=[common], allow_abbrev=False)
    remove.add_argument("-n", "--name")
    remove.add_argument("-a", "--all", action="store_true")
    return root


def parse(tmp_path: Path, document: dict[str, Any] | str, *argv: str) -> argparse.Namespace:
    if isinstance(document, str):
        path = write(tmp_path, "flags.yaml", document)
    else:
        path = write(tmp_path, "flags.json", json.dumps(document))
    return parse_command_line(build(), [*argv, "--config", str(path)])


def failure(tmp_path: Path, document: dict[str, Any] | str, *argv: str) -> AzcmError:
    with pytest.raises(AzcmError) as info:
        parse(tmp_path, document, *argv)
    return info.value


def test_without_a_file_it_is_plain_argparse() -> None:
    args = parse_command_line(build(), ["connect", "-g", "rg"])
    assert args.resource_group == "rg"
    assert args.tags == "" and args.retries == 3 and args.cloud == "AzureCloud"
    assert args.ignore_network_check is False and args.delete is True and args.extensions is None
    assert args.debug_level == 0 and args.fancy is None and args.version is False
    assert not hasattr(args, "json")  # common switches stay absent: options.resolve reads them as off


def test_the_file_fills_what_the_command_line_does_not_give(tmp_path: Path) -> None:
    args = parse(
        tmp_path,
        {
            "service-principal-id": "00000000-0000-0000-0000-000000000001",
            "service-principal-secret": SECRET,
            "resource-group": "from-file",
            "tags": "env=prod",
            "retries": 5,
            "cloud": "AzureChinaCloud",
            "ignore-network-check": True,
            "keep": True,
            "extension": ["A/B", "C/D"],
            "ports": [22, "80"],
            "pair": ["x", "y"],
            "debug-level": 2,
            "no-fancy": True,
            "json": True,
            "verbose": False,
        },
        "connect",
        "-g",
        "from-command-line",
    )
    assert args.service_principal_secret == SECRET
    assert args.resource_group == "from-command-line", "the command line wins"
    assert args.tags == "env=prod" and args.retries == 5 and args.cloud == "AzureChinaCloud"
    assert args.ignore_network_check is True and args.delete is False
    assert args.extensions == ["A/B", "C/D"] and args.ports == [22, 80] and args.pair == ["x", "y"]
    assert args.debug_level == 2
    assert args.json is True and not hasattr(args, "verbose"), "false leaves a common switch absent (off)"


def test_the_command_line_wins_for_switches_and_values(tmp_path: Path) -> None:
    args = parse(
        tmp_path, {"retries": 9, "json": False, "tags": "a=b"}, "-j", "connect", "-g", "rg", "--tags", ""
    )
    assert args.retries == 9
    assert args.json is True
    assert args.tags == "", "an empty value on the command line is still given"


def test_false_leaves_a_switch_off_and_defaults_are_kept(tmp_path: Path) -> None:
    args = parse(tmp_path, "ignore-network-check: false\nkeep: false\nfancy: false\n", "connect", "-g", "rg")
    assert args.ignore_network_check is False and args.delete is True and args.fancy is False


def test_boolean_optional_negative_form(tmp_path: Path) -> None:
    assert parse(tmp_path, {"no-fancy": True}, "connect", "-g", "rg").fancy is False
    assert parse(tmp_path, {"fancy": True}, "connect", "-g", "rg").fancy is True


def test_required_option_may_come_from_the_file(tmp_path: Path) -> None:
    assert parse(tmp_path, "resource-group: rg\n", "connect").resource_group == "rg"
    error = failure(tmp_path, {"tags": "a=b"}, "connect")
    assert error.code == ErrorCode.MISSING_MANDATORY_PARAMETER
    assert "--resource-group" in error.message and "'azcmagent connect'" in error.message


def test_required_flags_are_restored_after_parsing(tmp_path: Path) -> None:
    root = build()
    parse_command_line(root, ["connect", "-g", "rg"])
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    connect = commands.choices["connect"]
    group = next(a for a in connect._actions if a.dest == "resource_group")
    assert group.required is True
    assert next(a for a in connect._actions if a.dest == "retries").default == "3"


def test_type_converters_and_choices_check_file_values(tmp_path: Path) -> None:
    error = failure(tmp_path, {"retries": 0}, "connect", "-g", "rg")
    assert error.code == 23 and "invalid value for 'retries': must be positive" in error.message
    error = failure(tmp_path, {"ports": ["ssh"]}, "connect", "-g", "rg")
    assert (
        error.code == 23 and "invalid int value for 'ports'" in error.message and "ssh" not in error.message
    )
    error = failure(tmp_path, {"cloud": "Mars"}, "connect", "-g", "rg")
    assert error.code == 23 and "invalid choice for 'cloud'" in error.message
    assert failure(tmp_path, {"pair": ["only-one"]}, "connect", "-g", "rg").message.endswith(
        "'pair' has the wrong number of values"
    )


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"ignore-network-check": "yes"}, "'ignore-network-check' must be true or false"),
        ({"json": 1}, "'json' must be true or false"),
        ({"service-principal-secret": True}, "takes a value, not true or false"),
        ({"service-principal-secret": None}, "has no value (null)"),
        ({"service-principal-secret": {"a": 1}}, "must be text or a number"),
        ({"service-principal-secret": [SECRET]}, "must be text or a number"),
        ({"debug-level": -1}, "must be true, false or a count"),
        ({"config": "/other.json"}, "cannot name another one"),
        ({"help": True}, "unknown flag 'help'"),
    ],
)
def test_bad_values(tmp_path: Path, document: dict[str, Any], words: str) -> None:
    error = failure(tmp_path, document, "connect", "-g", "rg")
    assert error.code == ErrorCode.INVALID_ARGUMENT
    assert words in error.message
    assert SECRET not in error.message


def test_unknown_flag_names_the_flag_and_the_command(tmp_path: Path) -> None:
    error = failure(tmp_path, {"resource-grup": "rg"}, "connect", "-g", "rg")
    assert error.code == 23
    assert "unknown flag 'resource-grup' for 'azcmagent connect'" in error.message
    assert "resource-group" in error.message and "service-principal-secret" in error.message
    assert "config" not in error.message.split("known: ")[1].split(", ")


def test_flags_are_those_of_the_chosen_sub_command(tmp_path: Path) -> None:
    args = parse(tmp_path, {"name": "ext", "all": True}, "extension", "remove")
    assert args.name == "ext" and args.all is True
    error = failure(tmp_path, {"resource-group": "rg"}, "extension", "remove")
    assert "unknown flag 'resource-group' for 'azcmagent extension remove'" in error.message
    error = failure(tmp_path, {"name": "x"}, "extension")
    assert "for 'azcmagent extension'" in error.message
    assert parse(tmp_path, {"version": True}).version is True


def test_mutually_exclusive_flags_across_file_and_command_line(tmp_path: Path) -> None:
    error = failure(tmp_path, {"access-token": SECRET}, "connect", "-g", "rg", "--use-device-code")
    assert error.code == 23
    assert "--use-device-code and --access-token cannot be used together" in error.message
    assert SECRET not in error.message
    args = parse(tmp_path, {"access-token": SECRET, "use-device-code": False}, "connect", "-g", "rg")
    assert args.access_token == SECRET and args.use_device_code is False


def test_usage_errors_and_help_still_come_from_argparse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AzcmError, match="unrecognized arguments: --bogus"):
        parse(tmp_path, {}, "connect", "-g", "rg", "--bogus")
    with pytest.raises(SystemExit) as info:
        parse_command_line(build(), ["connect", "-h"])
    assert info.value.code == 0
    assert "secret (default None)" in capsys.readouterr().out, "help sees the real defaults"


def test_a_yaml_file_with_secrets(tmp_path: Path) -> None:
    args = parse(
        tmp_path,
        f"# onboarding secrets\nservice-principal-id: abc\nservice-principal-secret: '{SECRET}'\n",
        "connect",
        "-g",
        "rg",
    )
    assert (args.service_principal_id, args.service_principal_secret) == ("abc", SECRET)
