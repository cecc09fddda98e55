from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from conftest import run_cli

from arc_controlplane import __version__
from arc_controlplane.cli import build_parser, main, settings_from_args
from arc_controlplane.names import server_names
from arc_controlplane.pki import ensure_server_tls
from arc_controlplane.server.serve import build_context, uvicorn_config
from arc_controlplane.settings import ServerSettings, default_data_dir


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"arc-controlplane {__version__}\n"


def test_serve_help_documents_the_data_dir_default() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "$ARC_CONTROLPLANE_DATA_DIR" in text
    assert "/var/lib/arc-controlplane when running as root" in text
    assert "~/.local/share/arc-controlplane" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "0"], "argument --port: 0 is not a port number (1-65535)"),
        (["serve", "--port", "http"], "argument --port: 'http' is not a port number"),
        (["serve", "--cert", "c.pem"], "--cert and --key must be given together"),
        (["serve", "--key", "k.pem"], "--cert and --key must be given together"),
        (
            ["serve", "--san", "bad name"],
            "argument --san: 'bad name' is neither an IP address nor a DNS name",
        ),
        (
            ["serve", "--heartbeat-interval", "4"],
            "argument --heartbeat-interval: 4 s is not a heartbeat interval: use 5-3600 seconds "
            "(300 by default)",
        ),
        (
            ["serve", "--heartbeat-interval", "3601"],
            "argument --heartbeat-interval: 3601 s is not a heartbeat interval: use 5-3600 seconds",
        ),
        (
            ["serve", "--heartbeat-interval", "0"],
            "argument --heartbeat-interval: 0 s is not a heartbeat interval",
        ),
        (
            ["serve", "--heartbeat-interval", "5.5"],
            "argument --heartbeat-interval: '5.5' is not a number of seconds: use a whole number "
            "from 5 to 3600",
        ),
        (
            ["serve", "--heartbeat-interval", "five"],
            "argument --heartbeat-interval: 'five' is not a number of seconds",
        ),
        (["serve", "--unknown"], "unrecognized arguments: --unknown"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["ca"], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("arc-controlplane: error: ")
    assert len(err.splitlines()) == 1
    assert message in err


def test_heartbeat_interval_reaches_the_settings() -> None:
    default = settings_from_args(build_parser().parse_args(["serve", "--data-dir", "/d"]))
    assert default.heartbeat_interval == 300
    assert default.timing.disconnected_after.total_seconds() == 900
    argv = ["serve", "--data-dir", "/d", "--heartbeat-interval", "5"]
    short = settings_from_args(build_parser().parse_args(argv))
    assert short.heartbeat_interval == 5
    assert short.timing.disconnected_after.total_seconds() == 15
    result = run_cli("serve", "--help")
    text = " ".join(result.stdout.split())
    assert "--heartbeat-interval SECONDS" in text
    assert "5-3600 (default 300); a machine shows Disconnected after 3 intervals without one" in text


def test_cert_and_san_together(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "serve", "--cert", "c", "--key", "k", "--san", "a.example")
    assert code == 2
    assert "--san" in err


def test_unreadable_cert_is_runtime_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(
        capsys, "serve", "--data-dir", str(tmp_path), "--cert", str(tmp_path / "c.pem"), "--key", "k.pem"
    )
    assert code == 1
    assert (
        err
        == f"arc-controlplane: error: cannot read --cert {tmp_path / 'c.pem'}: No such file or directory\n"
    )


def test_data_dir_not_writable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="ascii")
    code, _, err = run_main(capsys, "serve", "--data-dir", str(blocker / "d"), "--port", "18444")
    assert code == 1
    assert err.startswith("arc-controlplane: error: cannot set up ")
    assert err.endswith(": Not a directory\n")


def test_port_in_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, _, err = run_main(capsys, "serve", "--data-dir", str(tmp_path), "--port", str(port))
    assert code == 1
    assert err == f"arc-controlplane: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_ca_show_without_a_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "ca", "show", "--data-dir", str(tmp_path))
    assert code == 1
    assert out == ""
    assert err == (
        f"arc-controlplane: error: no CA in {tmp_path / 'pki'}; "
        "start 'arc-controlplane serve' once to create it\n"
    )


def test_default_data_dir() -> None:
    home = Path("/home/u")
    assert default_data_dir({"ARC_CONTROLPLANE_DATA_DIR": "/srv/cp"}, 1000, home) == Path("/srv/cp")
    assert default_data_dir({"ARC_CONTROLPLANE_DATA_DIR": "/srv/cp"}, 0, home) == Path("/srv/cp")
    assert default_data_dir({}, 0, home) == Path("/var/lib/arc-controlplane")
    assert default_data_dir({}, 1000, home) == Path("/home/u/.local/share/arc-controlplane")


def test_uvicorn_config_is_https_with_tls_1_2_minimum(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path)
    tls = ensure_server_tls(settings.pki_dir, server_names("127.0.0.1", "h", []))
    ctx = build_context(settings)
    config = uvicorn_config(ctx, tls, settings.connections)
    ctx.db.dispose()
    assert config.ssl is not None
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl_certfile == str(tmp_path / "pki" / "server.pem")
