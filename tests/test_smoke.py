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
