"""The database backend: Django's PostgreSQL backend with a bounded connection pool per server process.

``ENGINE = "rmm.database"`` (rmm/settings.py). ``base.py`` is the backend Django loads, ``pool.py`` the pool it
uses, ``availability.py`` what counts as "the database is unavailable" (answered 503 by ``rmm.errors``) and the
check that finds a connection the server has closed without a round trip.
"""
