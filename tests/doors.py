"""Sending one change through both doors, the API and the admin, as the both-doors tests do.

The API is driven with DRF's ``APIClient`` (authenticated as the user), the admin with Django's test client signed in
as a staff user, posting forms as a browser would (``post_change_form`` first GETs the page for its inlines).
"""

from __future__ import annotations

from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditLog, User


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def admin_as(user: User, client: Client | None = None) -> Client:
    """``client`` (or a new one) signed in to the admin as ``user``, who is made staff for it."""
    User.objects.filter(pk=user.pk).update(is_staff=True)
    client = client or Client()
    client.force_login(user)
    return client


def inline_data(page) -> dict:
    """What the browser posts for the (read-only) inlines of a change page: management forms and row ids."""
    data = {}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.management_form.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for n, form in enumerate(formset.initial_forms):
            data[f"{formset.prefix}-{n}-id"] = form.instance.pk
            data[f"{formset.prefix}-{n}-{formset.fk.name}"] = formset.instance.pk
    return data


def post_change_form(client: Client, obj, fields: dict):
    """GET the admin's change page of ``obj``, then POST it back with ``fields`` as the browser would."""
    url = admin_url(type(obj), "change", obj.pk)
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, fields | inline_data(page))


def form_errors(response) -> dict[str, list[str]]:
    """The errors of the admin form a refused POST shows again (field name → messages; ``__all__`` for the form)."""
    assert response.status_code == 200, "the admin saved instead of showing the form again"
    return response.context["adminform"].form.errors


def actions_since(mark: int) -> list[str]:
    """The audit actions written after the row count was ``mark``, oldest first."""
    return [entry.action for entry in AuditLog.objects.order_by("created_at", "pk")[mark:]]
