#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")
    # Commands typed on a workstation run in development mode; servers (wsgi.py, the Docker image's
    # DEBUG=0) and anyone who sets DEBUG explicitly get what they asked for.
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
