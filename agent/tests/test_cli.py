from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_module

from arc_agent import __version__
from arc_agent.cli.main import main

CLI = "arc_agent.cli.main"
NOT_YET_BUILT = ["genkey"]


def azcmagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_module(CLI, *args, env=env)


# --- through a real process -------------------------------------------------------------------


def test_version_text() -> None:
    result = azcmagent("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"azcmagent version {__version__}\n"
    assert result.stderr == ""


@pytest.mark.parametrize("argv", [["-j", "version"], ["version", "--json"], ["--version", "-j"]])
def test_version_json_flag_before_or_after_the_command(argv: list[str]) -> None:
    result = azcmagent(*argv)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"version": "1.64.3414.2961"}


def test_top_level_version_flag() -> None:
    result = azcmagent("--version")
    assert result.returncode == 0
    assert result.stdout == "azcmagent version 1.64.3414.2961\n"


def test_unknown_command_is_azcm0023_naming_the_valid_commands() -> None:
    result = azcmagent("frobnicate")
    assert result.returncode == 23
    assert result.stdout == ""
    assert result.stderr.startswith("AZCM0023: ")
    assert "'frobnicate'" in result.stderr
    for name in ("version", "license", "help"):
        assert f"'{name}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_command_as_json() -> None:
    result = azcmagent("frobnicate", "--json")
    assert result.returncode == 23
    body = json.loads(result.stdout)
    assert body["error"]["code"] == "AZCM0023"
    assert "invalid choice: 'frobnicate'" in body["error"]["message"]
    assert result.stderr == ""


def test_unknown_flag_is_azcm0023() -> None:
    result = azcmagent("version", "--bogus")
    assert result.returncode == 23
    assert result.stderr == "AZCM0023: unrecognized arguments: --bogus\n"


def test_missing_config_file_is_azcm0019(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = azcmagent("version", "--config", str(missing))
    assert result.returncode == 19
    assert result.stderr == f"AZCM0019: config file '{missing}' does not exist\n"
    assert result.stdout == ""


def test_missing_config_file_as_json(tmp_path: Path) -> None:
    result = azcmagent("--config", str(tmp_path / "nope.json"), "-j", "version")
    assert result.returncode == 19
    assert json.loads(result.stdout)["error"]["code"] == "AZCM0019"


def test_installed_console_script_runs() -> None:
    script = shutil.which("azcmagent", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the azcmagent console script is not installed in this environment")
    result = subprocess.run([script, "version"], capture_output=True, text=True, check=False, timeout=20)
    assert result.returncode == 0
    assert result.stdout == f"azcmagent version {__version__}\n"


# --- in process (same main(), faster) ---------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", NOT_YET_BUILT)
def test_commands_not_built_yet_are_unknown(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = run_main(capsys, name)
    assert code == 23
    assert err.startswith(f"AZCM0023: argument COMMAND: invalid choice: '{name}'")
    assert out == ""


def test_config_directory_is_unreadable_azcm0019(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "--config", str(tmp_path), "version")
    assert code == 19
    assert err.startswith(f"AZCM0019: cannot read config file '{tmp_path}'")


def test_config_file_sets_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"json": true}', encoding="utf-8")
    code, out, _ = run_main(capsys, "version", "--config", str(config))
    assert code == 0
    assert json.loads(out) == {"version": __version__}


def test_config_file_in_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("json: true\n", encoding="utf-8")
    code, out, _ = run_main(capsys, "version", "--config", str(config))
    assert code == 0
    assert json.loads(out) == {"version": __version__}


def test_config_file_that_is_broken_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"verbose": true', encoding="utf-8")
    code, _, err = run_main(capsys, "version", "--config", str(config))
    assert code == 23
    assert "is not valid JSON" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "must hold a JSON object"),
        ('{"colour": true}', "unknown flag 'colour'"),
        ('{"verbose": "yes"}', "'verbose' must be true or false"),
    ],
)
def test_config_file_contents_are_validated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "c.json"
    config.write_text(content, encoding="utf-8")
    code, _, err = run_main(capsys, "version", "--config", str(config))
    assert code == 23
    assert err.startswith("AZCM0023: ")
    assert message in err


def test_license_names_the_project_and_mit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "license")
    assert code == 0
    assert "hybridops.arc" in out
    assert "GPL-3.0-or-later" in out
    code, out, _ = run_main(capsys, "license", "-j")
    assert json.loads(out)["license"] == "GPL-3.0-or-later"


def test_help_command_and_no_arguments_print_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "help")
    assert code == 0
    assert out.startswith("usage: azcmagent")
    for name in ("version", "license", "help", "--json", "--config", "--log-stderr", "--no-color"):
        assert name in out
    assert run_main(capsys) == (0, out, "")


def test_help_about_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "help", "version")
    assert code == 0
    assert out.startswith("usage: azcmagent version")


def test_help_about_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "help", "genkey")
    assert code == 23
    assert err == (
        "AZCM0023: unknown command 'genkey' (valid commands: check, config, connect, disconnect, extension, "
        "help, license, logs, show, upgrade, version)\n"
    )


def test_dash_h_exits_zero_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["version", "-h"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: azcmagent version")


def test_bundled_short_flags_select_json_for_parse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "-vj", "nope")
    assert code == 23
    assert json.loads(out)["error"]["code"] == "AZCM0023"


def test_unexpected_exception_is_azcm0001_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("arc_agent.cli.main.write_result", broken)
    code, _, err = run_main(capsys, "version")
    assert code == 1
    assert err == "AZCM0001: unexpected error: RuntimeError: boom\n"

    code, _, err = run_main(capsys, "version", "-v")
    assert code == 1
    assert "Traceback" in err
    assert err.endswith("AZCM0001: unexpected error: RuntimeError: boom\n")


def test_log_stderr_sends_debug_logs_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "version", "--log-stderr", "-v")
    assert code == 0
    assert out == f"azcmagent version {__version__}\n"
    assert "INFO arc_agent: azcmagent 1.64.3414.2961: running version" in err


def test_no_logs_on_stderr_without_log_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "version", "-v") == (0, f"azcmagent version {__version__}\n", "")


def test_relative_agent_root_is_rejected(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZCMAGENT_ROOT", "not/absolute")
    code, _, err = run_main(capsys, "version")
    assert code == 23
    assert err == "AZCM0023: AZCMAGENT_ROOT must be an absolute path, got 'not/absolute'\n"
