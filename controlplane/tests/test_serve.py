"""End to end: the real ``arc-controlplane serve`` process over real HTTPS."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Server, ca_context, run_cli, start_server

from arc_controlplane import __version__
from arc_controlplane.names import server_names
from arc_controlplane.pki import ensure_server_tls


def test_healthz_over_tls_trusting_only_our_ca(server: Server) -> None:
    with urllib.request.urlopen(
        server.url("/healthz"), context=ca_context(server.ca_file), timeout=5
    ) as reply:
        assert reply.status == 200
        assert json.loads(reply.read()) == {"status": "ok", "version": __version__}


def test_negotiates_tls_1_2_or_newer(server: Server) -> None:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=ca_context(server.ca_file))
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        assert connection.sock is not None
        assert connection.sock.version() in {"TLSv1.2", "TLSv1.3"}
    finally:
        connection.close()


def test_system_trust_store_does_not_trust_it(server: Server) -> None:
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(server.url("/healthz"), context=ssl.create_default_context(), timeout=5)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_gets_no_answer(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except (http.client.HTTPException, OSError):
        status = None
    finally:
        connection.close()
    assert status != 200


def test_logs_where_it_listens_and_where_the_ca_is(server: Server) -> None:
    log = server.log()
    assert f"listening on https://127.0.0.1:{server.port}" in log
    assert f"CA certificate: {server.ca_file}" in log
    assert "Traceback" not in log


def test_ca_show_prints_the_ca_file(server: Server) -> None:
    result = run_cli("ca", "show", "--data-dir", str(server.data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == server.ca_file.read_text(encoding="ascii")
    assert result.stdout.startswith("-----BEGIN CERTIFICATE-----")


def test_restart_reuses_the_pki_and_sigterm_stops_it(server: Server) -> None:
    pki = server.data_dir / "pki"
    before = {name: (pki / name).read_bytes() for name in ("ca.pem", "ca.key", "server.pem", "server.key")}
    second = start_server(server.data_dir)
    try:
        after = {name: (pki / name).read_bytes() for name in before}
        assert after == before
        started = time.monotonic()
        second.process.send_signal(signal.SIGTERM)
        try:
            code = second.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("arc-controlplane did not stop within 5 s of SIGTERM")
        assert code == 0, second.log()
        assert time.monotonic() - started < 5
        assert "Traceback" not in second.log()
    finally:
        second.stop()


def test_serves_an_operator_certificate_as_it_is(tmp_path: Path) -> None:
    own = ensure_server_tls(tmp_path / "own-pki", server_names("127.0.0.1", "h", []))
    data_dir = tmp_path / "data"
    other = start_server(
        data_dir, ["--cert", str(own.cert_file), "--key", str(own.key_file)], trust=own.ca_file
    )
    try:
        with urllib.request.urlopen(
            other.url("/healthz"), context=ca_context(other.ca_file), timeout=5
        ) as reply:
            assert reply.status == 200
        assert not (data_dir / "pki").exists()
        assert f"certificate: {own.cert_file}" in other.log()
    finally:
        other.stop()
