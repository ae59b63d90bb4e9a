"""Static files are collected before gunicorn serves, or gunicorn does not start.

The production storage (WhiteNoise's ``CompressedManifestStaticFilesStorage``) answers every page that links a file
missing from its manifest with a 500; without ``collectstatic`` that was every admin page and /api/docs/. So the
gunicorn master's ``on_starting`` hook (rmm/gunicorn.conf.py) calls ``collect_before_start``, which runs this module
as a process of its own (the master stays free of Django, which its gevent workers import only after patching):

- a missing or wrong setting: one line on stderr (``rmm.env.one_line``), and gunicorn exits with status 1;
- no manifest in ``STATIC_ROOT``, or a source file that is new or changed since it was written (an upgrade):
  ``collectstatic`` runs (a few seconds), under a lock so that servers starting together do not collect at once;
- collecting fails (``STATIC_ROOT`` read-only, the disk full): one line saying so, and gunicorn exits with status 1.

Run by hand: ``python -m rmm.static_check`` (exit status 0 when the files are ready).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path


def collect_before_start() -> None:
    """In the gunicorn master: run this module in a process of its own; exit with its status if it fails (it has
    printed why)."""
    env = {**os.environ}
    env.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
    project = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, env.get("PYTHONPATH")]))
    status = subprocess.call([sys.executable, "-m", "rmm.static_check"], env=env)
    if status != 0:
        sys.exit(status)


def stale_reason(storage, ignore_patterns: list[str]) -> str | None:
    """Why the collected files do not match the sources (None when they do): no manifest, or a source file that is
    not in it or changed after it was written."""
    from django.contrib.staticfiles import finders

    manifest = Path(storage.path(storage.manifest_name))
    try:
        recorded = json.loads(manifest.read_text())["paths"]
        written = manifest.stat().st_mtime
    except (OSError, ValueError, KeyError):
        return f"no manifest at {manifest}"
    for finder in finders.get_finders():
        for path, source in finder.list(ignore_patterns):
            prefix = getattr(source, "prefix", None)
            name = f"{prefix}/{path}" if prefix else path
            if name not in recorded:
                return f"{name} is not collected"
            if os.stat(source.path(path)).st_mtime > written:
                return f"{name} changed"
    return None


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
    from django.core.exceptions import ImproperlyConfigured

    from rmm.env import one_line

    try:
        import django

        django.setup()
        from django.conf import settings

        root = Path(settings.STATIC_ROOT)
    except ImproperlyConfigured as error:
        print(one_line(error), file=sys.stderr, flush=True)
        return 1
    try:
        collect_if_stale(root)
    except ImproperlyConfigured as error:
        print(one_line(error), file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # whatever stops collecting (read-only, disk full), the answer is one line
        print(
            f"Static files are not collected in STATIC_ROOT={root} and collecting them failed "
            f"({type(error).__name__}: {' '.join(str(error).split())}); run manage.py collectstatic.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def collect_if_stale(root: Path) -> None:
    """Run collectstatic if the collected files are missing or older than the sources (``stale_reason``)."""
    from django.apps import apps
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.core.management import call_command

    if not hasattr(staticfiles_storage, "manifest_name"):
        return  # a storage without a manifest serves what it finds; nothing to check
    ignore_patterns = apps.get_app_config("staticfiles").ignore_patterns  # type: ignore[attr-defined]
    if stale_reason(staticfiles_storage, ignore_patterns) is None:
        return
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".collectstatic.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reason = stale_reason(staticfiles_storage, ignore_patterns)  # another server may have collected meanwhile
        if reason is not None:
            print(f"Collecting static files into {root} ({reason}).", file=sys.stderr, flush=True)
            call_command("collectstatic", interactive=False, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
