"""The admin commands (``init``, ``sp``, ``role``, ``audit``), run as the real executable on
SQLite and PostgreSQL, checked against the files and the database rows they leave."""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from arc_controlplane import resource_ids
from arc_controlplane.admin import parsers
from arc_controlplane.auth.secrets import verify_secret
from arc_controlplane.cli import main
from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import Base, Principal, ResourceGroup, RoleAssignment, Subscription, Tenant

INIT_KEYS = {
    "url",
    "caCertificate",
    "tenantId",
    "subscriptionId",
    "resourceGroup",
    "location",
    "clientId",
    "clientSecret",
    "created",
}
ONBOARDING = "Azure Connected Machine Onboarding"
ADMINISTRATOR = "Azure Connected Machine Resource Administrator"
ACTOR = f"arc-controlplane-cli ({pwd.getpwuid(os.geteuid()).pw_name})"


class Cli:
    """``arc-controlplane`` with one data directory and database."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url

    def run(self, *args: str) -> tuple[int, str, str]:
        result = run_cli(*args, "--data-dir", str(self.data_dir), "--database-url", self.database_url)
        return result.returncode, result.stdout, result.stderr

    def json(self, *args: str) -> dict[str, Any]:
        code, out, err = self.run(*args, "--json")
        assert code == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer

    def error(self, *args: str) -> tuple[int, str]:
        """Exit code and the one-line message of a command that must fail."""
        code, out, err = self.run(*args)
        assert code != 0 and out == "", out
        assert err.startswith("arc-controlplane: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        return code, err


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data", database_url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    yield database
    database.dispose()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def all_rows_text(database: Database) -> str:
    """Every value of every table, as text (what a leaked secret would be found in)."""
    with database.engine.connect() as connection:
        return json.dumps(
            [
                list(row)
                for table in Base.metadata.sorted_tables
                for row in connection.execute(table.select())
            ],
            default=str,
        )


def test_init_creates_everything_and_prints_the_secret_once(cli: Cli, db: Database) -> None:
    first = cli.json("init")
    assert set(first) == INIT_KEYS
    assert first["created"] is True
    assert first["url"] == "https://127.0.0.1:8443"
    assert first["resourceGroup"] == "arc-servers" and first["location"] == "westeurope"
    secret = first["clientSecret"]
    assert isinstance(secret, str) and len(secret) >= 40

    data = cli.data_dir
    assert mode(data) == 0o700
    assert first["caCertificate"] == str(data / "pki" / "ca.pem")
    x509.load_pem_x509_certificate((data / "pki" / "ca.pem").read_bytes())
    assert mode(data / "keys" / "token-signing.pem") == 0o600
    assert mode(data / "init.json") == 0o600
    state = json.loads((data / "init.json").read_text())
    assert state["tenantId"] == first["tenantId"] and state["clientId"] == first["clientId"]
    assert secret not in (data / "init.json").read_text()

    with db.session() as session:
        tenant = session.get(Tenant, first["tenantId"])
        assert tenant is not None and tenant.display_name == "hybridops.arc"
        subscription = session.get(Subscription, first["subscriptionId"])
        assert subscription is not None and subscription.tenant_id == tenant.id
        group = session.scalars(select(ResourceGroup)).one()
        assert (group.subscription_id, group.name, group.location) == (
            subscription.id,
            "arc-servers",
            "westeurope",
        )
        principal = session.scalars(select(Principal).where(Principal.app_id == first["clientId"])).one()
        assert principal.display_name == "arc-onboarding" and principal.tenant_id == tenant.id
        assert principal.secret_hash is not None and verify_secret(secret, principal.secret_hash)
        assignment = session.scalars(select(RoleAssignment)).one()
        assert (assignment.principal_id, assignment.role, assignment.scope) == (
            principal.id,
            ONBOARDING,
            f"/subscriptions/{subscription.id}/resourceGroups/arc-servers",
        )
    # The secret is nowhere in the database: not in any row, not in SQLite's files.
    assert secret not in all_rows_text(db)
    for file in data.glob("controlplane.db*"):
        assert secret.encode() not in file.read_bytes()

    code, out, err = cli.run("init")
    assert code == 0, err
    assert "already initialised; nothing was changed" in out
    assert first["tenantId"] in out and first["clientId"] in out and secret not in out
    again = cli.json("init", "--public-url", "https://cp.example:9443")
    assert again == {**first, "clientSecret": None, "created": False, "url": "https://cp.example:9443"}
    assert json.loads((data / "init.json").read_text())["url"] == "https://cp.example:9443"
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 1
        assert session.scalar(select(func.count()).select_from(Principal)) == 1


def test_service_principals_roles_and_the_audit_log(cli: Cli, db: Database, tmp_path: Path) -> None:
    ids_ = cli.json("init", "--location", "North Europe", "--resource-group", "Arc-Servers", "--port", "9443")
    assert (ids_["location"], ids_["resourceGroup"], ids_["url"]) == (
        "northeurope",
        "Arc-Servers",
        "https://127.0.0.1:9443",
    )
    subscription = f"/subscriptions/{ids_['subscriptionId']}"

    ops = cli.json(
        "sp", "create", "--name", "ops team", "--role", "resource administrator",
        "--scope", f"{subscription.upper()}/resourceGroups/Arc-Servers",
    )  # fmt: skip
    assert ops["role"] == ADMINISTRATOR
    assert ops["scope"] == f"{subscription}/resourceGroups/Arc-Servers"
    assert {k: ops[k] for k in ("url", "caCertificate", "tenantId", "subscriptionId", "resourceGroup")} == {
        k: ids_[k] for k in ("url", "caCertificate", "tenantId", "subscriptionId", "resourceGroup")
    }
    assert len(ops["clientSecret"]) >= 40 and ops["certificateThumbprints"] == []

    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed(key)
    pem = tmp_path / "robot.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    robot = cli.json(
        "sp", "create", "--name", "robot", "--role", "Reader", "--scope", subscription,
        "--certificate", str(pem),
    )  # fmt: skip
    assert robot["clientSecret"] is None and robot["resourceGroup"] is None
    assert robot["certificateThumbprints"] == [certificate.fingerprint(hashes.SHA1()).hex().upper()]

    first = cli.json(
        "role", "assign", "--principal", ops["objectId"], "--role", "reader", "--scope", subscription
    )
    assert first["created"] is True and first["roleAssignment"]["clientId"] == ops["clientId"]
    second = cli.json(
        "role", "assign", "--principal", ops["clientId"], "--role", "Reader", "--scope", subscription
    )
    assert second == {**first, "created": False}

    listed = cli.json("sp", "list")
    by_name = {p["displayName"]: p for p in listed["servicePrincipals"]}
    assert set(by_name) == {"arc-onboarding", "ops team", "robot"}
    assert sorted((r["role"], r["scope"]) for r in by_name["ops team"]["roles"]) == [
        (ADMINISTRATOR, f"{subscription}/resourceGroups/Arc-Servers"),
        ("Reader", subscription),
    ]
    assert (by_name["robot"]["credential"], by_name["ops team"]["credential"]) == ("certificate", "secret")
    assert ops["clientSecret"] not in json.dumps(listed) and "clientSecret" not in json.dumps(listed)

    with db.session() as session:
        stored = session.scalars(select(Principal).where(Principal.app_id == robot["clientId"])).one()
        assert stored.secret_hash is None and stored.certificate_pem is not None
        assert "PRIVATE KEY" not in stored.certificate_pem
        assert x509.load_pem_x509_certificate(stored.certificate_pem.encode()) == certificate

    code, out, err = cli.run("sp", "delete", ops["clientId"])
    assert code == 0, err
    assert out == f"Deleted service principal 'ops team' ({ops['clientId']}) and its 2 role assignment(s).\n"
    assignments = cli.json("role", "list")["roleAssignments"]
    assert sorted((a["principalName"], a["role"]) for a in assignments) == [
        ("arc-onboarding", ONBOARDING),
        ("robot", "Reader"),
    ]
    with db.session() as session:
        assert session.scalars(select(Principal).where(Principal.app_id == ops["clientId"])).first() is None

    entries = cli.json("audit", "list", "--limit", "6")["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("servicePrincipal/delete", ops["clientId"]),
        ("roleAssignment/create", subscription),
        ("roleAssignment/create", subscription),
        ("servicePrincipal/create", robot["clientId"]),
        ("roleAssignment/create", f"{subscription}/resourceGroups/Arc-Servers"),
        ("servicePrincipal/create", ops["clientId"]),
    ]
    assert {(e["principal"], e["result"]) for e in entries} == {(ACTOR, "Succeeded")}
    times = [dt.datetime.fromisoformat(e["time"]) for e in entries]
    assert times == sorted(times, reverse=True)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in this process: fast, for the many ways a command can go wrong."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mistakes_that_depend_on_the_database(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    def fails(data_dir: Path, *argv: str, url: str = database_url) -> str:
        code, out, err = run_main(capsys, *argv, "--data-dir", str(data_dir), "--database-url", url)
        assert (code, out) == (1, ""), err
        assert err.startswith("arc-controlplane: error: ") and err.count("\n") == 1
        return err

    data = tmp_path / "data"
    code, out, err = run_main(
        capsys, "init", "--json", "--data-dir", str(data), "--database-url", database_url
    )
    assert code == 0, err
    ids_ = json.loads(out)
    unknown = "/subscriptions/00000000-0000-0000-0000-000000000001"
    err = fails(data, "sp", "create", "--name", "x", "--role", "reader", "--scope", unknown)
    assert "subscription 00000000-0000-0000-0000-000000000001 does not exist here" in err
    assert ids_["subscriptionId"] in err  # the message names the subscriptions there are
    ours = f"/subscriptions/{ids_['subscriptionId']}"
    err = fails(
        data, "role", "assign", "--principal", str(uuid.UUID(int=7)), "--role", "reader", "--scope", ours
    )
    assert "no principal has the client id or object id" in err
    err = fails(data, "sp", "delete", str(uuid.UUID(int=7)))
    assert "no principal has the client id or object id" in err
    err = fails(data, "sp", "create", "--name", "x", "--role", "reader", "--scope", ours,
                "--certificate", str(tmp_path / "missing.pem"))  # fmt: skip
    assert "cannot read --certificate" in err and "No such file or directory" in err
    (tmp_path / "key.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    err = fails(data, "sp", "create", "--name", "x", "--role", "reader", "--scope", ours,
                "--certificate", str(tmp_path / "key.pem"))  # fmt: skip
    assert "no PEM certificate" in err
    err = fails(data, "sp", "create", "--name", "x", "--role", "reader", "--scope", ours,
                "--tenant", str(uuid.UUID(int=9)))  # fmt: skip
    assert f"tenant {uuid.UUID(int=9)} does not exist here" in err
    # Another data directory cannot initialise the same database a second time...
    err = fails(tmp_path / "other", "init")
    assert f"already holds tenant {ids_['tenantId']}" in err
    # ...and this one notices when given another database than its own.
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    err = fails(data, "init", url=empty)
    assert f"names tenant {ids_['tenantId']}, which the database {empty} does not hold" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sp", "create", "--name", "x", "--role", "owner-ish", "--scope", "/subscriptions/x"],
         "argument --role: unknown role 'owner-ish'; the roles are 'Owner', 'Reader', "
         "'Azure Connected Machine Onboarding', 'Azure Connected Machine Resource Administrator'"),
        (["sp", "create", "--name", "x", "--role", "reader", "--scope", "/resourceGroups/rg"],
         "argument --scope: '/resourceGroups/rg' is not a scope: use /subscriptions/<id> or "
         "/subscriptions/<id>/resourceGroups/<name>"),
        (["role", "assign", "--principal", "bob", "--role", "reader", "--scope", "/subscriptions/x"],
         "argument --principal: 'bob' is not an id (a GUID"),
        (["sp", "create", "--role", "reader", "--scope", f"/subscriptions/{uuid.UUID(int=1)}"],
         "the following arguments are required: --name"),
        (["sp", "delete", "nope"], "argument CLIENT_ID: 'nope' is not an id"),
        (["audit", "list", "--limit", "0"], "argument --limit: '0' is not a number of entries (1-10000)"),
        (["init", "--resource-group", "bad."], "--resource-group: 'bad.' is not a resource group name"),
        (["init", "--location", "West-Europe"], "argument --location: 'West-Europe' is not a location"),
        (["init", "--public-url", "http://cp:80"], "argument --public-url: 'http://cp:80' is not a URL"),
        (["init", "--public-url", "https://cp/prefix"], "is not a URL of this server: use https://HOST[:PORT]"),
        (["sp"], "the following arguments are required: COMMAND"),
    ],
)  # fmt: skip
def test_usage_mistakes_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("arc-controlplane: error: ") and err.count("\n") == 1
    assert message in err


def test_commands_before_init_and_an_unreachable_database(tmp_path: Path) -> None:
    fresh = Cli(tmp_path / "fresh", f"sqlite:///{tmp_path / 'fresh' / 'controlplane.db'}")
    code, err = fresh.error("sp", "list")
    assert code == 1 and "there is no database at" in err and "run 'arc-controlplane init' first" in err
    result = run_cli("sp", "create", "--data-dir", str(tmp_path / "fresh"), "--name", "x", "--role", "reader",
                     "--scope", "/subscriptions/00000000-0000-0000-0000-000000000001")  # fmt: skip
    assert (
        result.returncode == 1
        and "is not initialised; run 'arc-controlplane init' or give --tenant" in result.stderr
    )
    down = Cli(tmp_path / "d", "postgresql+psycopg://arc:s3cret-pw@127.0.0.1:1/arc")
    code, err = down.error("audit", "list")
    assert code == 1
    assert "cannot open the database postgresql+psycopg://arc:***@127.0.0.1:1/arc: " in err
    assert "s3cret-pw" not in err


def test_the_resource_group_rule_is_arms() -> None:
    assert parsers.RESOURCE_GROUP_NAME.pattern == resource_ids.RESOURCE_GROUP_NAME.pattern


def self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "robot")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
