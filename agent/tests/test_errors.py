from __future__ import annotations

import pytest

from arc_agent.errors import AzcmError, ErrorCode


def test_renders_code_zero_padded_to_four_digits() -> None:
    error = AzcmError(ErrorCode.INVALID_ARGUMENT, "bad value")
    assert str(error) == "AZCM0023: bad value"
    assert error.error_id == "AZCM0023"
    assert error.code == 23
    assert error.message == "bad value"


def test_accepts_a_plain_integer_code() -> None:
    assert str(AzcmError(7, "x")) == "AZCM0007: x"
    assert str(AzcmError(102, "y")) == "AZCM0102: y"


@pytest.mark.parametrize(
    ("code", "number"),
    [
        (ErrorCode.UNKNOWN, 1),
        (ErrorCode.INTERNAL, 2),
        (ErrorCode.NOT_SUPPORTED, 3),
        (ErrorCode.MISSING_MANDATORY_PARAMETER, 16),
        (ErrorCode.NOT_ELEVATED, 18),
        (ErrorCode.BAD_CONFIG_FILE_PATH, 19),
        (ErrorCode.INVALID_ARGUMENT, 23),
    ],
)
def test_codes_match_the_public_table(code: ErrorCode, number: int) -> None:
    assert int(code) == number
