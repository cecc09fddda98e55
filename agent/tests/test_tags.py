from __future__ import annotations

import random

import pytest

from arc_agent.cli.tags import MAX_NAME, MAX_TAGS, MAX_VALUE, check_tags, format_tags, parse_tags
from arc_agent.errors import AzcmError, ErrorCode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("env=prod", {"env": "prod"}),
        ("env=prod,team=ops", {"env": "prod", "team": "ops"}),
        ("env = prod , team= ops", {"env": "prod", "team": "ops"}),
        ("'Cost Center'='IT Ops'", {"Cost Center": "IT Ops"}),
        ("env=test,'Cost Center'='IT, Ops'", {"env": "test", "Cost Center": "IT, Ops"}),
        ("'Cost Center' = 'IT Ops' , x=y", {"Cost Center": "IT Ops", "x": "y"}),
        ("Cost Center=IT Ops", {"Cost Center": "IT Ops"}),
        ("empty=", {"empty": ""}),
        ("empty='',b=2", {"empty": "", "b": "2"}),
        ("spaces='  padded  '", {"spaces": "  padded  "}),
        (r"list=a\,b\,c", {"list": "a,b,c"}),
        (r"path=C:\\temp", {"path": "C:\\temp"}),
        (r"quote=it\'s", {"quote": "it's"}),
        (r"'it\'s'='a \'b\''", {"it's": "a 'b'"}),
        ("eq=a=b", {"eq": "a=b"}),
        ("'k=1'=v", {"k=1": "v"}),
        ("unicode=Zürich,名前=値", {"unicode": "Zürich", "名前": "値"}),
    ],
)
def test_parse(text: str, expected: dict[str, str]) -> None:
    assert parse_tags(text) == expected


def test_none_is_no_tags() -> None:
    assert parse_tags(None) == {}


def test_order_is_kept() -> None:
    assert list(parse_tags("b=1,a=2,c=3")) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("env", "tag 1 ('env') has no '='"),
        ("a=1,env", "tag 2 ('env') has no '='"),
        ("a=1,,b=2", "tag 2 ('') has no '='"),
        ("a=1,", "remove the trailing comma"),
        ("=value", "tag 1 has an empty name"),
        ("'  '=value", "tag 1 has an empty name"),
        ("a=1,A=2", "tag name 'A' appears twice"),
        ("'Cost Center=x", "has no closing quote"),
        ("a='unterminated", "has no closing quote"),
        ("'a' b=c", "after the quoted name 'a'"),
        ("a='x' y,b=2", "after the quoted value"),
        ("it's=x", "a quote inside the unquoted name"),
        ("a=it's", "a quote inside the unquoted value"),
        (r"a=b\x", r"unknown escape '\\x'"),
        ("a=b\\", "unknown escape '\\\\'"),
        ("a<b=1", "contains <"),
        ("dir/name=1", "contains /"),
        ("what?=1", "contains ?"),
        ("100%=1", "contains %"),
        ("a&b=1", "contains &"),
        ("x>y=1", "contains >"),
        (r"'a\\b'=1", "contains \\"),
    ],
)
def test_mistakes_are_azcm0023_naming_the_part(text: str, words: str) -> None:
    with pytest.raises(AzcmError) as info:
        parse_tags(text)
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert info.value.message.startswith("--tags: ")
    assert words in info.value.message


def test_length_limits() -> None:
    assert parse_tags(f"{'n' * MAX_NAME}={'v' * MAX_VALUE}") == {"n" * MAX_NAME: "v" * MAX_VALUE}
    with pytest.raises(AzcmError, match="longer than 512"):
        parse_tags(f"{'n' * (MAX_NAME + 1)}=v")
    with pytest.raises(AzcmError, match="longer than 256"):
        parse_tags(f"n={'v' * (MAX_VALUE + 1)}")


def test_at_most_fifty_tags() -> None:
    fifty = ",".join(f"t{i}={i}" for i in range(MAX_TAGS))
    assert len(parse_tags(fifty)) == MAX_TAGS
    with pytest.raises(AzcmError, match="more than 50 tags"):
        parse_tags(fifty + ",one=more")


@pytest.mark.parametrize(
    ("tags", "text"),
    [
        ({}, ""),
        ({"env": "prod"}, "env=prod"),
        ({"Cost Center": "IT Ops"}, "'Cost Center'='IT Ops'"),
        ({"a": "x,y"}, "a='x,y'"),
        ({"a": ""}, "a="),
        ({"it's": "C:\\temp"}, "'it\\'s'='C:\\\\temp'"),
        ({"k": "a=b"}, "k='a=b'"),
    ],
)
def test_format(tags: dict[str, str], text: str) -> None:
    assert format_tags(tags) == text
    assert parse_tags(text) == tags


def test_format_refuses_what_parse_refuses() -> None:
    with pytest.raises(AzcmError, match="contains /"):
        format_tags({"a/b": "1"})
    with pytest.raises(AzcmError, match="appears twice"):
        check_tags({"Env": "1", "env": "2"})
    with pytest.raises(AzcmError, match="empty name"):
        format_tags({"": "1"})


ALPHABET = "abcXYZ019 _-.,='\\\"é\t:;#*+()[]{}|"


def random_text(rng: random.Random, allow_empty: bool, forbidden: str = "") -> str:
    size = rng.randint(0 if allow_empty else 1, 12)
    return "".join(rng.choice([c for c in ALPHABET if c not in forbidden]) for _ in range(size))


def test_round_trips_of_random_tags() -> None:
    rng = random.Random(20260901)
    for _ in range(2000):
        tags: dict[str, str] = {}
        for _ in range(rng.randint(0, 6)):
            name = random_text(rng, allow_empty=False, forbidden="\\")
            if name.strip() == "" or any(name.lower() == other.lower() for other in tags):
                continue
            tags[name] = random_text(rng, allow_empty=True)
        text = format_tags(tags)
        assert parse_tags(text) == tags, text
