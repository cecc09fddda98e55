"""Run by test_himds_tokens.py inside a private mount namespace with a tmpfs on /var/opt.

azure-identity (through MSAL) only reads challenge key files from the real
``/var/opt/azcmagent/tokens``; in the namespace that directory is on a throw-away tmpfs, so the
unmodified ``ManagedIdentityCredential`` runs against a real himds server without touching the
host's files. Prints one JSON line with what happened.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from himds_helpers import make_state, make_system, serving

from arc_agent.himds.api import HimdsApi
from arc_agent.himds.instance import InstanceMetadata
from arc_agent.himds.tokens import ChallengeStore, TokenCache
from arc_agent.paths import AgentPaths

EXPIRES_ON = 4_102_444_800  # 2100-01-01


def main() -> int:
    if not os.path.ismount("/var/opt") or Path("/var/opt").stat().st_dev == Path("/").stat().st_dev:
        sys.stdout.write(
            json.dumps({"error": "/var/opt is not a private tmpfs here; refusing to run"}) + "\n"
        )
        return 2
    paths = AgentPaths.under(Path("/"))
    calls: list[str] = []

    def source(resource: str) -> dict[str, str]:
        calls.append(resource)
        return {
            "access_token": f"token-for-{resource}",
            "expires_on": str(EXPIRES_ON),
            "expires_in": "86400",
            "not_before": str(EXPIRES_ON - 86700),
            "resource": resource,
            "token_type": "Bearer",
        }

    state, system = make_state(), make_system()
    api = HimdsApi(
        "9.9",
        state=lambda: state,
        metadata=InstanceMetadata(lambda: system),
        challenges=ChallengeStore(paths.tokens_dir),
        tokens=TokenCache(source),
    )
    with serving(api) as port:
        os.environ["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{port}/metadata/identity/oauth2/token"
        os.environ["IMDS_ENDPOINT"] = f"http://127.0.0.1:{port}"
        os.environ["NO_PROXY"] = "*"
        from azure.identity import ManagedIdentityCredential

        token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
        # MSAL's own client, as applications that use MSAL directly do.
        import msal  # type: ignore[import-untyped]  # no type information shipped
        import requests

        msal_client = msal.ManagedIdentityClient(
            msal.SystemAssignedManagedIdentity(), http_client=requests.Session()
        )
        msal_result = msal_client.acquire_token_for_client(resource="https://management.azure.com/")
        leftovers = sorted(path.name for path in paths.tokens_dir.glob("*"))
    sys.stdout.write(
        json.dumps(
            {
                "token": token.token,
                "expires_on": token.expires_on,
                "msal_token": msal_result.get("access_token"),
                "msal_error": msal_result.get("error_description"),
                "calls": calls,
                "leftovers": leftovers,
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
