"""``arc-controlplane init``: everything a new control plane needs, made once.

The data directory (0700), the migrated database, the CA that ``serve`` uses, the token
signing key, then in one transaction: a tenant, a subscription, a resource group and the
service principal ``arc-onboarding`` with the Onboarding role on that group. What was made
is recorded in ``DATA_DIR/init.json`` (no secret). A second run makes nothing and reports
what exists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.admin.audit_log import record
from arc_controlplane.admin.database import open_database, shown_url
from arc_controlplane.admin.state import InitState, read_state, state_path, write_state
from arc_controlplane.auth.keys import load_or_create_signing_key
from arc_controlplane.auth.principals import (
    assign_role,
    create_service_principal,
    ensure_subscription,
    ensure_tenant,
)
from arc_controlplane.auth.roles import find_role
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import ResourceGroup, Tenant
from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import ensure_private_dir
from arc_controlplane.pki import PkiFiles, ensure_ca
from arc_controlplane.settings import ServerSettings

LOG = logging.getLogger(__name__)
TENANT_NAME = "hybridops.arc"
SUBSCRIPTION_NAME = "hybridops.arc"
ONBOARDING_PRINCIPAL = "arc-onboarding"
ONBOARDING_ROLE = "Azure Connected Machine Onboarding"


@dataclass(frozen=True)
class InitRequest:
    location: str
    resource_group: str
    url: str
    url_given: bool
    """The operator gave --public-url, --bind or --port: a second run records the new URL."""


@dataclass(frozen=True)
class InitResult:
    state: InitState
    ca_file: Path
    client_secret: str | None
    """Only when this run created the service principal; shown once."""
    created: bool


def _prepare_data_dir(settings: ServerSettings) -> Path:
    try:
        if ensure_private_dir(settings.data_dir):
            LOG.warning("%s was readable by other users: narrowed to mode 0700", settings.data_dir)
    except OSError as exc:
        raise ControlPlaneError(
            f"cannot create the data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    ensure_ca(settings.pki_dir)
    load_or_create_signing_key(settings.keys_dir)
    return PkiFiles(settings.pki_dir).ca_cert


def _check_state_matches_database(session: Session, state: InitState, settings: ServerSettings) -> None:
    if session.get(Tenant, state.tenant_id) is None:
        url = shown_url(settings.effective_database_url())
        raise ControlPlaneError(
            f"{state_path(settings.data_dir)} names tenant {state.tenant_id}, which the database {url} "
            "does not hold: give the --database-url this data directory was initialised with"
        )


def _refuse_foreign_database(session: Session, settings: ServerSettings) -> None:
    tenant = session.scalars(select(Tenant).limit(1)).first()
    if tenant is not None:
        url = shown_url(settings.effective_database_url())
        raise ControlPlaneError(
            f"the database {url} already holds tenant {tenant.id}, initialised from another data "
            f"directory: copy that directory's init.json, keys/ and pki/ to {settings.data_dir} to share "
            "the database, or give an empty database"
        )


def _create(session: Session, request: InitRequest, actor: str, now: dt.datetime) -> tuple[InitState, str]:
    tenant_id, subscription_id = str(uuid.uuid4()), str(uuid.uuid4())
    ensure_tenant(session, tenant_id, TENANT_NAME, now)
    record(session, actor, "tenant/create", tenant_id, now, TENANT_NAME)
    ensure_subscription(session, subscription_id, tenant_id, SUBSCRIPTION_NAME, now)
    record(session, actor, "subscription/create", f"/subscriptions/{subscription_id}", now, SUBSCRIPTION_NAME)
    group = request.resource_group
    session.add(
        ResourceGroup(
            subscription_id=subscription_id,
            name=group,
            name_lower=group.lower(),
            location=request.location,
            tags={},
            created_at=now,
        )
    )
    scope = f"/subscriptions/{subscription_id}/resourceGroups/{group}"
    record(session, actor, "resourceGroup/create", scope, now, f"location={request.location}")
    created = create_service_principal(
        session, tenant_id=tenant_id, display_name=ONBOARDING_PRINCIPAL, now=now
    )
    principal = created.principal
    record(session, actor, "servicePrincipal/create", principal.app_id, now, f"name={ONBOARDING_PRINCIPAL}")
    assign_role(session, principal, find_role(ONBOARDING_ROLE).name, scope, now)
    record(
        session,
        actor,
        "roleAssignment/create",
        scope,
        now,
        f"role={ONBOARDING_ROLE}; principal={principal.app_id}",
    )
    assert created.client_secret is not None  # made with a secret, not a certificate
    state = InitState(tenant_id, subscription_id, group, request.location, principal.app_id, request.url)
    return state, created.client_secret


def _first_run(
    db: Database, settings: ServerSettings, request: InitRequest, actor: str, now: dt.datetime
) -> tuple[InitState, str]:
    written = False
    try:
        with db.session() as session:
            _refuse_foreign_database(session, settings)
            state, secret = _create(session, request, actor, now)
            # Written before the commit: if writing fails, nothing is made; if the commit fails,
            # the file is removed again, so init.json never names what the database lacks.
            write_state(settings.data_dir, state)
            written = True
    except BaseException:
        if written:
            with contextlib.suppress(FileNotFoundError):
                state_path(settings.data_dir).unlink()
        raise
    return state, secret


def initialise(settings: ServerSettings, request: InitRequest, actor: str, now: dt.datetime) -> InitResult:
    """Make (or find) everything; the client secret is in the result only when this run made it."""
    ca_file = _prepare_data_dir(settings)
    db = open_database(settings, create=True)
    try:
        existing = read_state(settings.data_dir)
        if existing is None:
            state, secret = _first_run(db, settings, request, actor, now)
            return InitResult(state, ca_file, secret, created=True)
        with db.session() as session:
            _check_state_matches_database(session, existing, settings)
    finally:
        db.dispose()
    if request.url_given and request.url != existing.url:
        existing = replace(existing, url=request.url)
        write_state(settings.data_dir, existing)
    return InitResult(existing, ca_file, None, created=False)
