"""Managed identity for local applications: challenge key files and the token cache.

The Arc challenge flow (docs/reference/himds.md; DESIGN.md "Identity and security model"): a caller's
first token request gets a 401 naming a key file, ``<tokens dir>/<random>.key``, that only
root and members of group ``himds`` can read (mode 0640, owner root when himds runs as root);
whoever can read it proves so by sending its content back. :class:`ChallengeStore` makes and
checks those files:

- a key file holds a random secret (64 hex digits) and is single-use: a successful token
  answer deletes it; an attempt that fails for a reason of the server (control plane
  unreachable) leaves it usable, because HTTP clients retry the same request;
- unused key files expire after 60 s. One daemon thread deletes them, sleeping until the next
  expiry and not at all while there is none (an idle himds does no work);
- key files left by an earlier himds are deleted before the first new one is made;
- at most 64 challenges are outstanding for one local user (by the uid owning the caller's
  socket, ``peers.py``), and 4096 in all; beyond that that user gets 429, and no other: a flood
  from ``nobody`` used to make root's requests get 429 for a minute (issue 10, finding 9).

:class:`TokenCache` keeps one token per resource until 5 minutes (or a tenth of its life, if
that is less) before it expires; tokens come from a :data:`TokenSource`, in himds a call to the
control plane (docs/agent-protocol.md §5.5). Only one call to the source is in flight at a time
(they are rare: about one a day per resource); cached answers never wait for it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from arc_agent.config.connection import WAY_OUT
from arc_agent.cpclient.agentapi import (
    AgentApiError,
    Cloned,
    CredentialExpired,
    MachineUnknown,
    RequestRefused,
)
from arc_agent.errors import AzcmError

KEY_FILE_MODE = 0o640
TOKENS_DIR_MODE = 0o750
CHALLENGE_LIFETIME_SECONDS = 60.0
MAX_PENDING_CHALLENGES = 4096
MAX_PENDING_PER_CALLER = 64
MAX_SECRET_LENGTH = 4096
REFRESH_MARGIN_SECONDS = 300
MAX_CACHED_RESOURCES = 256
STALE_TOKEN_GRACE_SECONDS = 60

TokenSource = Callable[[str], Mapping[str, Any]]
"""Asks for a token for a resource; answers docs/agent-protocol.md §5.5's fields."""


class TokenUnavailable(Exception):
    """Why no token can be given: the HTTP status and body himds answers the local caller."""

    def __init__(self, status: HTTPStatus, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


# --- challenges ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    path: Path
    expires: float
    owner: int | None
    """The uid of the caller it was issued to (None when it could not be told)."""
    claimed: bool = False


class Claim:
    """A secret being used by one request: ``consume()`` on success, ``release()`` otherwise."""

    def __init__(self, store: ChallengeStore, digest: bytes) -> None:
        self._store = store
        self._digest = digest

    def consume(self) -> None:
        self._store._finish(self._digest, consumed=True)

    def release(self) -> None:
        self._store._finish(self._digest, consumed=False)


class ChallengeStore:
    """The key files of outstanding challenges in the tokens directory."""

    def __init__(
        self,
        directory: Path,
        *,
        group: int | None = None,
        lifetime: float = CHALLENGE_LIFETIME_SECONDS,
        max_pending: int = MAX_PENDING_CHALLENGES,
        max_per_caller: int = MAX_PENDING_PER_CALLER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``group`` (a gid, normally that of ``himds``) owns the key files; set only as root."""
        self.directory = directory
        self._group = group
        self._lifetime = lifetime
        self._max_pending = max_pending
        self._max_per_caller = max_per_caller
        self._clock = clock
        self._pending: dict[bytes, _Pending] = {}
        self._per_owner: collections.Counter[int | None] = collections.Counter()
        self._expiries: collections.deque[tuple[float, bytes]] = collections.deque()
        self._condition = threading.Condition()
        self._janitor: threading.Thread | None = None
        self._prepared = False
        self._closed = False

    def issue(self, owner: int | None = None) -> Path:
        """Make a new key file for the caller with uid ``owner``; its path goes into the 401's
        ``WWW-Authenticate``."""
        with self._condition:
            if self._closed:
                raise TokenUnavailable(
                    HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "himds is stopping; try again"
                )
            waiting = self._per_owner[owner]
            if waiting >= self._max_per_caller:
                who = "this caller" if owner is None else f"user id {owner}"
                raise TokenUnavailable(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "too_many_requests",
                    f"{waiting} challenges issued to {who} are waiting for an answer; answer them or "
                    f"retry in {int(self._lifetime)} s",
                )
            if len(self._pending) >= self._max_pending:
                raise TokenUnavailable(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "too_many_requests",
                    f"{len(self._pending)} challenges are waiting for an answer; answer them or retry "
                    f"in {int(self._lifetime)} s",
                )
            if not self._prepared:
                self._prepare_directory()
                self._prepared = True
            secret = secrets.token_hex(32)
            path = self.directory / f"{secrets.token_hex(16)}.key"
            self._write_key_file(path, secret)
            digest = _digest(secret)
            expires = self._clock() + self._lifetime
            self._pending[digest] = _Pending(path, expires, owner)
            self._per_owner[owner] += 1
            self._expiries.append((expires, digest))
            self._start_janitor()
            self._condition.notify_all()
            return path

    def redeem(self, secret: str) -> Claim | None:
        """A claim on the challenge whose key file held ``secret``; None if there is none now."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return None
        digest = _digest(secret)
        with self._condition:
            pending = self._pending.get(digest)
            if pending is None or pending.claimed:
                return None
            if pending.expires <= self._clock():
                self._forget(digest)
                return None
            pending.claimed = True
            return Claim(self, digest)

    def pending_count(self) -> int:
        with self._condition:
            return len(self._pending)

    def close(self) -> None:
        """Delete every outstanding key file and stop the janitor."""
        with self._condition:
            self._closed = True
            for digest in list(self._pending):
                self._forget(digest)
            self._condition.notify_all()
        if self._janitor is not None:
            self._janitor.join(timeout=5)

    # --- internals ----------------------------------------------------------------------------

    def _finish(self, digest: bytes, *, consumed: bool) -> None:
        with self._condition:
            pending = self._pending.get(digest)
            if pending is None:
                return
            if consumed or pending.expires <= self._clock():
                self._forget(digest)
            else:
                pending.claimed = False

    def _forget(self, digest: bytes) -> None:
        pending = self._pending.pop(digest, None)
        if pending is not None:
            self._per_owner[pending.owner] -= 1
            if self._per_owner[pending.owner] <= 0:
                del self._per_owner[pending.owner]
            with contextlib.suppress(FileNotFoundError):
                pending.path.unlink()

    def _prepare_directory(self) -> None:
        """Create the tokens directory if needed; delete key files an earlier himds left."""
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(mode=TOKENS_DIR_MODE, parents=True, exist_ok=True)
                if self._group is not None and os.geteuid() == 0:
                    os.chown(self.directory, 0, self._group)
            for leftover in self.directory.glob("*.key"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        except OSError as exc:
            raise self._unusable(exc) from None

    def _give_to_root(self, fd: int) -> None:
        """Owner root, group himds (docs/reference/himds.md). himds runs as its own user with only the
        CAP_CHOWN capability for this (himdsd.service); without it, the file keeps himds as
        owner and still gets the group."""
        if self._group is None:
            return
        try:
            os.fchown(fd, 0, self._group)
        except PermissionError:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, self._group)

    def _write_key_file(self, path: Path, secret: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, KEY_FILE_MODE)
            try:
                os.fchmod(fd, KEY_FILE_MODE)  # the umask may have taken bits off
                self._give_to_root(fd)
                os.write(fd, secret.encode("ascii"))
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise self._unusable(exc) from None

    def _unusable(self, exc: OSError) -> TokenUnavailable:
        return TokenUnavailable(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "server_error",
            f"himds cannot write challenge files in {self.directory}: {exc.strerror or exc}; the directory "
            "must exist and be writable by himds (reinstall the agent to restore it)",
        )

    def _start_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = threading.Thread(target=self._sweep, name="himds-challenges", daemon=True)
            self._janitor.start()

    def _sweep(self) -> None:
        """Delete expired key files; sleep until the next expiry, or until there is one."""
        with self._condition:
            while not self._closed:
                if not self._expiries:
                    self._condition.wait()
                    continue
                expires, digest = self._expiries[0]
                wait = expires - self._clock()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                self._expiries.popleft()
                pending = self._pending.get(digest)
                # A claimed one is in use right now; the request releases (and so deletes) it.
                if pending is not None and not pending.claimed:
                    self._forget(digest)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_on: int
    """Seconds since 1970."""
    not_before: str
    resource: str
    token_type: str
    refresh_at: float
    """When the cache asks for a new one (seconds since 1970)."""

    def answer(self, now: float) -> dict[str, str]:
        """The body for the caller, Azure's names and string values; ``expires_in`` from now."""
        return {
            "access_token": self.access_token,
            "expires_on": str(self.expires_on),
            "expires_in": str(max(0, self.expires_on - int(now))),
            "not_before": self.not_before,
            "resource": self.resource,
            "token_type": self.token_type,
        }


def parse_token(document: Mapping[str, Any], resource: str, now: float) -> Token:
    """Check the source's answer (docs/agent-protocol.md §5.5); 502 when it is not usable."""

    def bad(problem: str) -> TokenUnavailable:
        return TokenUnavailable(
            HTTPStatus.BAD_GATEWAY,
            "bad_gateway",
            f"the control plane's token answer is unusable ({problem}); check that the control plane "
            "and the agent are compatible versions",
        )

    access_token = document.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise bad("no access_token")
    expires_on = _seconds(document.get("expires_on"))
    if expires_on is None:
        expires_in = _seconds(document.get("expires_in"))
        if expires_in is None:
            raise bad("neither expires_on nor expires_in is a number of seconds")
        expires_on = int(now) + expires_in
    if expires_on <= now:
        raise bad("the token has already expired")
    not_before = _seconds(document.get("not_before"))
    life = expires_on - (not_before if not_before is not None and not_before < expires_on else int(now))
    token_type = document.get("token_type")
    answered_resource = document.get("resource")
    return Token(
        access_token=access_token,
        expires_on=expires_on,
        not_before=str(not_before) if not_before is not None else str(int(now)),
        resource=answered_resource if isinstance(answered_resource, str) and answered_resource else resource,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        refresh_at=expires_on - min(REFRESH_MARGIN_SECONDS, life / 10),
    )


def _seconds(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class TokenCache:
    """One token per resource, refreshed from the source shortly before it expires."""

    def __init__(
        self,
        source: TokenSource,
        *,
        clock: Callable[[], float] = time.time,
        max_entries: int = MAX_CACHED_RESOURCES,
    ) -> None:
        self._source = source
        self._clock = clock
        self._max_entries = max_entries
        self._tokens: dict[str, Token] = {}
        self._fetch_lock = threading.Lock()

    def get(self, resource: str) -> Token:
        token = self._tokens.get(resource)
        if token is not None and self._clock() < token.refresh_at:
            return token
        with self._fetch_lock:
            token = self._tokens.get(resource)  # another request may just have fetched it
            now = self._clock()
            if token is not None and now < token.refresh_at:
                return token
            try:
                document = self._source(resource)
            except TokenUnavailable as exc:
                # The one we have is still good for a while: better than nothing.
                still_good = token is not None and token.expires_on - now > STALE_TOKEN_GRACE_SECONDS
                if exc.status >= 500 and token is not None and still_good:
                    return token
                raise
            fresh = parse_token(document, resource, now)
            self._tokens.pop(resource, None)
            while len(self._tokens) >= self._max_entries:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[resource] = fresh
            return fresh

    def forget(self) -> None:
        """Drop every token (the machine was disconnected or connected as another)."""
        with self._fetch_lock:
            self._tokens = {}


def control_plane_token_source(fetch: TokenSource) -> TokenSource:
    """A source over the control plane call (``MachineApi.identity_token``): its failures become
    the answers local callers get (docs/agent-protocol.md §6)."""

    def source(resource: str) -> Mapping[str, Any]:
        try:
            return fetch(resource)
        except CredentialExpired as exc:
            raise TokenUnavailable(
                HTTPStatus.FORBIDDEN,
                "credential_expired",
                f"this machine's credential has expired, so it gets no tokens ({exc}); {WAY_OUT}",
            ) from None
        except MachineUnknown as exc:
            raise TokenUnavailable(
                HTTPStatus.FORBIDDEN,
                "machine_unknown",
                f"the control plane does not accept this machine any more ({exc}); if it was deleted, "
                f"{WAY_OUT}",
            ) from None
        except Cloned as exc:
            raise TokenUnavailable(
                HTTPStatus.CONFLICT,
                "machine_cloned",
                f"another host is connected as this machine ({exc}); connect this host as a machine "
                "of its own",
            ) from None
        except RequestRefused as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                raise TokenUnavailable(
                    HTTPStatus.NOT_FOUND,
                    "identity_not_found",
                    f"the machine has no managed identity ({exc}); connecting it again creates one",
                ) from None
            raise TokenUnavailable(
                HTTPStatus.BAD_REQUEST,
                "invalid_resource",
                f"the control plane refused the resource ({exc}); give an https:// or api:// audience "
                "such as https://management.azure.com/",
            ) from None
        except AgentApiError as exc:
            raise TokenUnavailable(
                HTTPStatus.BAD_GATEWAY, "bad_gateway", f"the control plane failed: {exc}; try again later"
            ) from None
        except AzcmError as exc:  # ControlPlaneUnreachable and other local trouble
            raise TokenUnavailable(
                HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", f"{exc.message}; try again later"
            ) from None

    return source
