from django.db import migrations

from rmm.migration_ops import composite_foreign_key


class Migration(migrations.Migration):
    dependencies = [("orgs", "0001_initial")]

    operations = [
        composite_foreign_key(
            table="enrollment_keys",
            name="orgs_enrollmentkey_site_in_org",
            columns=("site_id", "org_id"),
            references="sites",
            ref_columns=("id", "org_id"),
        ),
    ]
