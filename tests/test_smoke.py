import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM devices")
        assert cursor.fetchone() == (0,)


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_path_under_api_gets_404_in_the_error_shape_also_with_debug_on(client, settings, debug):
    settings.DEBUG = debug

    for path in ("/api/v1/organizations", "/api/v1/no-such-thing/1", "/api/nope"):
        response = client.get(path)

        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json()["error"] == "not_found"


@pytest.mark.django_db
def test_a_write_to_an_unknown_path_under_api_gets_404_in_the_error_shape_not_a_csrf_page(settings):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)

    for method in ("post", "patch", "delete"):
        response = getattr(client, method)("/api/v1/alert-rules/%C2%84", data="{}", content_type="application/json")

        assert response.status_code == 404, method
        assert response["Content-Type"] == "application/json", method


@pytest.mark.django_db
def test_a_csrf_refusal_under_api_is_in_the_error_shape():
    from django.test import Client

    from rmm.errors import csrf_failure

    request = Client().get("/api/v1/orgs").wsgi_request
    response = csrf_failure(request, reason="CSRF cookie not set.")

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
