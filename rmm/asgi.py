"""The ASGI entry point. A missing or wrong setting stops the process with one line on stderr (rmm/wsgi.py)."""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

from rmm.env import one_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")

try:
    application = get_asgi_application()
except ImproperlyConfigured as error:
    print(one_line(error), file=sys.stderr, flush=True)
    raise SystemExit(1) from None
