"""Every secret the server hands out, minted and hashed in one place: agent tokens, agent ids, personal API tokens
and enrollment keys.

The database never holds a secret, only what it takes to recognise one: a SHA-256 for tokens (they are 256 random
bits, so a plain hash cannot be reversed by guessing), an HMAC keyed with ``SECRET_KEY`` for enrollment keys (they
are typed and pasted by people and may travel further; a leaked database alone cannot be used to test guesses, and
rotating ``SECRET_KEY`` invalidates every key, which is intended). Each secret starts with a marker that tells
people and secret scanners what it is.

Agent authentication, the personal-token authentication, enrollment, the admin, the demo data and the tests' factories
all take their secrets from here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings

AGENT_TOKEN_MARKER = "rmm_"  # noqa: S105 - the marker of every agent token, not a secret
AGENT_TOKEN_LENGTH = len(AGENT_TOKEN_MARKER) + 64
API_TOKEN_MARKER = "rmmu_"  # noqa: S105
API_TOKEN_PREFIX_LENGTH = 12  # shown in lists to tell a user's tokens apart
# "ek_" leaves 5 random hex characters in the 8-character prefix; a longer marker would make every prefix look alike.
ENROLLMENT_KEY_MARKER = "ek_"
ENROLLMENT_KEY_PREFIX_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Minted:
    """A new secret: ``raw`` is shown once (to the agent or the person), ``prefix`` and ``hash`` are stored."""

    raw: str
    prefix: str
    hash: str


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- agents ----------------------------------------------------------------------------------------------------


def new_agent_id() -> str:
    """The id an agent calls by (in every URL of the agent API): 64 random hex characters, not a secret."""
    return secrets.token_hex(32)


def mint_agent_token() -> Minted:
    """A fresh agent token: ``rmm_`` + 64 hex characters (32 random bytes)."""
    raw = AGENT_TOKEN_MARKER + secrets.token_hex(32)
    return Minted(raw=raw, prefix=raw[: len(AGENT_TOKEN_MARKER) + 4], hash=hash_agent_token(raw))


def hash_agent_token(raw: str) -> str:
    """The stored form of an agent token (``devices.agent_token_hash``, ``previous_token_hash``)."""
    return sha256_hex(raw)


def agent_token_is_well_formed(raw: str) -> bool:
    """Could this be an agent token at all? A malformed one is refused without a database lookup."""
    return len(raw) == AGENT_TOKEN_LENGTH and raw.startswith(AGENT_TOKEN_MARKER)


# --- people's API tokens ---------------------------------------------------------------------------------------


def mint_api_token() -> Minted:
    """A fresh personal API token: ``rmmu_`` + 43 URL-safe characters (32 random bytes)."""
    raw = API_TOKEN_MARKER + secrets.token_urlsafe(32)
    return Minted(raw=raw, prefix=raw[:API_TOKEN_PREFIX_LENGTH], hash=hash_api_token(raw))


def hash_api_token(raw: str) -> str:
    return sha256_hex(raw)


def api_token_is_well_formed(raw: str) -> bool:
    return raw.startswith(API_TOKEN_MARKER)


# --- enrollment keys ---------------------------------------------------------------------------------------------


def mint_enrollment_key() -> Minted:
    """A fresh enrollment key: ``ek_`` + 64 hex characters."""
    raw = ENROLLMENT_KEY_MARKER + secrets.token_hex(32)
    return Minted(raw=raw, prefix=raw[:ENROLLMENT_KEY_PREFIX_LENGTH], hash=hash_enrollment_key(raw))


def hash_enrollment_key(raw: str) -> str:
    """The stored form of an enrollment key: HMAC-SHA-256 with the server secret, 64 hex characters."""
    return hmac.new(settings.SECRET_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
