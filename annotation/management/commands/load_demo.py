"""Load the demo project and demo users once, and print the logins."""

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.imports import import_file
from annotation.models import Project

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "demo_rankings.jsonl"
# A few items with a known ranking, mixed into annotators' work to measure their care (annotation.gold).
DEMO_GOLD_FILE = DEMO_FILE.with_name("demo_gold.jsonl")
DEMO_PROJECT = "Demo: helpful assistant answers"
DEMO_GUIDELINES = """\
## How to rank

1. Read the whole conversation first: the answer must fit the **last** question *in context*.
2. Put the answer you would most like to receive first. Prefer answers that are **correct**,
   **helpful** and **honest**, in that order; length is not quality.
3. Two answers that are equally good (or equally bad) may share a place: tie them.
4. If none of the answers is acceptable, tick *None of these is acceptable*.
5. Flag answers that are spam, harmful or factually wrong, whatever their place.
6. Skip an item you cannot judge (e.g. a language or topic you don't know).
"""
DEMO_USERS = [
    {"username": "admin", "is_staff": True, "is_superuser": True},
    {"username": "alice", "is_staff": False, "is_superuser": False},
    {"username": "bob", "is_staff": False, "is_superuser": False},
]


class Command(BaseCommand):
    help = "Create the demo project with its items and the demo users (once), then print the logins."

    def handle(self, *args, **options):
        logins_path = Path(settings.VAR_DIR) / "demo-logins.json"
        logins = json.loads(logins_path.read_text()) if logins_path.exists() else {}
        with transaction.atomic():
            project, created = Project.objects.get_or_create(
                name=DEMO_PROJECT, defaults={"guidelines": DEMO_GUIDELINES, "rankings_per_item": 2}
            )
            if created or not project.items.exists():
                batch = import_file(path=DEMO_FILE, project=project, format="rankings")
                gold = import_file(path=DEMO_GOLD_FILE, project=project, format="rankings", gold=True)
                self.stdout.write(
                    f"Loaded {batch.items_created} demo items and {gold.gold_marked} gold items "
                    f"into “{project.name}”."
                )
            else:
                self.stdout.write(f"Demo project “{project.name}” is already loaded.")
            for spec in DEMO_USERS:
                logins[spec["username"]] = self._ensure_user(spec, logins.get(spec["username"]))
        logins_path.write_text(json.dumps(logins, indent=2))
        logins_path.chmod(0o600)
        self.stdout.write("")
        self.stdout.write(f"Demo logins (stored in {logins_path}):")
        for spec in DEMO_USERS:
            role = "staff, admin" if spec["is_staff"] else "annotator"
            self.stdout.write(f"  {spec['username']:<6} / {logins[spec['username']]:<20} ({role})")

    def _ensure_user(self, spec: dict, known_password: str | None) -> str:
        """Create the user, or reset a password we no longer know; return the password."""
        user_model = get_user_model()
        user = user_model.objects.filter(username=spec["username"]).first()
        if user is not None and known_password and user.check_password(known_password):
            return known_password
        password = secrets.token_urlsafe(9)
        if user is None:
            user = user_model(
                username=spec["username"],
                email=f"{spec['username']}@example.org",
                is_staff=spec["is_staff"],
                is_superuser=spec["is_superuser"],
            )
        user.set_password(password)
        user.save()
        return password
