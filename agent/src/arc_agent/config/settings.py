"""The local settings of ``azcmagent config`` (``localconfig.json``, docs/reference/azcmagent.md).

The twelve keys of the real agent, with its defaults, plus two of ours that say where the
hybridops.arc control plane is (``controlplane.url``, ``controlplane.cafile``). The file holds
a JSON object of only the keys whose value differs from the default (the real file's schema is
not public, docs/reference/not-public.md); values are typed: booleans, integers, strings, lists of strings.
No secrets are kept here, so the file is written 0644 like the real agent's.

Rules of the real agent kept here (D:security-extensions.md): while ``config.mode`` is
``monitor`` the extension allow and block lists cannot be changed, and switching to monitor
mode disables guest configuration. Ours, because Microsoft's monitor-mode allowlist is not
public: switching to monitor mode leaves both lists as they are.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Union

from arc_agent.errors import AzcmError, ErrorCode

Value = Union[bool, int, str, list[str]]

CONTROL_PLANE_URL = "controlplane.url"
CONTROL_PLANE_CAFILE = "controlplane.cafile"
CONFIG_MODE = "config.mode"
GUEST_CONFIGURATION_ENABLED = "guestconfiguration.enabled"
EXTENSIONS_ALLOWLIST = "extensions.allowlist"
EXTENSIONS_BLOCKLIST = "extensions.blocklist"
MONITOR = "monitor"
ALLOW_NONE = "Allow/None"
MODES = ("replace", "add", "remove")

FILE_MODE = 0o644
_HOST = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)
_EXTENSION = re.compile(r"[^\s/]+/[^\s/]+")
_DECIMAL = re.compile(r"[0-9]+")
_BYPASS = ("AAD", "ARM", "Arc", "AMA", "ArcData")


class InvalidValue(ValueError):
    """A value a setting does not accept; the message says why."""


# --- value checkers: canonical value from text (what ``config set`` gets) ------------------------


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise InvalidValue("expected true or false")


def _percent(text: str) -> int:
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped) or not 1 <= int(stripped) <= 100:
        raise InvalidValue("expected a whole percentage from 1 to 100")
    return int(stripped)


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in allowed:
            raise InvalidValue(f"expected one of {', '.join(allowed)}")
        return lowered

    return check


def _port(text: str) -> str:
    if not _DECIMAL.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise InvalidValue(f"{text!r} is not a port number from 1 to 65535")
    return str(int(text))


def _bypass(text: str) -> str:
    for name in _BYPASS:
        if name.lower() == text.lower():
            return name
    raise InvalidValue(f"{text!r} is not a bypass group; expected {', '.join(_BYPASS)}")


def _extension(text: str, *, allow_none: bool) -> str:
    if text.lower() == ALLOW_NONE.lower():
        if allow_none:
            return ALLOW_NONE
        raise InvalidValue(f"{ALLOW_NONE} is only meaningful in {EXTENSIONS_ALLOWLIST}")
    if not _EXTENSION.fullmatch(text):
        raise InvalidValue(f"{text!r} is not Publisher/Type (two non-empty parts, one '/', no spaces)")
    return text


def _check_host(host: str | None, netloc: str) -> None:
    if not host:
        raise InvalidValue("the URL has no host")
    if netloc.startswith("[") or "]" in netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidValue(f"{host!r} is not an IPv6 address") from None
    elif not _HOST.fullmatch(host):
        raise InvalidValue(f"{host!r} is not a host name or IP address")


def _split_url(text: str) -> urllib.parse.SplitResult:
    if any(ch.isspace() for ch in text):
        raise InvalidValue("the URL contains white space")
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        raise InvalidValue(
            "the URL is malformed (check its host, and the brackets of an IPv6 address)"
        ) from None
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("credentials in the URL are not supported (this file is readable by every user)")
    _check_host(parts.hostname, parts.netloc)
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise InvalidValue("the port must be a number from 1 to 65535")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidValue("the URL may not have a query or fragment")
    return parts


def _proxy_url(text: str) -> str:
    if text == "":
        return ""
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme == "https":
        raise InvalidValue(
            "HTTPS proxies are not supported; give the proxy's http:// address "
            "(the agent's TLS connections go through it with CONNECT)"
        )
    if scheme != "http" or not text.lower().startswith("http://"):
        raise InvalidValue("expected http://HOST[:PORT]")
    parts = _split_url(text)
    if parts.path not in ("", "/"):
        raise InvalidValue("a proxy URL has no path: expected http://HOST[:PORT]")
    return text


def _control_plane_url(text: str) -> str:
    if text == "":
        return ""
    if not text.lower().startswith("https://"):
        raise InvalidValue("expected https://HOST[:PORT][/PATH] (the control plane is only reached over TLS)")
    _split_url(text)
    return text


def _absolute_path(text: str) -> str:
    if text == "":
        return ""
    if "\0" in text or not os.path.isabs(text):
        raise InvalidValue("expected an absolute path")
    return text


def _ca_file_on_disk(text: str) -> None:
    """At ``config set`` time only: the CA file must exist and hold a PEM certificate."""
    if text == "":
        return
    try:
        with open(text, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError as exc:
        raise InvalidValue(f"cannot read it: {_reason(exc)}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise InvalidValue("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")


# --- the settings ---------------------------------------------------------------------------------


class Setting(NamedTuple):
    """One key: its type, default, what it accepts, and how text becomes its value."""

    key: str
    type_name: str
    default: Value
    allowed: str
    description: str
    parse_scalar: Callable[[str], Any] | None = None
    """For scalar keys: text -> canonical value (raises :class:`InvalidValue`)."""
    parse_item: Callable[[str], str] | None = None
    """For list keys: one entry -> canonical entry (raises :class:`InvalidValue`)."""
    check_on_set: Callable[[str], None] | None = None
    """Extra check done only when a user sets the value (not when the file is read)."""
    case_insensitive_items: bool = False

    @property
    def is_list(self) -> bool:
        return self.parse_item is not None

    def parse_text(self, text: str) -> Value:
        """The value of ``config set KEY TEXT`` (lists: comma-separated; empty text = empty list)."""
        if self.parse_item is not None:
            return self._dedupe(self.parse_item(item) for item in split_list(text))
        assert self.parse_scalar is not None
        value: Value = self.parse_scalar(text)
        return value

    def parse_stored(self, stored: object) -> Value:
        """The value of this key as found in ``localconfig.json`` (typed JSON)."""
        if self.parse_item is not None:
            if not isinstance(stored, list) or not all(isinstance(item, str) for item in stored):
                raise InvalidValue("expected a list of strings")
            return self._dedupe(self.parse_item(item) for item in stored)
        assert self.parse_scalar is not None
        if isinstance(self.default, bool):
            if not isinstance(stored, bool):
                raise InvalidValue("expected true or false")
            return stored
        if isinstance(self.default, int):
            if isinstance(stored, bool) or not isinstance(stored, int):
                raise InvalidValue("expected an integer")
            value: Value = self.parse_scalar(str(stored))
            return value
        if not isinstance(stored, str):
            raise InvalidValue("expected a string")
        value = self.parse_scalar(stored)
        return value

    def same_item(self, left: str, right: str) -> bool:
        return left.lower() == right.lower() if self.case_insensitive_items else left == right

    def _dedupe(self, items: Iterable[str]) -> list[str]:
        kept: list[str] = []
        for item in items:
            if not any(self.same_item(item, other) for other in kept):
                kept.append(item)
        return kept


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; empty text is the empty list; empty entries are refused."""
    if text.strip() == "":
        return []
    items = [item.strip() for item in text.split(",")]
    if any(item == "" for item in items):
        raise InvalidValue("the list has an empty entry (two commas in a row, or a comma at an end)")
    return items


def _settings() -> tuple[Setting, ...]:
    return (
        Setting(
            "incomingconnections.enabled",
            "boolean",
            True,
            "true, false",
            "Allow remote access to this machine (e.g. SSH, Windows Admin Center) through Arc",
            parse_scalar=_boolean,
        ),
        Setting(
            "incomingconnections.ports",
            "list of ports",
            [],
            "ports 1-65535, comma-separated",
            "Local ports that remote access through Arc may reach (e.g. 22 for SSH)",
            parse_item=_port,
        ),
        Setting(
            "connection.type",
            "enum",
            "direct",
            "direct, gateway",
            "How the agent reaches Azure: directly (or through proxy.url) or through an Arc gateway",
            parse_scalar=_choice("direct", "gateway"),
        ),
        Setting(
            "proxy.url",
            "URL",
            "",
            "http://HOST[:PORT], empty for none",
            "HTTP proxy for the agent's outbound traffic (takes precedence over HTTPS_PROXY)",
            parse_scalar=_proxy_url,
        ),
        Setting(
            "proxy.bypass",
            "list",
            [],
            ", ".join(_BYPASS),
            "Service groups that bypass proxy.url",
            parse_item=_bypass,
        ),
        Setting(
            EXTENSIONS_ALLOWLIST,
            "list of extensions",
            [],
            f"Publisher/Type entries, or {ALLOW_NONE}",
            "Extensions allowed to be installed; empty allows all; Allow/None allows none",
            parse_item=lambda text: _extension(text, allow_none=True),
            case_insensitive_items=True,
        ),
        Setting(
            EXTENSIONS_BLOCKLIST,
            "list of extensions",
            [],
            "Publisher/Type entries",
            "Extensions that may not be installed",
            parse_item=lambda text: _extension(text, allow_none=False),
            case_insensitive_items=True,
        ),
        Setting(
            "extensions.enabled",
            "boolean",
            True,
            "true, false",
            "Run the extension manager",
            parse_scalar=_boolean,
        ),
        Setting(
            GUEST_CONFIGURATION_ENABLED,
            "boolean",
            True,
            "true, false",
            "Run the guest configuration (machine configuration) agent",
            parse_scalar=_boolean,
        ),
        Setting(
            CONFIG_MODE,
            "enum",
            "full",
            "full, monitor",
            "full: every feature; monitor: lists frozen and guest configuration disabled",
            parse_scalar=_choice("full", MONITOR),
        ),
        Setting(
            "guestconfiguration.agent.cpulimit",
            "percent",
            5,
            "1-100",
            "CPU share the guest configuration agent may use",
            parse_scalar=_percent,
        ),
        Setting(
            "extensions.agent.cpulimit",
            "percent",
            5,
            "1-100",
            "CPU share the extension manager may use",
            parse_scalar=_percent,
        ),
        Setting(
            CONTROL_PLANE_URL,
            "URL",
            "",
            "https://HOST[:PORT][/PATH], empty for none",
            "hybridops.arc: the control plane this agent connects to (default of connect)",
            parse_scalar=_control_plane_url,
        ),
        Setting(
            CONTROL_PLANE_CAFILE,
            "path",
            "",
            "absolute path of a PEM file, empty for the system CAs",
            "hybridops.arc: the CA certificate that signs the control plane's TLS certificate",
            parse_scalar=_absolute_path,
            check_on_set=_ca_file_on_disk,
        ),
    )


SETTINGS: Mapping[str, Setting] = {setting.key: setting for setting in _settings()}
KEYS: tuple[str, ...] = tuple(sorted(SETTINGS))


def setting(key: str) -> Setting:
    """The setting named ``key`` (any letter case), or AZCM0023 listing the valid keys."""
    found = SETTINGS.get(key.strip().lower())
    if found is None:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"unknown configuration property {key!r}; valid properties: {', '.join(KEYS)} "
            "(see 'azcmagent config info')",
        )
    return found


def format_value(value: Value) -> str:
    """A value as ``config list`` prints it: ``true``, ``5``, ``[22, 80]``, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def _copy(value: Value) -> Value:
    return list(value) if isinstance(value, list) else value


class LocalConfig:
    """The effective settings: the defaults, overridden by what ``localconfig.json`` holds."""

    def __init__(self, values: Mapping[str, Value] | None = None) -> None:
        """Defaults overridden by ``values`` (typed, as in the file; checked like the file)."""
        self._values: dict[str, Value] = {}
        for key, value in (values or {}).items():
            found = setting(key)
            try:
                self._store(found, found.parse_stored(value))
            except InvalidValue as exc:
                raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"invalid value for {found.key}: {exc}") from None

    @classmethod
    def load(cls, path: Path, *, ignore_invalid: Iterable[str] = ()) -> LocalConfig:
        """Read ``path`` (a missing file means all defaults).

        A file that cannot be read or does not hold valid settings is AZCM0066, naming the file
        and the way out. Keys in ``ignore_invalid`` with an invalid value are dropped instead
        (``config clear KEY`` uses it to repair a damaged entry).
        """
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise AzcmError(
                ErrorCode.HIMDS_LOCAL_CONFIG_UNAVAILABLE,
                f"cannot read the local configuration {str(path)!r}: {_reason(exc)}; "
                "run azcmagent as root, or check the file's permissions",
            ) from None
        document = _decode(raw, path)
        skip = {key.strip().lower() for key in ignore_invalid}
        config = cls()
        for key, stored in document.items():
            known = SETTINGS.get(key)
            if known is None:
                raise _corrupted(
                    path,
                    f"unknown property {key!r}",
                    f"remove it from the file, or delete {str(path)!r} to restore all defaults",
                )
            try:
                config._store(known, known.parse_stored(stored))
            except InvalidValue as exc:
                if key in skip:
                    continue
                raise _corrupted(
                    path,
                    f"invalid value for {key}: {exc}",
                    f"run 'azcmagent config clear {key}' to restore its default, or delete the file",
                ) from None
        return config

    def get(self, key: str) -> Value:
        """The effective value of ``key`` (bool, int, str or list of str)."""
        found = setting(key)
        return _copy(self._values.get(found.key, found.default))

    def items(self) -> list[tuple[str, Value]]:
        """Every key with its effective value, sorted by key."""
        return [(key, self.get(key)) for key in KEYS]

    def stored(self) -> dict[str, Value]:
        """What ``save`` writes: only the keys whose value differs from the default."""
        return {key: _copy(value) for key, value in sorted(self._values.items())}

    def set(self, key: str, value_text: str, mode: str = "replace") -> list[tuple[str, Value]]:
        """Change ``key`` from text as typed on the command line.

        ``mode`` is ``replace``, or ``add``/``remove`` (list keys only: entries added once each,
        entries not present ignored on remove). Returns what changed as ``(key, new value)``
        pairs, ``key`` first (switching to monitor mode also disables guest configuration).
        Invalid values are AZCM0023; changes monitor mode forbids are AZCM0027.
        """
        found = setting(key)
        if mode not in MODES:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT, f"unknown set mode {mode!r} (expected {', '.join(MODES)})"
            )
        if mode != "replace" and not found.is_list:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"--{mode} applies to list properties only; {found.key} is a {found.type_name}: "
                f"set it without --{mode}",
            )
        try:
            given = found.parse_text(value_text)
            if found.check_on_set is not None and isinstance(given, str):
                found.check_on_set(given)
        except InvalidValue as exc:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"invalid value {value_text!r} for {found.key}: {exc}; allowed: {found.allowed}",
            ) from None
        if mode != "replace" and given == []:
            raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"nothing to {mode}: give one or more entries")
        new_value = self._combine(found, given, mode)
        self._check_mode_rules(found, new_value)
        changes: list[tuple[str, Value]] = [(found.key, _copy(new_value))]
        self._store(found, new_value)
        if found.key == CONFIG_MODE and new_value == MONITOR:
            self._store(SETTINGS[GUEST_CONFIGURATION_ENABLED], False)
            changes.append((GUEST_CONFIGURATION_ENABLED, False))
        return changes

    def clear(self, key: str) -> Value:
        """Put ``key`` back to its default; returns that default."""
        found = setting(key)
        self._check_mode_rules(found, found.default)
        self._values.pop(found.key, None)
        return _copy(found.default)

    def save(self, path: Path) -> None:
        """Write the file atomically (0644); a failure is AZCM0069."""
        from arc_agent.fsutil import write_json_atomic  # here: readers (arcproxy) need not load it

        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_json_atomic(path, self.stored(), mode=FILE_MODE)
        except OSError as exc:
            raise AzcmError(
                ErrorCode.LOCAL_CONFIG_UPDATE_FAILED,
                f"cannot write the local configuration {str(path)!r}: {_reason(exc)}; "
                f"check that {str(path.parent)!r} exists and root can write to it",
            ) from None

    def _combine(self, found: Setting, given: Value, mode: str) -> Value:
        if mode == "replace":
            return given
        assert isinstance(given, list)
        current = self.get(found.key)
        assert isinstance(current, list)
        if mode == "add":
            return current + [item for item in given if not any(found.same_item(item, c) for c in current)]
        return [item for item in current if not any(found.same_item(item, g) for g in given)]

    def _check_mode_rules(self, found: Setting, new_value: Value) -> None:
        if self.get(CONFIG_MODE) != MONITOR or new_value == self.get(found.key):
            return
        if found.key in (EXTENSIONS_ALLOWLIST, EXTENSIONS_BLOCKLIST):
            raise AzcmError(
                ErrorCode.CONFIGURATION_CONFLICT,
                f"{found.key} cannot be changed while config.mode is monitor; switch to full mode first: "
                "'azcmagent config set config.mode full'",
            )
        if found.key == GUEST_CONFIGURATION_ENABLED and new_value is True:
            raise AzcmError(
                ErrorCode.CONFIGURATION_CONFLICT,
                "guest configuration stays disabled while config.mode is monitor; switch to full mode first: "
                "'azcmagent config set config.mode full'",
            )

    def _store(self, found: Setting, value: Value) -> None:
        if value == found.default:
            self._values.pop(found.key, None)
        else:
            self._values[found.key] = _copy(value)


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _decode(raw: bytes, path: Path) -> dict[str, object]:
    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        document: dict[str, object] = {}
        for key, value in pairs:
            if key in document:
                raise ValueError(f"property {key!r} appears twice")
            document[key] = value
        return document

    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupted(path, f"not valid JSON ({exc})", "delete it to restore all defaults") from None
    if not isinstance(document, dict):
        raise _corrupted(path, "not a JSON object", "delete it to restore all defaults")
    return document


def _corrupted(path: Path, problem: str, fix: str) -> AzcmError:
    return AzcmError(
        ErrorCode.HIMDS_LOCAL_CONFIG_UNAVAILABLE,
        f"the local configuration {str(path)!r} is corrupted: {problem}; {fix}",
    )


def guest_configuration_off(config: LocalConfig) -> str:
    """Why machine configuration (gcad) is off now, or "" when it is on."""
    if config.get(GUEST_CONFIGURATION_ENABLED) is False:
        return f"{GUEST_CONFIGURATION_ENABLED} is false"
    if config.get(CONFIG_MODE) == MONITOR:
        return f"{CONFIG_MODE} is {MONITOR}"
    return ""
