"""Signing in through POST /api/v1/auth/login, multi-factor codes, the throttle, and personal API tokens."""

from __future__ import annotations

import datetime as dt
import time

import pyotp
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditLog, MfaRecoveryCode, PartnerUser, RecentFailures, Role, User
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def user():
    return User.objects.create_user("tech@example.com", PASSWORD, name="Tech")


def login(api, email="tech@example.com", password=PASSWORD, ip="198.51.100.7", **extra):
    return api.post(
        "/api/v1/auth/login", {"email": email, "password": password, **extra}, REMOTE_ADDR=ip, format="json"
    )


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"error", "message", "fields"}
    assert body["error"] == code
    return body


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def enable_mfa(api, user) -> tuple[str, list[str]]:
    api.force_authenticate(user)
    secret = api.post("/api/v1/auth/mfa/setup").json()["secret"]
    codes = api.post("/api/v1/auth/mfa/enable", {"totp": code_at(secret)}, format="json").json()["recoveryCodes"]
    api.force_authenticate(None)
    return secret, codes


# --- password sign-in ------------------------------------------------------------------------------------------


def test_login_issues_a_token_that_authenticates_later_requests(api, user):
    response = login(api)
    assert response.status_code == 200
    body = response.json()
    assert body["token"].startswith("rmmu_")
    assert body["user"]["email"] == "tech@example.com"
    assert dt.datetime.fromisoformat(body["expiresAt"]) > timezone.now() + dt.timedelta(hours=11)
    me = APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert me.status_code == 200 and me.json()["email"] == "tech@example.com"
    token = ApiToken.objects.get(user=user)
    assert token.key_hash != body["token"] and body["token"] not in token.key_hash
    assert AuditLog.objects.filter(action="user.login", actor_user=user).count() == 1


def test_login_is_case_insensitive_on_the_email(api, user):
    assert login(api, email="Tech@Example.COM").status_code == 200


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(api, user):
    wrong = assert_error(login(api, password="nope"), 401, "invalid_credentials")
    unknown = assert_error(login(api, email="ghost@example.com"), 401, "invalid_credentials")
    assert wrong == unknown


def test_a_disabled_user_gets_403_only_with_the_right_password(api, user):
    User.objects.filter(pk=user.pk).update(status="disabled")
    assert_error(login(api), 403, "account_disabled")
    assert_error(login(api, password="nope"), 401, "invalid_credentials")


def test_a_disabled_users_existing_token_stops_working(api, user):
    token = login(api).json()["token"]
    User.objects.filter(pk=user.pk).update(status="disabled")
    assert_error(APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}"), 401, "invalid_token")


def test_login_with_a_bad_body_gets_400_with_fields(api):
    body = assert_error(api.post("/api/v1/auth/login", {"email": "x"}, format="json"), 400, "validation_error")
    assert "password" in body["fields"]
    response = api.post("/api/v1/auth/login", "{not json", content_type="application/json")
    assert_error(response, 400, "invalid_json")


def test_the_login_path_answers_with_and_without_a_trailing_slash(api, user):
    assert (
        api.post("/api/v1/auth/login/", {"email": user.email, "password": PASSWORD}, format="json").status_code == 200
    )
    assert login(api).status_code == 200


# The throttles (sign-in and second factor) have their own file: tests/accounts/test_throttle.py.


# --- MFA -------------------------------------------------------------------------------------------------------


def test_mfa_setup_gives_an_otpauth_uri_and_enabling_needs_a_valid_code(api, user):
    api.force_authenticate(user)
    setup = api.post("/api/v1/auth/mfa/setup").json()
    assert setup["otpauthUri"].startswith("otpauth://totp/") and setup["secret"] in setup["otpauthUri"]
    assert_error(api.post("/api/v1/auth/mfa/enable", {"totp": "000000"}, format="json"), 400, "invalid_totp")
    user.refresh_from_db()
    assert not user.mfa_enabled

    enabled = api.post("/api/v1/auth/mfa/enable", {"totp": code_at(setup["secret"])}, format="json")
    assert enabled.status_code == 200
    assert len(enabled.json()["recoveryCodes"]) == 10
    user.refresh_from_db()
    assert user.mfa_enabled
    assert MfaRecoveryCode.objects.filter(user=user).count() == 10
    assert not MfaRecoveryCode.objects.filter(code_hash__in=enabled.json()["recoveryCodes"]).exists()


def test_the_mfa_secret_is_never_shown_again(api, user):
    secret, _ = enable_mfa(api, user)
    api.force_authenticate(user)
    assert secret not in api.get("/api/v1/auth/me").content.decode()
    assert_error(api.post("/api/v1/auth/mfa/setup"), 409, "mfa_already_enabled")
    assert User.objects.get(pk=user.pk).mfa_secret == secret  # the refused set-up replaced nothing


def test_login_with_mfa_needs_a_code(api, user):
    enable_mfa(api, user)
    assert_error(login(api), 401, "mfa_required")


def test_a_wrong_code_fails_and_counts_as_a_failed_sign_in_and_a_wrong_code(api, user):
    enable_mfa(api, user)
    assert_error(login(api, totp="123456"), 401, "invalid_totp")
    failures = {row.scope: len(row.failed_at) for row in RecentFailures.objects.all()}
    assert failures == {"sign_in_pair": 1, "sign_in_address": 1, "sign_in_email": 1, "second_factor": 1}


def test_a_valid_code_works_once_and_a_replayed_code_fails(api, user):
    secret, _ = enable_mfa(api, user)
    code = code_at(secret, offset_steps=1)  # the enable call used the current step
    assert login(api, totp=code).status_code == 200
    assert_error(login(api, totp=code), 401, "invalid_totp")


def test_a_code_from_long_ago_fails(api, user):
    secret, _ = enable_mfa(api, user)
    assert_error(login(api, totp=code_at(secret, offset_steps=-10)), 401, "invalid_totp")


def test_a_recovery_code_works_once(api, user):
    _, codes = enable_mfa(api, user)
    assert login(api, totp=codes[0]).status_code == 200
    assert_error(login(api, totp=codes[0]), 401, "invalid_totp")
    assert login(api, totp=codes[1].upper()).status_code == 200


def test_disabling_mfa_needs_a_valid_code(api, user):
    secret, recovery_codes = enable_mfa(api, user)
    token = login(api, totp=recovery_codes[0]).json()["token"]
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_error(client.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json"), 400, "invalid_totp")
    assert client.post("/api/v1/auth/mfa/disable", {"totp": code_at(secret, 1)}, format="json").status_code == 200
    user.refresh_from_db()
    assert not user.mfa_enabled and user.mfa_secret == ""
    assert not MfaRecoveryCode.objects.filter(user=user).exists()
    assert login(api).status_code == 200


@pytest.fixture
def forced_user(user):
    partner = factories.partner()
    role = Role.objects.create(name="Secure technician", scope="partner", partner=partner, force_mfa=True)
    PartnerUser.objects.create(partner=partner, user=user, role=role, org_access="all")
    return user


def test_a_role_with_force_mfa_answers_428_with_a_setup_token_until_the_user_enrolls(api, forced_user):
    body = assert_error(login(api), 428, "mfa_enrollment_required")
    setup_client = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['setupToken']}")

    secret = setup_client.post("/api/v1/auth/mfa/setup").json()["secret"]
    assert setup_client.post("/api/v1/auth/mfa/enable", {"totp": code_at(secret)}, format="json").status_code == 200

    assert_error(login(api), 401, "mfa_required")
    assert login(api, totp=code_at(secret, 1)).status_code == 200


def test_the_setup_token_is_accepted_only_by_the_mfa_setup_endpoints(api, forced_user):
    setup_token = login(api).json()["setupToken"]
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {setup_token}")
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    assert_error(client.get("/api/v1/api-tokens"), 401, "not_authenticated")
    assert_error(client.post("/api/v1/auth/mfa/disable", {"totp": "1"}, format="json"), 401, "not_authenticated")


def test_a_forged_setup_token_is_refused(api, forced_user):
    client = APIClient(HTTP_AUTHORIZATION="Bearer rmms_eyJ1IjoiMTIzIn0:forged:signature")
    assert_error(client.post("/api/v1/auth/mfa/setup"), 401, "invalid_token")
    assert not User.objects.exclude(mfa_secret="").exists()


def test_mfa_cannot_be_disabled_while_a_role_forces_it(api, forced_user):
    setup_token = login(api).json()["setupToken"]
    setup_client = APIClient(HTTP_AUTHORIZATION=f"Bearer {setup_token}")
    secret = setup_client.post("/api/v1/auth/mfa/setup").json()["secret"]
    recovery = setup_client.post("/api/v1/auth/mfa/enable", {"totp": code_at(secret)}, format="json").json()
    token = login(api, totp=recovery["recoveryCodes"][0]).json()["token"]

    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post("/api/v1/auth/mfa/disable", {"totp": code_at(secret, 1)}, format="json")
    assert_error(response, 403, "mfa_required_by_role")
    forced_user.refresh_from_db()
    assert forced_user.mfa_enabled


# --- API tokens ------------------------------------------------------------------------------------------------


def test_a_request_without_credentials_gets_401(api):
    assert_error(api.get("/api/v1/auth/me"), 401, "not_authenticated")


def test_an_unknown_token_gets_401(api):
    assert_error(api.get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer rmmu_nope"), 401, "invalid_token")


def test_api_tokens_are_shown_once_listed_without_secrets_and_revocable(api, user):
    api.force_authenticate(user)
    created = api.post("/api/v1/api-tokens", {"name": "backup script", "expiresInDays": 30}, format="json")
    assert created.status_code == 201
    raw = created.json()["token"]
    assert raw.startswith("rmmu_") and created.json()["expiresAt"]

    listing = api.get("/api/v1/api-tokens")
    assert listing.status_code == 200
    assert raw not in listing.content.decode()
    assert ApiToken.objects.get(pk=created.json()["id"]).key_hash not in listing.content.decode()

    script = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert script.get("/api/v1/auth/me").status_code == 200
    assert api.delete(f"/api/v1/api-tokens/{created.json()['id']}").status_code == 204
    assert_error(script.get("/api/v1/auth/me"), 401, "invalid_token")


def test_an_expired_token_gets_401(api, user):
    from accounts.auth import issue_api_token

    raw, token = issue_api_token(user=user, name="old", lifetime=dt.timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert_error(APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/auth/me"), 401, "invalid_token")


def test_nobody_sees_or_revokes_another_users_tokens(api, user):
    from accounts.auth import issue_api_token

    other = User.objects.create_user("other@example.com", PASSWORD)
    _, token = issue_api_token(user=other, name="theirs", lifetime=None)
    api.force_authenticate(user)
    assert api.get("/api/v1/api-tokens").json() == []
    assert_error(api.delete(f"/api/v1/api-tokens/{token.pk}"), 404, "not_found")
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


def test_logout_revokes_the_token_in_use(api, user):
    raw = login(api).json()["token"]
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert ApiToken.objects.get(user=user).revoked_at is not None
    assert_error(client.get("/api/v1/auth/me"), 401, "invalid_token")


def test_an_unknown_api_url_gets_the_error_shape(api):
    response = api.get("/api/v1/no-such-thing")
    assert_error(response, 404, "not_found")
