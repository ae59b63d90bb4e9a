"""Migration operations for database rules Django's model layer cannot express."""

from __future__ import annotations

from django.db import migrations


def composite_foreign_key(
    *,
    table: str,
    name: str,
    columns: tuple[str, ...],
    references: str,
    ref_columns: tuple[str, ...],
    on_delete: str = "CASCADE",
    on_update: str = "CASCADE",
) -> migrations.RunSQL:
    """A multi-column foreign key, e.g. (site_id, org_id) → sites(id, org_id).

    Used to keep a row's denormalised ``org_id`` equal to its parent's, so a device can never sit in a site of
    another organization and an inventory row can never carry another tenant's ``org_id``. With the default
    MATCH SIMPLE, a row whose referencing columns include a NULL (a group with no site) is not checked.
    """
    assert on_delete in {"CASCADE", "RESTRICT", "NO ACTION"} and on_update in {
        "CASCADE",
        "RESTRICT",
        "NO ACTION",
    }
    return migrations.RunSQL(
        sql=(
            f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" FOREIGN KEY ({", ".join(columns)}) '
            f'REFERENCES "{references}" ({", ".join(ref_columns)}) ON DELETE {on_delete} ON UPDATE {on_update}'
        ),
        reverse_sql=f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"',
    )
