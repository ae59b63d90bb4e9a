"""Membership rules the database enforces, because plain foreign keys cannot:

- an organization selected by a partner membership belongs to that partner;
- a site in an organization membership's restriction belongs to that organization;
- a partner membership holds a partner-scoped role, an organization membership an organization-scoped one, and
  a custom role only ever serves memberships of the partner that owns it.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION partner_user_organizations_same_partner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM partner_users pu JOIN organizations o ON o.partner_id = pu.partner_id
         WHERE pu.id = NEW.partneruser_id AND o.id = NEW.organization_id
    ) THEN
        RAISE EXCEPTION 'organization % does not belong to the partner of membership %',
            NEW.organization_id, NEW.partneruser_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER partner_user_organizations_same_partner BEFORE INSERT OR UPDATE ON partner_user_organizations
    FOR EACH ROW EXECUTE FUNCTION partner_user_organizations_same_partner();

CREATE FUNCTION organization_user_sites_same_org() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM organization_users ou JOIN sites s ON s.org_id = ou.org_id
         WHERE ou.id = NEW.organizationuser_id AND s.id = NEW.site_id
    ) THEN
        RAISE EXCEPTION 'site % does not belong to the organization of membership %',
            NEW.site_id, NEW.organizationuser_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER organization_user_sites_same_org BEFORE INSERT OR UPDATE ON organization_user_sites
    FOR EACH ROW EXECUTE FUNCTION organization_user_sites_same_org();

CREATE FUNCTION membership_role_fits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    role_scope text;
    role_partner uuid;
    membership_partner uuid;
    wanted_scope text;
BEGIN
    SELECT scope, partner_id INTO role_scope, role_partner FROM roles WHERE id = NEW.role_id;
    IF TG_TABLE_NAME = 'partner_users' THEN
        wanted_scope := 'partner';
        membership_partner := NEW.partner_id;
    ELSE
        wanted_scope := 'organization';
        SELECT partner_id INTO membership_partner FROM organizations WHERE id = NEW.org_id;
    END IF;
    IF role_scope IS DISTINCT FROM wanted_scope THEN
        RAISE EXCEPTION 'a % membership needs a role of scope %, not %', TG_TABLE_NAME, wanted_scope, role_scope
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF role_partner IS NOT NULL AND role_partner IS DISTINCT FROM membership_partner THEN
        RAISE EXCEPTION 'role % belongs to another partner', NEW.role_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER partner_users_role_fits BEFORE INSERT OR UPDATE ON partner_users
    FOR EACH ROW EXECUTE FUNCTION membership_role_fits();
CREATE TRIGGER organization_users_role_fits BEFORE INSERT OR UPDATE ON organization_users
    FOR EACH ROW EXECUTE FUNCTION membership_role_fits();
"""

REVERSE = """
DROP TRIGGER organization_users_role_fits ON organization_users;
DROP TRIGGER partner_users_role_fits ON partner_users;
DROP FUNCTION membership_role_fits();
DROP TRIGGER organization_user_sites_same_org ON organization_user_sites;
DROP FUNCTION organization_user_sites_same_org();
DROP TRIGGER partner_user_organizations_same_partner ON partner_user_organizations;
DROP FUNCTION partner_user_organizations_same_partner();
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_mfa_and_login_throttling")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
