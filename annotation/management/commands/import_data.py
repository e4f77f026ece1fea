"""Import a preference file into a project from the command line."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.imports import FORMATS, ImportFailed, import_file
from annotation.models import Project


class Command(BaseCommand):
    help = (
        "Import a .jsonl or .jsonl.gz file (Open-Assistant trees or message rows, ranking rows, pairwise "
        "rows) into a project, all or nothing. A bad line stops the import with FILE:LINE: what is wrong."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument("--format", default="auto", choices=["auto", *FORMATS])
        parser.add_argument(
            "--create-project", action="store_true", help="Create the project when none has this name."
        )
        parser.add_argument(
            "--gold",
            action="store_true",
            help="The file's items are gold items: each row's ranking (of all its answers) becomes the "
            "item's known ranking, against which annotators are measured; no rankings are imported.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(self, *args, **options):
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        name = options["project"]
        if options["create_project"]:
            project, _ = Project.objects.get_or_create(name=name)
        else:
            try:
                project = Project.objects.get(name=name)
            except Project.DoesNotExist as exc:
                raise CommandError(
                    f"No project named {name!r} (pass --create-project to create it)."
                ) from exc
        try:
            batch = import_file(
                path=path,
                project=project,
                format=options["format"],
                file_name=str(path),
                progress=not options["no_progress"],
                gold=options["gold"],
            )
        except ImportFailed as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from exc
        self.stdout.write(self.style.SUCCESS(f"Imported {path} into {project} ({batch.summary()})."))
