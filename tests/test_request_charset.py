"""A JSON body is read in the charset its Content-Type names, and only in a text encoding.

Django accepts any charset ``codecs.lookup`` knows, bytes-to-bytes codecs included: a body "in" ``bz2_codec`` would
be decompressed after its compressed size was checked against DATA_UPLOAD_MAX_MEMORY_SIZE, so a small request could
expand without bound. ``rmm.inputs.JSONParser`` takes the charset from DRF's ``parsers.get_encoding``, which refuses
such codecs; it exists from DRF 3.18.2 on (hence the lower bound in pyproject.toml: with an older DRF every JSON
body was a 500).
"""

from __future__ import annotations

import bz2
import json

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient(raise_request_exception=False)  # a crash must show as the 500 a client would get
    client.force_authenticate(user)
    return client


def test_a_body_in_a_compression_codec_gets_400_and_changes_nothing(world, partner_admin):
    body = bz2.compress(json.dumps({"settings": {"theme": "bomb"}}).encode())
    response = client_for(partner_admin).patch(
        f"/api/v1/orgs/{world.org_a.pk}", data=body, content_type="application/json; charset=bz2_codec"
    )
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["error"] == "invalid_json"
    world.org_a.refresh_from_db()
    assert world.org_a.settings != {"theme": "bomb"}


def test_a_body_in_latin_1_is_read_as_latin_1(world, partner_admin):
    body = json.dumps({"settings": {"greeting": "Café"}}, ensure_ascii=False).encode("latin-1")
    response = client_for(partner_admin).patch(
        f"/api/v1/orgs/{world.org_a.pk}", data=body, content_type="application/json; charset=latin-1"
    )
    assert response.status_code == 200, (response.status_code, response.content[:300])
    world.org_a.refresh_from_db()
    assert world.org_a.settings == {"greeting": "Café"}
