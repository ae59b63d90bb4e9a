"""EMAIL_URL, how alert e-mails leave the server, read into Django's e-mail settings; a wrong value is a one-line
configuration error naming the variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from rmm.settings import _email_settings


def test_smtp_with_credentials_and_starttls():
    assert _email_settings("EMAIL_URL", "smtp://alerts%40example.com:p%3Ass@mail.example.com?tls=1") == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "alerts@example.com",
        "EMAIL_HOST_PASSWORD": "p:ss",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 10,
    }


def test_plain_smtp_defaults_to_port_25_and_smtps_to_465():
    assert _email_settings("EMAIL_URL", "smtp://localhost")["EMAIL_PORT"] == 25
    smtps = _email_settings("EMAIL_URL", "smtps://mail.example.com?timeout=30")
    assert (smtps["EMAIL_PORT"], smtps["EMAIL_USE_SSL"], smtps["EMAIL_USE_TLS"], smtps["EMAIL_TIMEOUT"]) == (
        465,
        True,
        False,
        30,
    )
    assert _email_settings("EMAIL_URL", "smtp://relay:2525")["EMAIL_PORT"] == 2525


def test_console_prints_mails():
    assert _email_settings("EMAIL_URL", "console://") == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mailto:ops@example.com", "EMAIL_URL must be smtp://"),
        ("smtp://mail.example.com?starttls=1", "EMAIL_URL has unknown options: starttls"),
        ("smtp://mail.example.com?tls=maybe", "EMAIL_URL: tls='maybe' is not 1 or 0."),
        ("smtp://mail.example.com?timeout=0", "EMAIL_URL: timeout='0' is not a whole number"),
        ("smtp://mail.example.com:99999", "EMAIL_URL has an invalid port."),
        ("smtp://", "EMAIL_URL has no host"),
    ],
)
def test_a_wrong_email_url_names_the_variable(url, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("?", r"\?")):
        _email_settings("EMAIL_URL", url)
