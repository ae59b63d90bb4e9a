"""``python -m jobs [--parent PID]``: the scheduler in the foreground (what ``jobs.supervisor`` starts beside the
server); the same as ``manage.py run_scheduler`` without needing to know where manage.py lies."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], "run_scheduler", *sys.argv[1:]])


if __name__ == "__main__":
    main()
