from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Tenancy"
    default_auto_field = "django.db.models.BigAutoField"
