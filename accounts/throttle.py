"""Throttles on failed credential checks, exact under concurrency: the one module every door that checks a
credential calls. The rules are technician-api.md's ("Authentication"); the numbers are settings (rmm/settings.py).

- **Sign-in** (``POST /auth/login`` and the admin's login form, both through ``services.check_credentials``): after
  ``LOGIN_MAX_FAILURES`` (10) failures of one (email, address) pair, or ``LOGIN_MAX_FAILURES_PER_ADDRESS`` (50)
  from one address, within ``THROTTLE_WINDOW_SECONDS`` (15 minutes), 429 ``too_many_attempts`` with
  ``Retry-After``. The failures of one email from all addresses together never refuse anyone (that would let
  whoever knows an email lock its owner out): past ``LOGIN_MAX_FAILURES`` each further attempt for that email waits
  ``LOGIN_DELAY_BASE_MS`` (1 s), doubled per further failure, at most ``LOGIN_DELAY_MAX_MS`` (30 s), and is then
  checked as usual, so the owner still signs in from a fresh address.
- **Second factor** (login ``totp``, ``mfa/enable``, ``mfa/disable``, recovery codes: ``accounts.auth``):
  ``MFA_MAX_FAILURES`` (5) wrong codes of one user → 429, whichever door they came through.
- **Per address**, for credentials that are 256-bit random strings (enrollment keys, agent tokens, API tokens):
  the first ``*_MAX_FAILURES_PER_ADDRESS`` refusals get their usual 401; further refusals get 429
  ``too_many_attempts`` with ``Retry-After``. Guessing such a credential is hopeless, so these limits are about
  load and noise: they tell a misbehaving client when to come back. They are counted on the failure path only: a
  valid credential is never checked against them. So a heartbeat with a valid token makes no extra database round
  trip and takes no lock, and valid agents behind an address that is limited (a NAT shared with a broken or
  hostile machine) keep being served; only the refusals from that address turn into 429. (An in-process cache of
  limited addresses was the alternative: consulted before the token check it would cut off those valid agents;
  consulted after, it saves nothing but one single-row statement on the failure path, and each process would
  count on its own instead of exactly.)

**How it counts.** A row of ``recent_failures`` (``RecentFailures``) per (scope, subject) holds the times of that
subject's failures within the window. ``throttle_reserve`` (PL/pgSQL, migration 0006) is one statement, so one
transaction: it creates the rows it needs and locks them in (scope, subject) order, then, in a new snapshot taken
while it holds the locks, drops the times older than the window and, unless a limited row is at its limit, appends
this attempt's time to every row. It answers each row's count before this attempt and, for a row at its limit, the
seconds until the oldest counted failure leaves the window (``Retry-After``). The row lock serialises attempts on
one subject, and the count is read and written by the same locked statement, never read by one and written by a
later one (the old bug: 16 checks got through a limit of 10). An array in a row rather than a row per failure:
one short statement and one lock per subject, no index scans, bounded rows (a limited subject never holds more
times than its limit; an email's row keeps only the newest times its delay can use).

**Reservations.** A password or code check is counted *before* it runs (``reserve``) and withdrawn when it turns out
right (``Attempt.withdraw``): counting only after the check would let concurrent requests all pass "fewer than 10"
before any of them had written its failure. With the reservation, N concurrent wrong passwords get exactly 10
checks. The per-address throttles count after the refusal, because there the refusal is what counts.

**Why not something ready-made.** No Redis on a user's fresh machine; the count must be shared by every worker and
every server, so it lives in PostgreSQL. django-otp's throttling (``ThrottlingMixin``) keeps a failure counter on
each device row and locks it for 2^n seconds after n failures, reset by a success: neither "5 in a sliding
15 minutes" nor shared by a user's TOTP and recovery codes, and its counter is read and written without a lock.

**Old rows.** Times are trimmed on every write; ``purge`` (``manage.py run_periodic``) deletes the rows that have
had no failure for a whole window. No index on ``updated_at``: the table holds only subjects that failed in the last
window, and the purge runs once a minute.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import RecentFailures
from rmm.errors import TooManyAttempts

Scope = RecentFailures.Scope
UNKNOWN_ADDRESS = "unknown"

# The delay of sign-ins past LOGIN_MAX_FAILURES of their email. A module attribute so that a test can record the
# schedule instead of waiting it out; under gevent, time.sleep is the greenlet's and holds no worker.
sleep = time.sleep

_RESERVE = """
SELECT scope, recent, retry_after, allowed
  FROM throttle_reserve(%(scopes)s::text[], %(subjects)s::text[], %(limits)s::integer[], %(keep)s::integer[],
                        %(now)s::timestamptz, %(window)s::interval)
"""

# Locks in the order throttle_reserve does (no deadlock with it); removes one occurrence of the attempt's time.
_WITHDRAW = """
WITH target AS (
    SELECT r.id
      FROM recent_failures AS r
      JOIN unnest(%(scopes)s::text[], %(subjects)s::text[]) AS k(s, j) ON r.scope = k.s AND r.subject = k.j
     ORDER BY r.scope, r.subject
       FOR UPDATE OF r
)
UPDATE recent_failures AS r
   SET failed_at = r.failed_at[:array_position(r.failed_at, %(at)s::timestamptz) - 1]
                   || r.failed_at[array_position(r.failed_at, %(at)s::timestamptz) + 1:]
  FROM target
 WHERE r.id = target.id AND array_position(r.failed_at, %(at)s::timestamptz) IS NOT NULL
"""


@dataclass(frozen=True)
class Counter:
    """The failures of one scope for one subject. At ``limit`` recent failures an attempt is refused (None: counted,
    never refused); the row keeps at most ``keep`` times."""

    scope: str
    subject: str
    limit: int | None
    keep: int


@dataclass(frozen=True)
class Attempt:
    """An attempt counted as a failure until ``withdraw`` says it succeeded."""

    counters: tuple[Counter, ...]
    at: dt.datetime
    recent: dict[str, int]  # scope → that row's failures within the window before this attempt

    def withdraw(self) -> None:
        """The check succeeded: this attempt is no failure after all."""
        with connection.cursor() as cursor:
            cursor.execute(
                _WITHDRAW,
                {
                    "scopes": [c.scope for c in self.counters],
                    "subjects": [c.subject for c in self.counters],
                    "at": self.at,
                },
            )


def _window() -> dt.timedelta:
    return dt.timedelta(seconds=settings.THROTTLE_WINDOW_SECONDS)


def reserve(counters: Sequence[Counter], *, now: dt.datetime | None = None) -> Attempt:
    """Count an attempt against every counter at once, or raise ``TooManyAttempts`` (counting nothing) when a
    limited counter is at its limit. The (scope, subject) pairs must be distinct."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _RESERVE,
            {
                "scopes": [c.scope for c in counters],
                "subjects": [c.subject for c in counters],
                "limits": [c.limit for c in counters],
                "keep": [c.keep for c in counters],
                "now": now,
                # psycopg sends a timedelta as an interval; django-stubs' parameter types leave timedelta out.
                "window": _window(),  # type: ignore[dict-item]
            },
        )
        rows = cursor.fetchall()
    if not rows[0][3]:
        wait = max(retry_after for _, _, retry_after, _ in rows if retry_after is not None)
        raise TooManyAttempts(retry_after=max(1, math.ceil(wait)))
    return Attempt(counters=tuple(counters), at=now, recent={scope: recent for scope, recent, _, _ in rows})


# --- sign-in ---------------------------------------------------------------------------------------------------


def sign_in_delay(failures: int) -> float:
    """Seconds an attempt for an email waits, given that email's failures within the window from every address."""
    beyond = failures - settings.LOGIN_MAX_FAILURES
    if beyond < 0:
        return 0.0
    return min(settings.LOGIN_DELAY_BASE_MS * 2 ** min(beyond, 32), settings.LOGIN_DELAY_MAX_MS) / 1000


def _email_times_kept() -> int:
    # Enough times for the delay to reach its cap; more would not change it.
    doublings = max(0, math.ceil(math.log2(settings.LOGIN_DELAY_MAX_MS / settings.LOGIN_DELAY_BASE_MS)))
    return settings.LOGIN_MAX_FAILURES + doublings


def begin_sign_in(*, email: str, address: str | None, now: dt.datetime | None = None) -> Attempt:
    """Count a sign-in attempt before its password is checked; wait the email's delay, if it has one.

    Raises ``TooManyAttempts`` when the (email, address) pair or the address is at its limit. ``email`` is the
    normalised (lower-case) address as typed, whether or not such a user exists: unknown emails are throttled
    exactly like known ones, so the throttle does not tell which exist.
    """
    address = address or UNKNOWN_ADDRESS
    pair_limit, address_limit = settings.LOGIN_MAX_FAILURES, settings.LOGIN_MAX_FAILURES_PER_ADDRESS
    attempt = reserve(
        [
            Counter(Scope.SIGN_IN_PAIR, f"{address} {email}", pair_limit, pair_limit),
            Counter(Scope.SIGN_IN_ADDRESS, address, address_limit, address_limit),
            Counter(Scope.SIGN_IN_EMAIL, email, None, _email_times_kept()),
        ],
        now=now,
    )
    delay = sign_in_delay(attempt.recent[Scope.SIGN_IN_EMAIL])
    if delay:
        sleep(delay)
    return attempt


# --- second factor ---------------------------------------------------------------------------------------------


def begin_second_factor(user_id) -> Attempt:
    """Count a second-factor check of one user before it runs; ``TooManyAttempts`` at MFA_MAX_FAILURES."""
    limit = settings.MFA_MAX_FAILURES
    return reserve([Counter(Scope.SECOND_FACTOR, str(user_id), limit, limit)])


# --- refused credentials, per address --------------------------------------------------------------------------

_ADDRESS_LIMITS: dict[str, str] = {
    Scope.ENROLLMENT: "ENROLLMENT_MAX_FAILURES_PER_ADDRESS",
    Scope.AGENT_TOKEN: "AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS",
    Scope.API_TOKEN: "API_TOKEN_MAX_FAILURES_PER_ADDRESS",
}


def count_refusal(scope: str, address: str | None) -> None:
    """Count one refused credential from ``address``; raise ``TooManyAttempts`` when the address is already at
    its limit for ``scope`` (``enrollment``, ``agent_token`` or ``api_token``), so the answer becomes 429."""
    limit = getattr(settings, _ADDRESS_LIMITS[scope])
    reserve([Counter(scope, address or UNKNOWN_ADDRESS, limit, limit)])


# --- housekeeping ----------------------------------------------------------------------------------------------


def purge(*, now: dt.datetime | None = None) -> int:
    """Delete the rows with no failure within the window; return how many."""
    cutoff = (now or timezone.now()) - _window()
    deleted, _ = RecentFailures.objects.filter(updated_at__lt=cutoff).delete()
    return deleted
