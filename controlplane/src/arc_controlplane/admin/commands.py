"""Running the admin subcommands (arguments in ``admin/parsers.py``).

What depends on the database (unknown principal, subscription, tenant; the database itself
unreachable) is a one-line runtime error, exit 1. Every command migrates the database first.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from arc_controlplane.admin import output
from arc_controlplane.admin.audit_log import cli_actor, newest_entries
from arc_controlplane.admin.database import one_line, open_database, shown_url
from arc_controlplane.admin.fleet import FleetFilter, list_machines
from arc_controlplane.admin.initialise import InitRequest, initialise
from arc_controlplane.admin.principals import (
    assign,
    create_principal,
    delete_service_principal,
    list_assignments,
    list_principals,
)
from arc_controlplane.admin.state import read_state
from arc_controlplane.auth.certificates import CertificateError, ClientCertificate, parse_certificates
from arc_controlplane.auth.keys import load_or_create_package_key
from arc_controlplane.auth.principals import PrincipalError
from arc_controlplane.clock import utcnow
from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.machines import agent_packages, catalog, configuration_packages, rollout
from arc_controlplane.pki import PkiFiles
from arc_controlplane.settings import DEFAULT_BIND, DEFAULT_PORT, ServerSettings, current_default_data_dir
from arc_controlplane.timing import Timing


def _settings(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        data_dir=args.data_dir or current_default_data_dir(),
        bind=getattr(args, "bind", None) or DEFAULT_BIND,
        port=getattr(args, "port", None) or DEFAULT_PORT,
        database_url=args.database_url,
        public_url=getattr(args, "public_url", None),
    )


def _print(
    args: argparse.Namespace, as_json: Callable[[], dict[str, object]], as_text: Callable[[], str]
) -> None:
    sys.stdout.write(output.to_json(as_json()) if args.json else as_text())
    sys.stdout.flush()


@contextmanager
def _session(settings: ServerSettings) -> Iterator[Session]:
    """A transaction on the migrated database of an initialised control plane."""
    db = open_database(settings, create=False)
    try:
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def run_init(args: argparse.Namespace) -> None:
    settings = _settings(args)
    request = InitRequest(
        location=args.location,
        resource_group=args.resource_group,
        url=settings.effective_public_url(socket.getfqdn()),
        url_given=any(value is not None for value in (args.public_url, args.bind, args.port)),
    )
    result = initialise(settings, request, cli_actor(), utcnow())
    _print(args, lambda: output.init_json(result), lambda: output.init_text(result, settings.data_dir))


def _read_certificates(path: Path) -> list[ClientCertificate]:
    try:
        certificates = parse_certificates(path.read_bytes())
    except OSError as exc:
        raise ControlPlaneError(f"cannot read --certificate {path}: {exc.strerror or exc}") from None
    except CertificateError as exc:
        raise ControlPlaneError(f"--certificate {path}: {exc}") from None
    now = utcnow()
    for certificate in certificates:
        if certificate.not_after <= now:
            raise ControlPlaneError(
                f"--certificate {path}: the certificate {certificate.thumbprint} expired on "
                f"{output.timestamp(certificate.not_after)}; use a current one"
            )
    return certificates


def run_sp_create(args: argparse.Namespace) -> None:
    settings = _settings(args)
    certificates = _read_certificates(args.certificate) if args.certificate else None
    state = read_state(settings.data_dir)
    tenant_id = args.tenant or (state.tenant_id if state else None)
    if tenant_id is None:
        raise ControlPlaneError(
            f"no default tenant: {settings.data_dir} is not initialised; run 'arc-controlplane init' "
            "or give --tenant"
        )
    with _session(settings) as session:
        created = create_principal(
            session,
            tenant_id=tenant_id,
            name=args.name,
            role=args.role,
            scope=args.scope,
            certificates=certificates,
            actor=cli_actor(),
            now=utcnow(),
        )
    if not created.scope.group_exists:
        sys.stderr.write(
            f"arc-controlplane: note: resource group {created.scope.resource_group!r} does not exist yet in "
            f"subscription {created.scope.subscription_id}; the role applies once it is created\n"
        )
    ca_file = PkiFiles(settings.pki_dir).ca_cert
    _print(
        args,
        lambda: output.created_json(
            created, state.url if state else None, ca_file if ca_file.exists() else None
        ),
        lambda: output.created_text(created),
    )


def run_sp_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        principals = list_principals(session, include_identities=args.all)
    _print(args, lambda: output.principals_json(principals), lambda: output.principals_text(principals))


def run_sp_delete(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        info = delete_service_principal(session, args.client_id, cli_actor(), utcnow())
    _print(args, lambda: output.deleted_json(info), lambda: output.deleted_text(info))


def run_role_assign(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        assignment, created = assign(session, args.principal, args.role, args.scope, cli_actor(), utcnow())
    _print(
        args,
        lambda: output.assigned_json(assignment, created),
        lambda: output.assigned_text(assignment, created),
    )


def run_role_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        assignments = list_assignments(session, args.principal)
    _print(args, lambda: output.assignments_json(assignments), lambda: output.assignments_text(assignments))


def run_audit_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        entries = newest_entries(session, args.limit)
    _print(args, lambda: output.audit_json(entries), lambda: output.audit_text(entries))


def run_machine_list(args: argparse.Namespace) -> None:
    selection = FleetFilter(subscription_id=args.subscription_id, resource_group=args.resource_group)
    timing = Timing.every(args.heartbeat_interval)
    with _session(_settings(args)) as session:
        fleet = list_machines(session, selection, utcnow(), timing)
    _print(args, lambda: output.machines_json(fleet), lambda: output.machines_text(fleet))


def run_extension_publish(args: argparse.Namespace) -> None:
    settings = _settings(args)
    key = load_or_create_package_key(settings.keys_dir)
    with _session(settings) as session:
        package = catalog.publish(
            session,
            settings.packages_dir,
            key,
            args.package,
            publisher=args.publisher,
            type_=args.type,
            version=args.version,
            now=utcnow(),
        )
        row = output.package_row(package)
    _print(args, lambda: output.package_json(row), lambda: output.packages_text([row], "Published"))


def run_extension_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        rows = [output.package_row(package) for package in catalog.list_packages(session)]
    _print(
        args,
        lambda: {"packages": [output.package_json(row) for row in rows]},
        lambda: output.packages_text(rows),
    )


def run_extension_remove(args: argparse.Namespace) -> None:
    settings = _settings(args)
    with _session(settings) as session:
        package = catalog.remove(
            session, settings.packages_dir, publisher=args.publisher, type_=args.type, version=args.version
        )
        row = output.package_row(package)
    _print(args, lambda: output.package_json(row), lambda: output.packages_text([row], "Removed"))


def run_agent_publish(args: argparse.Namespace) -> None:
    settings = _settings(args)
    key = load_or_create_package_key(settings.keys_dir)
    with _session(settings) as session:
        published = agent_packages.publish(session, settings.packages_dir, key, args.bundle, utcnow())
        rows = output.agent_package_rows(published)
    _print(
        args, lambda: output.agent_packages_json(rows), lambda: output.agent_packages_text(rows, "Published")
    )


def run_agent_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        rows = output.agent_package_rows(agent_packages.list_packages(session))
    _print(args, lambda: output.agent_packages_json(rows), lambda: output.agent_packages_text(rows))


def run_agent_remove(args: argparse.Namespace) -> None:
    settings = _settings(args)
    with _session(settings) as session:
        rows = output.agent_package_rows(agent_packages.remove(session, settings.packages_dir, args.version))
    _print(
        args, lambda: output.agent_packages_json(rows), lambda: output.agent_packages_text(rows, "Removed")
    )


def run_agent_rollout(args: argparse.Namespace) -> None:
    timing = Timing.every(args.heartbeat_interval)
    with _session(_settings(args)) as session:
        current = rollout.current_plan(session, utcnow(), timing)
    _print(args, lambda: output.rollout_json(current), lambda: output.rollout_text(current))


def run_configuration_publish(args: argparse.Namespace) -> None:
    settings = _settings(args)
    key = load_or_create_package_key(settings.keys_dir)
    with _session(settings) as session:
        rows = [configuration_packages.publish(session, settings.packages_dir, key, args.package, utcnow())]
        _print(
            args,
            lambda: output.configuration_packages_json(rows),
            lambda: output.configuration_packages_text(rows, "Published"),
        )


def run_configuration_list(args: argparse.Namespace) -> None:
    with _session(_settings(args)) as session:
        rows = configuration_packages.list_packages(session)
        _print(
            args,
            lambda: output.configuration_packages_json(rows),
            lambda: output.configuration_packages_text(rows),
        )


def run_configuration_remove(args: argparse.Namespace) -> None:
    settings = _settings(args)
    with _session(settings) as session:
        rows = [configuration_packages.remove(session, settings.packages_dir, args.name, args.version)]
        _print(
            args,
            lambda: output.configuration_packages_json(rows),
            lambda: output.configuration_packages_text(rows, "Removed"),
        )


def run_configuration_build(args: argparse.Namespace) -> None:
    built = configuration_packages.build(args.document, args.out)
    sha256, size = catalog.file_digest(built)
    _print(
        args,
        lambda: {"package": str(built), "sha256": sha256, "size": size},
        lambda: f"Built {built} (SHA-256 {sha256}, {size} bytes)\n",
    )


_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "init": run_init,
    "sp_create": run_sp_create,
    "sp_list": run_sp_list,
    "sp_delete": run_sp_delete,
    "role_assign": run_role_assign,
    "role_list": run_role_list,
    "audit_list": run_audit_list,
    "machine_list": run_machine_list,
    "extension_publish": run_extension_publish,
    "extension_list": run_extension_list,
    "extension_remove": run_extension_remove,
    "agent_publish": run_agent_publish,
    "agent_list": run_agent_list,
    "agent_remove": run_agent_remove,
    "agent_rollout": run_agent_rollout,
    "configuration_publish": run_configuration_publish,
    "configuration_list": run_configuration_list,
    "configuration_remove": run_configuration_remove,
    "configuration_build": run_configuration_build,
}


def run_admin(args: argparse.Namespace) -> None:
    """Run the admin command that ``admin/parsers.py`` put in ``args.admin_command``.

    Whatever goes wrong underneath becomes one line (ControlPlaneError), never a traceback.
    """
    try:
        _COMMANDS[args.admin_command](args)
    except (PrincipalError, catalog.PackageError) as exc:
        raise ControlPlaneError(str(exc)) from None
    except SQLAlchemyError as exc:
        url = shown_url(_settings(args).effective_database_url())
        raise ControlPlaneError(f"the database {url} failed: {one_line(exc)}") from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ControlPlaneError(f"{where}{exc.strerror or exc}") from None
