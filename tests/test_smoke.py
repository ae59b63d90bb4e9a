import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM devices")
        assert cursor.fetchone() == (0,)
