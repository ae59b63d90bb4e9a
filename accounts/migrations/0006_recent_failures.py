"""Throttles count failures in ``recent_failures`` (one row per scope and subject) instead of ``login_failures``
(one row per failure, counted by a read and a later write, which let concurrent attempts past the limit).

``throttle_reserve`` is the one statement that counts: see ``accounts/throttle.py`` for what it decides and why.
"""

import django.contrib.postgres.fields
import django.utils.timezone
from django.db import migrations, models

import rmm.ids

THROTTLE_RESERVE = """
CREATE FUNCTION throttle_reserve(
    p_scopes text[], p_subjects text[], p_limits integer[], p_keep integer[], p_now timestamptz, p_window interval
) RETURNS TABLE (scope text, subject text, recent integer, retry_after double precision, allowed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked integer;
BEGIN
    -- Create, then lock, the rows in (scope, subject) order: calls that share rows queue up, and never deadlock.
    -- Again if a row was purged between the two statements (the pairs are distinct: the caller sees to it).
    LOOP
        INSERT INTO recent_failures AS r (id, scope, subject, failed_at, updated_at)
        SELECT gen_random_uuid(), k.s, k.j, '{}', p_now
          FROM unnest(p_scopes, p_subjects) AS k(s, j)
         ORDER BY k.s, k.j
            ON CONFLICT (scope, subject) DO NOTHING;
        SELECT count(*) INTO locked
          FROM (SELECT 1
                  FROM recent_failures AS r
                  JOIN unnest(p_scopes, p_subjects) AS k(s, j) ON r.scope = k.s AND r.subject = k.j
                 ORDER BY r.scope, r.subject
                   FOR UPDATE OF r) AS rows_locked;
        EXIT WHEN locked = cardinality(p_scopes);
    END LOOP;

    -- A new statement, so a new snapshot: it sees every failure committed by whoever held the locks before us.
    RETURN QUERY
    WITH k AS (
        SELECT * FROM unnest(p_scopes, p_subjects, p_limits, p_keep) AS k(s, j, lim, keep)
    ), times AS (
        SELECT k.s, k.j, k.lim, k.keep, r.failed_at AS stored,
               ARRAY(SELECT t FROM unnest(r.failed_at) AS t WHERE t > p_now - p_window ORDER BY t) AS recent
          FROM k JOIN recent_failures AS r ON r.scope = k.s AND r.subject = k.j
    ), verdict AS (
        SELECT NOT coalesce(bool_or(lim IS NOT NULL AND cardinality(recent) >= lim), false) AS allowed FROM times
    ), written AS (
        UPDATE recent_failures AS r
           SET failed_at = CASE WHEN v.allowed
                                THEN (t.recent || p_now)[greatest(1, cardinality(t.recent) + 2 - t.keep):]
                                ELSE t.recent END,
               updated_at = p_now
          FROM times AS t, verdict AS v
         WHERE r.scope = t.s AND r.subject = t.j
           AND (v.allowed OR cardinality(t.recent) <> cardinality(t.stored))
    )
    SELECT t.s, t.j, cardinality(t.recent),
           CASE WHEN t.lim IS NOT NULL AND cardinality(t.recent) >= t.lim
                THEN extract(epoch FROM t.recent[cardinality(t.recent) - t.lim + 1] + p_window - p_now)::float8
           END,
           v.allowed
      FROM times AS t, verdict AS v;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_membership_integrity"),
    ]

    operations = [
        migrations.CreateModel(
            name="RecentFailures",
            fields=[
                ("id", models.UUIDField(default=rmm.ids.uuid7, editable=False, primary_key=True, serialize=False)),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("sign_in_pair", "sign-in failures of one email from one address"),
                            ("sign_in_address", "sign-in failures from one address"),
                            ("sign_in_email", "sign-in failures of one email"),
                            ("second_factor", "wrong second-factor codes of one user"),
                            ("enrollment", "refused enrollments from one address"),
                            ("agent_token", "refused agent tokens from one address"),
                            ("api_token", "refused API tokens from one address"),
                        ],
                        max_length=20,
                    ),
                ),
                ("subject", models.TextField()),
                (
                    "failed_at",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DateTimeField(), default=list, size=None
                    ),
                ),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "db_table": "recent_failures",
                "verbose_name_plural": "recent failures",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("scope", "subject"), name="accounts_recentfailures_one_per_subject"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "scope__in",
                                [
                                    "sign_in_pair",
                                    "sign_in_address",
                                    "sign_in_email",
                                    "second_factor",
                                    "enrollment",
                                    "agent_token",
                                    "api_token",
                                ],
                            )
                        ),
                        name="accounts_recentfailures_scope_valid",
                    ),
                ],
            },
        ),
        migrations.RunSQL(
            THROTTLE_RESERVE,
            "DROP FUNCTION throttle_reserve(text[], text[], integer[], integer[], timestamptz, interval)",
        ),
        migrations.DeleteModel(name="LoginFailure"),
    ]
