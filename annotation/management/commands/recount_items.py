"""Repair the per-item counters the assignment service keeps, e.g. after rankings are deleted in admin."""

from django.core.management.base import BaseCommand, CommandError

from annotation.assignment import item_counters_recount
from annotation.models import Project


class Command(BaseCommand):
    help = "Recompute each item's ranking and open-lease counters from the rankings and leases themselves."

    def add_arguments(self, parser):
        parser.add_argument(
            "--project", type=int, action="append", help="project id (repeatable; default: all projects)"
        )

    def handle(self, *args, project=None, **options):
        projects = Project.objects.all()
        if project:
            projects = projects.filter(pk__in=project)
            missing = set(project) - set(projects.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No project with id {', '.join(map(str, sorted(missing)))}.")
        for each in projects:
            fixed = item_counters_recount(project=each)
            self.stdout.write(f"{each.name}: {fixed} item(s) corrected")
