"""Settings for the test suite: the production settings plus a fixed secret and a fast password hasher."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")

from rmm.settings import *  # noqa: F403

# Argon2 is deliberately slow; tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The manifest storage needs `collectstatic` first; tests render admin pages without it.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# Nothing is served from STATIC_ROOT in tests (WhiteNoise would warn that it does not exist).
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405

# The suite runs the production database backend and its pool (rmm/database/, DATABASE_POOL_MAX_SIZE 10): tests go
# through the code the server runs. A test holds one pooled connection for its whole run (Django's test client
# does not "close" it between requests), and a transactional test's heartbeat writer one more; the pool holds both.

# A second pytest process beside the main one (`make test` runs the end-to-end agent test so, tests/agent_e2e/)
# needs a test database of its own: pytest-django's would otherwise be created and dropped under the other's feet.
if _suffix := os.environ.get("RMM_TEST_DATABASE_SUFFIX"):
    DATABASES["default"]["TEST"] = {  # noqa: F405
        **DATABASES["default"].get("TEST", {}),  # noqa: F405
        "NAME": f"test_{DATABASES['default']['NAME']}_{_suffix}",  # noqa: F405
    }
