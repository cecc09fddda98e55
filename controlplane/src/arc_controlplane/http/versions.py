"""The ``api-version`` query parameter: required on every management route, checked per provider.

HybridCompute accepts the stable versions from 2024-07-10 through 2026-09-01 (S:readme.md: the
``package-2024-07``, ``package-2025-01-13``, ``package-2026-07-15`` and ``package-2026-09-01``
tags; 2026-07-15 is the default of ``azure-mgmt-hybridcompute`` 10). Resource groups
(Microsoft.Resources) accept the usual stable versions of that provider. Errors use ARM's codes
and wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query

from arc_controlplane.errors import ArmError

API_VERSION_PARAMETER = "api-version"


@dataclass(frozen=True)
class ApiVersions:
    """The api-versions one resource provider serves."""

    namespace: str
    supported: tuple[str, ...]

    def check(self, value: str | None) -> str:
        """``value`` if supported; else ARM's 400 ``MissingApiVersionParameter`` or
        ``InvalidApiVersionParameter``."""
        if value is None or not value.strip():
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if value not in self.supported:
            newest_first = ",".join(sorted(self.supported, reverse=True))
            shown = value if len(value) <= 64 else value[:64] + "..."
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{shown}' is invalid. The supported versions are '{newest_first}'.",
            )
        return value


HYBRID_COMPUTE = ApiVersions(
    "Microsoft.HybridCompute",
    (
        "2019-08-02-preview",
        "2019-12-12",
        "2020-08-02",
        "2021-03-25-preview",
        "2022-03-10",
        "2022-08-11-preview",
        "2023-06-20-preview",
        "2023-10-03-preview",
        "2024-03-31-preview",
        "2024-05-20-preview",
        "2024-07-10",
        "2024-07-31-preview",
        "2025-01-13",
        "2025-02-19-preview",
        "2025-09-16-preview",
        "2026-06-16-preview",
        "2026-07-15",
        "2026-09-01",
    ),
)
"""Every HybridCompute version Azure publishes a client for (docs/reference/arm.md, "API versions"):
clients hard-code theirs. Answers have the newest shape whatever the version; older clients
ignore what they do not know."""
RESOURCES = ApiVersions(
    "Microsoft.Resources",
    (
        "2015-01-01",
        "2015-11-01",
        "2016-02-01",
        "2016-09-01",
        "2017-05-10",
        "2018-02-01",
        "2018-05-01",
        "2019-03-01",
        "2019-05-01",
        "2019-05-10",
        "2019-07-01",
        "2019-08-01",
        "2019-10-01",
        "2020-06-01",
        "2020-10-01",
        "2021-01-01",
        "2021-04-01",
        "2022-09-01",
        "2023-07-01",
        "2024-03-01",
        "2024-07-01",
        "2024-11-01",
        "2025-03-01",
        "2025-04-01",
    ),
)
"""Resource groups, generic resources and providers: every version ``azure-mgmt-resource`` ships a
client for (its ``resources/v*`` folders; docs/reference/arm.md), and the two older ones Azure Stack
tools and ``msrestazure`` still send."""

GUEST_CONFIGURATION = ApiVersions(
    "Microsoft.GuestConfiguration",
    (
        "2018-01-20-preview",
        "2018-06-30-preview",
        "2018-11-20",
        "2020-06-25",
        "2021-01-25",
        "2022-01-25",
        "2024-04-05",
    ),
)
"""Guest configuration assignments and reports: every version of the REST specs
(docs/reference/machine-configuration.md); ``azure-mgmt-guestconfig`` 1.0 sends 2024-04-05."""

SUBSCRIPTIONS = ApiVersions(
    "Microsoft.Resources",
    (
        "2014-04-01",
        "2015-01-01",
        "2016-06-01",
        "2018-06-01",
        "2019-06-01",
        "2019-11-01",
        "2020-01-01",
        "2021-01-01",
        "2022-12-01",
    ),
)
"""Subscriptions and tenants: the versions of ``azure-mgmt-resource``'s ``subscriptions/v*``
clients (the Azure CLI sends 2022-12-01) and the older ones of the REST specs."""

ApiVersionParameter = Annotated[
    str | None,
    Query(alias=API_VERSION_PARAMETER, description="The API version; see docs/management-api.md."),
]
"""The ``api-version`` query parameter as routes declare it (checked by ``ApiVersions.check``)."""
