"""API keys: the keys file (only sha256 digests are stored), and the :class:`Principal` a request acts as.

Keys file (``HEPSONIC_API_KEYS_FILE``)::

    keys:
      - {name: cms-reco, sha256: <hex sha256 of the key>, models: ["*"], admin: false}
      - {name: trigger, sha256: ..., models: [ringer], versions: [stable]}   # pinned to the stable alias
      - {name: ops, sha256: ..., admin: true}                                # rollout and reload

``models`` and ``versions`` are shell-style patterns (``*`` = any). A key restricted in ``versions`` may only name
those versions or aliases; a request of such a key that names no version is served by the first one listed.
The key itself never appears in a log line, an error message or a metric: only its ``name`` does.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._errors import PermissionDenied, Unauthenticated

__all__ = ["ANONYMOUS", "ApiKeySpec", "KeyStore", "KeysFile", "Principal", "hash_key"]

#: Keys that appear in documentation and examples: refused outside development (they are not secrets).
_CACHE_LIMIT = 4096
WELL_KNOWN_KEYS = ("changethis", "changeme", "hepsonic-dev-key", "secret", "test")


def hash_key(key: str) -> str:
    """The hex sha256 of an API key: what the keys file stores."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeySpec(BaseModel):
    """One key of the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    models: tuple[str, ...] = ("*",)
    versions: tuple[str, ...] = ("*",)
    admin: bool = False

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class KeysFile(BaseModel):
    """The whole keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: tuple[ApiKeySpec, ...] = Field(min_length=1)

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: tuple[ApiKeySpec, ...]) -> tuple[ApiKeySpec, ...]:
        for attribute in ("name", "sha256"):
            seen: set[str] = set()
            for key in keys:
                value = getattr(key, attribute)
                if value in seen:
                    shown = key.name if attribute == "sha256" else value
                    raise ValueError(f"two keys share the same {attribute} (key {shown!r})")
                seen.add(value)
        return keys


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts as, and what it may touch."""

    name: str
    models: tuple[str, ...] = ("*",)
    versions: tuple[str, ...] = ("*",)
    admin: bool = False
    _allowed: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def may_use(self, model: str) -> bool:
        """Whether this principal may call ``model`` at all."""
        allowed = self._allowed.get(model)
        if allowed is None:
            allowed = any(fnmatch.fnmatchcase(model, p) for p in self.models)
            if len(self._allowed) < _CACHE_LIMIT:  # names come from clients: bound the cache
                self._allowed[model] = allowed
        return allowed

    def authorize(self, model: str, requested: str | None) -> str | None:
        """Check ``model`` and the requested version/alias; returns the version to resolve (maybe pinned)."""
        if not self.may_use(model):
            raise PermissionDenied(f"API key {self.name!r} may not use model {model!r}")
        if self.versions == ("*",):
            return requested
        if requested in (None, "", "0"):
            return self.versions[0]
        if not any(fnmatch.fnmatchcase(requested, p) for p in self.versions):
            allowed = ", ".join(self.versions)
            raise PermissionDenied(
                f"API key {self.name!r} may not use model {model!r} version {requested!r} (allowed: {allowed})"
            )
        return requested

    def require_admin(self, action: str) -> None:
        """Raise :class:`PermissionDenied` unless this principal has the admin scope."""
        if not self.admin:
            raise PermissionDenied(f"API key {self.name!r} lacks the admin scope needed to {action}")


#: Who every request acts as when auth is off (development only).
ANONYMOUS = Principal(name="anonymous", admin=True)
#: The principal gateway replicas act as among themselves (their shared key: ``HEPSONIC_PEER_KEY_FILE``).
PEERS = Principal(name="gateway-peers", admin=True)


class KeyStore:
    """The API keys, indexed by digest. ``authenticate`` turns an ``Authorization`` value into a principal."""

    def __init__(self, keys: KeysFile, *, peer_key_sha256: str | None = None) -> None:
        self.keys = keys
        #: Digest of the key the gateway replicas share (acts as :data:`PEERS`), kept across reloads.
        self.peer_key_sha256 = peer_key_sha256
        self._by_digest = {
            key.sha256: Principal(name=key.name, models=key.models, versions=key.versions, admin=key.admin)
            for key in keys.keys
        }
        if peer_key_sha256 is not None:
            self._by_digest.setdefault(peer_key_sha256, PEERS)

    @classmethod
    def from_file(cls, path: Path, *, peer_key_sha256: str | None = None) -> KeyStore:
        """Read and validate a keys file (``ValueError``/``pydantic.ValidationError`` say what is wrong)."""
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a keys file is a YAML mapping with a `keys` list")  # noqa: TRY004
        return cls(KeysFile.model_validate(data), peer_key_sha256=peer_key_sha256)

    def well_known_keys(self) -> list[str]:
        """Names of keys whose secret is one of :data:`WELL_KNOWN_KEYS` (refused in production)."""
        digests = {hash_key(k) for k in WELL_KNOWN_KEYS}
        return [key.name for key in self.keys.keys if key.sha256 in digests]

    def authenticate(self, authorization: str | None) -> Principal:
        """``Bearer <key>`` -> the key's principal, else :class:`Unauthenticated` (the key is never echoed)."""
        if not authorization:
            raise Unauthenticated("missing API key: send the header `Authorization: Bearer <key>`")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed Authorization header: expected `Bearer <key>`")
        principal = self._by_digest.get(hash_key(key.strip()))
        if principal is None:
            raise Unauthenticated("unknown API key")
        return principal
