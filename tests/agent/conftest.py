"""Helpers for speaking the agent protocol through Django's test client, like an installed agent would."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone

from devices.models import Device
from devices.services import credentials
from orgs.models import EnrollmentKey, Site
from tests import factories

BASE = "/api/v1/agents"


def make_key(site: Site, **fields) -> tuple[str, EnrollmentKey]:
    """A new enrollment key of ``site``: (raw key, row)."""
    minted = credentials.mint_enrollment_key()
    raw, prefix, key_hash = minted.raw, minted.prefix, minted.hash
    fields.setdefault("name", "test key")
    key = EnrollmentKey.objects.create(org=site.org, site=site, key_prefix=prefix, key_hash=key_hash, **fields)
    return raw, key


def enrollment_body(raw_key: str, **overrides) -> dict:
    body = {
        "enrollmentKey": raw_key,
        "hostname": "ws-0042",
        "osType": "windows",
        "osVersion": "11",
        "osBuild": "22631",
        "architecture": "amd64",
        "agentVersion": "1.4.2",
    }
    body.update(overrides)
    return body


def heartbeat_body(**overrides) -> dict:
    body = {
        "agentVersion": "1.4.2",
        "status": "ok",
        "metrics": {
            "cpuPercent": 12.5,
            "ramPercent": 41.0,
            "ramUsedMb": 6650,
            "diskPercent": 63.2,
            "diskUsedGb": 301.7,
            "networkInBytes": 123456,
            "networkOutBytes": 65432,
            "processCount": 212,
        },
        "hostname": "ws-0042",
        "osVersion": "11",
        "osBuild": "22631",
        "uptime": 86400,
        "lastUser": "alice",
        "pendingReboot": False,
    }
    body.update(overrides)
    return body


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Agent:
    """An enrolled agent: its ids and token, and a client that sends its bearer token."""

    client: Client
    agent_id: str
    token: str
    device_id: str

    @property
    def device(self) -> Device:
        return Device.objects.get(pk=self.device_id)

    def auth(self, token: str | None = None) -> dict:
        return {"authorization": f"Bearer {token or self.token}"}

    def post(self, path: str, body=None, *, token: str | None = None, raw: bytes | str | None = None, **headers):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            f"{BASE}/{self.agent_id}/{path}",
            data=data,
            content_type="application/json",
            headers={**self.auth(token), **headers},
        )

    def put(self, path: str, body=None, *, token: str | None = None, raw: bytes | str | None = None):
        data = raw if raw is not None else json.dumps(body)
        return self.client.put(
            f"{BASE}/{self.agent_id}/{path}", data=data, content_type="application/json", headers=self.auth(token)
        )

    def get(self, path: str, *, token: str | None = None, **headers):
        return self.client.get(f"{BASE}/{self.agent_id}/{path}", headers={**self.auth(token), **headers})

    def heartbeat(self, token: str | None = None, **overrides):
        return self.post("heartbeat", heartbeat_body(**overrides), token=token)


def enroll(client: Client, raw_key: str, **overrides):
    return client.post(
        f"{BASE}/enroll", data=json.dumps(enrollment_body(raw_key, **overrides)), content_type="application/json"
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error", "message", "fields"}
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if status != 400:
        assert body["fields"] == {}
    return body


@pytest.fixture
def site(db) -> Site:
    return factories.site()


@pytest.fixture
def key(site) -> tuple[str, EnrollmentKey]:
    return make_key(site)


@pytest.fixture
def make_agent(client, site):
    """``make_agent(site=None, **enrollment overrides)`` → an enrolled ``Agent``."""

    def make(site_: Site | None = None, **overrides) -> Agent:
        raw, _ = make_key(site_ or site)
        response = enroll(client, raw, **overrides)
        assert response.status_code == 201, response.content
        body = response.json()
        return Agent(client=client, agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"])

    return make


@pytest.fixture
def agent(make_agent) -> Agent:
    return make_agent()


def now() -> dt.datetime:
    return timezone.now()


@pytest.fixture(autouse=True)
def _stop_the_heartbeat_writer():
    """Tests without a wrapping transaction send heartbeats through the group-commit writer thread; end it (and its
    database connection) after each test, or the test database could not be dropped."""
    yield
    from devices.agent_api.heartbeat import heartbeat_writer

    heartbeat_writer.stop()
