"""RS256 signatures with the system's libcrypto: the one Python's ``ssl`` module already loaded.

himds signs one machine assertion every eight minutes or so. Loading the ``cryptography``
package for that would cost it about 10 MiB of memory on every managed server (its Rust
extension alone maps 9 MiB), a third of the agent's whole budget. libcrypto is in the
process anyway (``ssl`` links it), so himds calls the handful of its functions it needs
through ``ctypes``: read a PEM private key, sign with SHA-256 and PKCS #1 v1.5, free.
These functions exist unchanged from OpenSSL 1.1.1 to 3.x.

Key generation (rare: at connect and renewal) stays with the ``cryptography`` package.
"""

from __future__ import annotations

import ctypes
import ssl  # noqa: F401  (imported for its side effect: it maps libcrypto into the process)
import threading
from typing import Any

from arc_agent.errors import AzcmError, ErrorCode

EVP_PKEY_RSA = 6


class LibcryptoUnavailable(Exception):
    """No usable libcrypto in this process; sign with the ``cryptography`` package instead."""


def _loaded_libcrypto() -> str:
    """The path of the libcrypto mapped into this process (``ssl`` loaded it)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                if "/libcrypto.so" in path:
                    return path
    except OSError:
        pass
    raise LibcryptoUnavailable("libcrypto is not mapped into this process")


class _Functions:
    """The libcrypto functions used here, with their C signatures."""

    def __init__(self, path: str) -> None:
        try:
            lib = ctypes.CDLL(path)
            p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
            self.BIO_new_mem_buf = self._fn(lib, "BIO_new_mem_buf", p, [p, i])
            self.BIO_free = self._fn(lib, "BIO_free", i, [p])
            self.PEM_read_bio_PrivateKey = self._fn(lib, "PEM_read_bio_PrivateKey", p, [p, p, p, p])
            self.EVP_PKEY_free = self._fn(lib, "EVP_PKEY_free", None, [p])
            # OpenSSL 3 renamed EVP_PKEY_base_id (now a macro) to EVP_PKEY_get_base_id.
            base_id = "EVP_PKEY_get_base_id" if hasattr(lib, "EVP_PKEY_get_base_id") else "EVP_PKEY_base_id"
            self.EVP_PKEY_base_id = self._fn(lib, base_id, i, [p])
            self.EVP_MD_CTX_new = self._fn(lib, "EVP_MD_CTX_new", p, [])
            self.EVP_MD_CTX_free = self._fn(lib, "EVP_MD_CTX_free", None, [p])
            self.EVP_sha256 = self._fn(lib, "EVP_sha256", p, [])
            self.EVP_DigestSignInit = self._fn(lib, "EVP_DigestSignInit", i, [p, p, p, p, p])
            self.EVP_DigestSign = self._fn(lib, "EVP_DigestSign", i, [p, p, ctypes.POINTER(sz), p, sz])
            self.ERR_get_error = self._fn(lib, "ERR_get_error", ctypes.c_ulong, [])
            self.ERR_error_string_n = self._fn(lib, "ERR_error_string_n", None, [ctypes.c_ulong, p, sz])
        except (OSError, AttributeError) as exc:
            raise LibcryptoUnavailable(f"{path}: {exc}") from None

    @staticmethod
    def _fn(lib: ctypes.CDLL, name: str, restype: object, argtypes: list[object]) -> Any:
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
        return function

    def last_error(self) -> str:
        """The oldest error on this thread's OpenSSL error queue (the queue is emptied)."""
        code = self.ERR_get_error()
        first = code
        while code:
            code = self.ERR_get_error()
        if not first:
            return "unknown error"
        buffer = ctypes.create_string_buffer(256)
        self.ERR_error_string_n(first, buffer, len(buffer))
        return buffer.value.decode("ascii", "replace")


_functions: _Functions | None = None
_functions_lock = threading.Lock()


def _libcrypto() -> _Functions:
    global _functions  # one binding per process, made on first use (no work at import)
    with _functions_lock:
        if _functions is None:
            _functions = _Functions(_loaded_libcrypto())
        return _functions


class LibcryptoRsaKey:
    """An RSA private key held by libcrypto, signing RS256 (thread-safe: one context per call)."""

    algorithm = "RS256"

    def __init__(self, pem: bytes) -> None:
        """Load a PEM private key; ``ValueError`` if it is not one, or not RSA."""
        self._lib = _libcrypto()
        self._pkey: int | None = None
        buffer = ctypes.create_string_buffer(pem, len(pem))
        bio = self._lib.BIO_new_mem_buf(buffer, len(pem))
        if not bio:
            raise MemoryError("BIO_new_mem_buf failed")
        try:
            # A NULL password callback with NULL data: an encrypted key fails instead of prompting.
            pkey = self._lib.PEM_read_bio_PrivateKey(bio, None, None, None)
        finally:
            self._lib.BIO_free(bio)
        if not pkey:
            raise ValueError(f"not a PEM private key ({self._lib.last_error()})")
        self._pkey = pkey
        if self._lib.EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA:
            self.close()
            raise ValueError("not an RSA key")

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 of ``data`` (JWS RS256)."""
        try:
            return self._sign(data)
        except (ValueError, MemoryError) as exc:
            raise AzcmError(ErrorCode.SIGNING_FAILED, f"cannot sign with the machine key: {exc}") from None

    def _sign(self, data: bytes) -> bytes:
        if not self._pkey:
            raise ValueError("the key is closed")
        lib = self._lib
        ctx = lib.EVP_MD_CTX_new()
        if not ctx:
            raise MemoryError("EVP_MD_CTX_new failed")
        try:
            if lib.EVP_DigestSignInit(ctx, None, lib.EVP_sha256(), None, self._pkey) != 1:
                raise ValueError(f"EVP_DigestSignInit: {lib.last_error()}")
            length = ctypes.c_size_t(0)
            if lib.EVP_DigestSign(ctx, None, ctypes.byref(length), data, len(data)) != 1:
                raise ValueError(f"EVP_DigestSign: {lib.last_error()}")
            signature = ctypes.create_string_buffer(length.value)
            if lib.EVP_DigestSign(ctx, signature, ctypes.byref(length), data, len(data)) != 1:
                raise ValueError(f"EVP_DigestSign: {lib.last_error()}")
            return signature.raw[: length.value]
        finally:
            lib.EVP_MD_CTX_free(ctx)

    def close(self) -> None:
        if self._pkey:
            self._lib.EVP_PKEY_free(self._pkey)
            self._pkey = None

    def __del__(self) -> None:
        self.close()
