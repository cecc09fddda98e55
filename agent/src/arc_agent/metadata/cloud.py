"""Which cloud this machine runs in, asked of the clouds' instance metadata services
(docs/reference/metadata.md).

Probed once when himds starts, all four at the same time, within a short overall time limit
(2 s by default): Azure (``GET /metadata/instance/compute`` with ``Metadata: true``), AWS
(IMDSv2: ``PUT /latest/api/token``, then the instance identity document), Google Cloud
(``/computeMetadata/v1/`` with ``Metadata-Flavor: Google``), Oracle Cloud (``/opc/v2/instance/``
with ``Authorization: Bearer Oracle``). An answer counts only when it has the provider's shape,
so a proxy or captive portal answering anything does not make a cloud. When several answer,
the first of Azure, AWS, GCP, OCI wins. Nothing found in time: ``N/A``.

On a machine without a route to ``169.254.169.254`` every probe fails at once; with a route
that leads nowhere, detection takes the full time limit. A probe still hanging then (a slow
DNS server for ``metadata.google.internal``) is left behind on a daemon thread.

The base URLs can be changed for tests only: constructor argument, or the environment variable
``ARC_CLOUD_METADATA_ENDPOINTS`` (a JSON object such as ``{"aws": "http://127.0.0.1:8080"}``).
The ``detectedProperties`` key names for the details are ours (docs/reference/not-public.md).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from arc_agent.errors import AzcmError, ErrorCode

ENDPOINTS_ENV_VAR = "ARC_CLOUD_METADATA_ENDPOINTS"
DEFAULT_TIMEOUT_SECONDS = 2.0
MAX_BODY_BYTES = 256 * 1024
USER_AGENT = "azcmagent-cloud-detection"
NOT_DETECTED = "N/A"


@dataclass(frozen=True)
class CloudEndpoints:
    """Base URLs of the metadata services (``http://host[:port]``, no path)."""

    azure: str = "http://169.254.169.254"
    aws: str = "http://169.254.169.254"
    gcp: str = "http://metadata.google.internal"
    oci: str = "http://169.254.169.254"

    def __post_init__(self) -> None:
        for spec in fields(self):
            _check_base_url(spec.name, getattr(self, spec.name))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CloudEndpoints:
        """The real endpoints, or those of ``ARC_CLOUD_METADATA_ENDPOINTS`` (for tests only)."""
        raw = environ.get(ENDPOINTS_ENV_VAR, "")
        if not raw:
            return cls()
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        names = [spec.name for spec in fields(cls)]
        if not isinstance(document, dict) or not all(
            key in names and isinstance(value, str) for key, value in document.items()
        ):
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"{ENDPOINTS_ENV_VAR} must be a JSON object mapping some of {', '.join(names)} to "
                'base URLs, e.g. {"aws": "http://127.0.0.1:8080"}; unset it on real machines',
            )
        return cls(**document)


def _check_base_url(name: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme != "http" or not parts.hostname or not port_ok or parts.path not in ("", "/"):
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"the {name} metadata endpoint {url!r} is not an http://host[:port] base URL "
            f"(check {ENDPOINTS_ENV_VAR})",
        )


@dataclass(frozen=True)
class CloudInfo:
    provider: str
    """``N/A``, ``Azure``, ``AWS``, ``GCP`` or ``OCI``."""
    details: Mapping[str, str] = field(default_factory=dict)
    """What the provider told about the instance (docs/reference/metadata.md), as
    ``detectedProperties`` keys."""

    def detected_properties(self) -> dict[str, str]:
        return {key: value for key, value in self.details.items() if value}


Probe = Callable[[str, float], "CloudInfo | None"]


def detect_cloud(
    endpoints: CloudEndpoints | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> CloudInfo:
    """Ask every provider at once; the answer of the first (in precedence order) that is one."""
    endpoints = endpoints or CloudEndpoints()
    probes: list[tuple[Probe, str]] = [
        (probe_azure, endpoints.azure),
        (probe_aws, endpoints.aws),
        (probe_gcp, endpoints.gcp),
        (probe_oci, endpoints.oci),
    ]
    deadline = time.monotonic() + timeout
    results: dict[int, CloudInfo | None] = {}
    finished = threading.Condition()

    def run(position: int, probe: Probe, base_url: str) -> None:
        try:
            info = probe(base_url, deadline)
        except (OSError, ValueError, http.client.HTTPException):
            info = None
        with finished:
            results[position] = info
            finished.notify_all()

    for position, (probe, base_url) in enumerate(probes):
        name = f"cloud-probe-{probe.__name__.removeprefix('probe_')}"
        threading.Thread(target=run, args=(position, probe, base_url), name=name, daemon=True).start()
    with finished:
        while True:
            decided = _decide(results, len(probes))
            remaining = deadline - time.monotonic()
            if decided is not None or remaining <= 0:
                break
            finished.wait(remaining)
        return decided or _best(results) or CloudInfo(NOT_DETECTED)


def _decide(results: Mapping[int, CloudInfo | None], count: int) -> CloudInfo | None:
    """The winner once every probe before it has failed; None while that is not known yet."""
    for position in range(count):
        if position not in results:
            return None
        info = results[position]
        if info is not None:
            return info
    return CloudInfo(NOT_DETECTED)


def _best(results: Mapping[int, CloudInfo | None]) -> CloudInfo | None:
    return next((results[p] for p in sorted(results) if results[p] is not None), None)


# --- the probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json_object(self) -> dict[str, Any] | None:
        if self.status != 200:
            return None
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip() if self.status == 200 else ""


class _Client:
    """One keep-alive connection to a metadata service, every call bounded by the deadline."""

    def __init__(self, base_url: str, deadline: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._deadline = deadline
        self._connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port or 80, timeout=self._remaining()
        )

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("cloud detection time is up")
        return remaining

    def call(self, method: str, path: str, headers: Mapping[str, str]) -> _Reply:
        timeout = self._remaining()
        self._connection.timeout = timeout
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        self._connection.request(method, path, headers={"User-Agent": USER_AGENT, **headers})
        response = self._connection.getresponse()
        body = response.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"{path}: answer larger than {MAX_BODY_BYTES} bytes")
        return _Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

    def close(self) -> None:
        self._connection.close()


def probe_azure(base_url: str, deadline: float) -> CloudInfo | None:
    client = _Client(base_url, deadline)
    try:
        reply = client.call("GET", "/metadata/instance/compute?api-version=2019-06-01", {"Metadata": "true"})
    finally:
        client.close()
    document = reply.json_object()
    if document is None or not isinstance(document.get("vmId"), str):
        return None
    return CloudInfo("Azure")


def probe_aws(base_url: str, deadline: float) -> CloudInfo | None:
    client = _Client(base_url, deadline)
    try:
        token = client.call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        headers = {"X-aws-ec2-metadata-token": token.text()} if token.status == 200 else {}
        reply = client.call("GET", "/latest/dynamic/instance-identity/document", headers)
    finally:
        client.close()
    document = reply.json_object()
    if document is None or not isinstance(document.get("instanceId"), str):
        return None
    return CloudInfo(
        "AWS",
        {
            "awsAccountId": _string(document.get("accountId")),
            "awsInstanceId": _string(document.get("instanceId")),
            "awsRegion": _string(document.get("region")),
        },
    )


def probe_gcp(base_url: str, deadline: float) -> CloudInfo | None:
    client = _Client(base_url, deadline)
    flavor = {"Metadata-Flavor": "Google"}
    try:
        first = client.call("GET", "/computeMetadata/v1/instance/id", flavor)
        if first.status != 200 or first.headers.get("metadata-flavor") != "Google":
            return None
        values = {"gcpInstanceId": first.text()}
        for key, path in (
            ("gcpImage", "instance/image"),
            ("gcpMachineType", "instance/machine-type"),
            ("gcpZone", "instance/zone"),
            ("gcpProjectId", "project/project-id"),
            ("gcpProjectNumber", "project/numeric-project-id"),
        ):
            values[key] = client.call("GET", f"/computeMetadata/v1/{path}", flavor).text()
        accounts = client.call("GET", "/computeMetadata/v1/instance/service-accounts/", flavor).text()
    finally:
        client.close()
    # machine-type and zone are paths (projects/123/zones/us-central1-a): keep the last part.
    for key in ("gcpMachineType", "gcpZone"):
        values[key] = values[key].rsplit("/", 1)[-1]
    emails = [line.strip().rstrip("/") for line in accounts.splitlines()]
    values["gcpServiceAccounts"] = ",".join(email for email in emails if email and email != "default")
    return CloudInfo("GCP", values)


def probe_oci(base_url: str, deadline: float) -> CloudInfo | None:
    client = _Client(base_url, deadline)
    try:
        reply = client.call("GET", "/opc/v2/instance/", {"Authorization": "Bearer Oracle"})
    finally:
        client.close()
    document = reply.json_object()
    if document is None or not _string(document.get("id")).startswith("ocid1."):
        return None
    return CloudInfo("OCI", {"ociDisplayName": _string(document.get("displayName"))})


def _string(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, (str, int)) else ""
