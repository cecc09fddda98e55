"""Cloud detection against real HTTP servers on loopback playing each provider's metadata service."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from arc_agent.errors import AzcmError
from arc_agent.metadata.cloud import ENDPOINTS_ENV_VAR, CloudEndpoints, CloudInfo, detect_cloud

Answer = tuple[int, Mapping[str, str], bytes]
Route = Callable[[Mapping[str, str]], Answer]


def ok_json(document: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(document).encode()


@contextmanager
def metadata_server(routes: Mapping[tuple[str, str], Route]) -> Iterator[str]:
    """A provider's metadata service: (method, path with query) -> answer; 404 otherwise."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            route = routes.get((self.command, self.path))
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, extra, body = route(headers) if route else (404, {}, b"not found")
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def blackhole() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def endpoints(**given: str) -> CloudEndpoints:
    nowhere = closed_port()
    return CloudEndpoints(**{name: given.get(name, nowhere) for name in ("azure", "aws", "gcp", "oci")})


AZURE_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/metadata/instance/compute?api-version=2019-06-01"): lambda h: (
        ok_json({"vmId": "1c3f8ec5-0000-4000-8000-000000000001", "location": "westeurope"})
        if h.get("metadata") == "true"
        else (400, {}, b'{"error": "Bad request"}')
    )
}

AWS_TOKEN = "AQAEAFk1ZTU2OWE5"


def _aws_document(headers: Mapping[str, str]) -> Answer:
    if headers.get("x-aws-ec2-metadata-token") != AWS_TOKEN:
        return 401, {}, b""
    return ok_json({"accountId": "123456789012", "instanceId": "i-0abc123def4567890", "region": "eu-west-1"})


AWS_ROUTES: dict[tuple[str, str], Route] = {
    ("PUT", "/latest/api/token"): lambda h: (
        (200, {}, AWS_TOKEN.encode()) if "x-aws-ec2-metadata-token-ttl-seconds" in h else (400, {}, b"")
    ),
    ("GET", "/latest/dynamic/instance-identity/document"): _aws_document,
}


def _gcp(value: str) -> Route:
    def answer(headers: Mapping[str, str]) -> Answer:
        if headers.get("metadata-flavor") != "Google":
            return 403, {}, b"Missing Metadata-Flavor:Google header."
        return 200, {"Metadata-Flavor": "Google", "Content-Type": "application/text"}, value.encode()

    return answer


GCP_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", f"/computeMetadata/v1/{path}"): _gcp(value)
    for path, value in {
        "instance/id": "4520031799277581759",
        "instance/image": "projects/debian-cloud/global/images/debian-12-bookworm-v20240110",
        "instance/machine-type": "projects/431213455/machineTypes/e2-medium",
        "instance/zone": "projects/431213455/zones/europe-west1-b",
        "instance/service-accounts/": "431213455-compute@developer.gserviceaccount.com/\ndefault/\n",
        "project/project-id": "my-project",
        "project/numeric-project-id": "431213455",
    }.items()
}

OCI_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/opc/v2/instance/"): lambda h: (
        ok_json({"id": "ocid1.instance.oc1.eu-frankfurt-1.abc", "displayName": "web-01"})
        if h.get("authorization") == "Bearer Oracle"
        else (401, {}, b"")
    )
}


def test_nothing_reachable_is_not_detected_at_once() -> None:
    started = time.monotonic()
    assert detect_cloud(endpoints(), timeout=5) == CloudInfo("N/A")
    assert time.monotonic() - started < 2


def test_azure() -> None:
    with metadata_server(AZURE_ROUTES) as url:
        assert detect_cloud(endpoints(azure=url)) == CloudInfo("Azure")


def test_aws_with_imdsv2() -> None:
    with metadata_server(AWS_ROUTES) as url:
        info = detect_cloud(endpoints(aws=url))
    assert info == CloudInfo(
        "AWS",
        {"awsAccountId": "123456789012", "awsInstanceId": "i-0abc123def4567890", "awsRegion": "eu-west-1"},
    )


def test_aws_with_imdsv1_only() -> None:
    routes: dict[tuple[str, str], Route] = {
        ("GET", "/latest/dynamic/instance-identity/document"): lambda h: ok_json(
            {"accountId": "1", "instanceId": "i-1", "region": "us-east-1"}
        )
    }
    with metadata_server(routes) as url:
        assert detect_cloud(endpoints(aws=url)).provider == "AWS"


def test_gcp() -> None:
    with metadata_server(GCP_ROUTES) as url:
        info = detect_cloud(endpoints(gcp=url))
    assert info == CloudInfo(
        "GCP",
        {
            "gcpInstanceId": "4520031799277581759",
            "gcpImage": "projects/debian-cloud/global/images/debian-12-bookworm-v20240110",
            "gcpMachineType": "e2-medium",
            "gcpZone": "europe-west1-b",
            "gcpProjectId": "my-project",
            "gcpProjectNumber": "431213455",
            "gcpServiceAccounts": "431213455-compute@developer.gserviceaccount.com",
        },
    )
    assert info.detected_properties() == dict(info.details)


def test_gcp_answer_without_the_flavor_header_is_not_gcp() -> None:
    routes: dict[tuple[str, str], Route] = {
        ("GET", "/computeMetadata/v1/instance/id"): lambda h: (200, {}, b"12345"),
    }
    with metadata_server(routes) as url:
        assert detect_cloud(endpoints(gcp=url)).provider == "N/A"


def test_oci() -> None:
    with metadata_server(OCI_ROUTES) as url:
        assert detect_cloud(endpoints(oci=url)) == CloudInfo("OCI", {"ociDisplayName": "web-01"})


def test_a_server_answering_anything_is_no_cloud() -> None:
    page: Route = lambda h: (200, {"Content-Type": "text/html"}, b"<html>captive portal</html>")  # noqa: E731
    paths = [
        ("GET", "/metadata/instance/compute?api-version=2019-06-01"),
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/dynamic/instance-identity/document"),
        ("GET", "/opc/v2/instance/"),
    ]
    with metadata_server(dict.fromkeys(paths, page)) as url:
        assert detect_cloud(CloudEndpoints(azure=url, aws=url, gcp=closed_port(), oci=url)).provider == "N/A"


def test_azure_wins_over_the_others() -> None:
    with metadata_server({**AZURE_ROUTES, **AWS_ROUTES, **OCI_ROUTES}) as url:
        assert (
            detect_cloud(CloudEndpoints(azure=url, aws=url, gcp=closed_port(), oci=url)).provider == "Azure"
        )


def test_a_hanging_provider_costs_the_time_limit_and_no_more() -> None:
    with blackhole() as hole, metadata_server(AWS_ROUTES) as aws:
        started = time.monotonic()
        info = detect_cloud(endpoints(azure=hole, aws=aws), timeout=0.5)
        elapsed = time.monotonic() - started
    # Azure comes first but never answers: AWS is the answer once the time is up.
    assert info.provider == "AWS"
    assert 0.4 <= elapsed < 2


def test_everything_hanging_gives_not_detected_in_time() -> None:
    with blackhole() as hole:
        started = time.monotonic()
        info = detect_cloud(CloudEndpoints(azure=hole, aws=hole, gcp=hole, oci=hole), timeout=0.5)
        elapsed = time.monotonic() - started
    assert info.provider == "N/A"
    assert elapsed < 2


def test_endpoints_from_environment() -> None:
    assert CloudEndpoints.from_env({}) == CloudEndpoints()
    given = CloudEndpoints.from_env({ENDPOINTS_ENV_VAR: '{"aws": "http://127.0.0.1:8080"}'})
    assert given.aws == "http://127.0.0.1:8080"
    assert given.azure == "http://169.254.169.254"
    assert given.gcp == "http://metadata.google.internal"


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '["http://127.0.0.1"]',
        '{"digitalocean": "http://127.0.0.1"}',
        '{"aws": 8080}',
        '{"aws": "https://127.0.0.1"}',
        '{"aws": "http://127.0.0.1/latest"}',
        '{"aws": "http://127.0.0.1:99999"}',
        '{"aws": "127.0.0.1:80"}',
    ],
)
def test_bad_endpoints_in_environment(value: str) -> None:
    with pytest.raises(AzcmError) as raised:
        CloudEndpoints.from_env({ENDPOINTS_ENV_VAR: value})
    assert raised.value.code == 23
    assert ENDPOINTS_ENV_VAR in raised.value.message
