"""`manage.py export_data --project NAME --format pairs -o pairs.jsonl.gz`: stream an export to a file."""

import os
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.exports.containers import export_stream
from annotation.exports.filters import (
    CONTAINERS,
    FORMATS,
    PAIRS_FROM,
    ExportError,
    ExportFilters,
    container_for,
)
from annotation.exports.reading import ExportProgress, export_item_count
from annotation.models import Project


class Command(BaseCommand):
    help = (
        "Export a project's rankings as rankings, consensus, pairs, pairs-chat or oasst rows. The container "
        "follows the output name (.jsonl, .jsonl.gz, .parquet) unless --container says; -o - writes stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project name (or id).")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("-o", "--output", required=True, help="File to write, or - for stdout.")
        parser.add_argument("--container", choices=CONTAINERS, help="Instead of the one the name implies.")
        parser.add_argument("--since", help="Only rankings created at or after this date / date-time.")
        parser.add_argument("--until", help="Only rankings created before this date / date-time.")
        parser.add_argument(
            "--changed-since",
            help="Only rankings created or changed by their annotator at or after this date / date-time.",
        )
        parser.add_argument("--min-annotators", type=int, default=1, help="Skip items with fewer rankings.")
        parser.add_argument("--exclude-imported", action="store_true", help="Leave imported rankings out.")
        parser.add_argument("--exclude-not-rankable", action="store_true")
        parser.add_argument("--exclude-flagged", action="store_true", help="Drop answers anyone flagged.")
        parser.add_argument(
            "--include-gold",
            action="store_true",
            help="Take gold items' rankings too (never their known ranking); left out by default.",
        )
        parser.add_argument("--pairs-from", choices=PAIRS_FROM, default="rankings")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(self, *args, **options):
        project = self._project(options["project"])
        output = options["output"]
        try:
            container = container_for(name=output if output != "-" else "", container=options["container"])
            filters = ExportFilters.from_mapping(
                {
                    "since": options["since"],
                    "until": options["until"],
                    "changed_since": options["changed_since"],
                    "min_annotators": options["min_annotators"],
                    "include_imported": not options["exclude_imported"],
                    "exclude_not_rankable": options["exclude_not_rankable"],
                    "exclude_flagged": options["exclude_flagged"],
                    "include_gold": options["include_gold"],
                    "pairs_from": options["pairs_from"],
                }
            )
        except ExportError as exc:
            raise CommandError(str(exc)) from exc

        bar = tqdm(
            total=export_item_count(project=project, filters=filters),
            unit=" items",
            file=sys.stderr,
            disable=True if options["no_progress"] else None,
        )
        progress = ExportProgress(on_items=bar.update)
        chunks = export_stream(
            project=project, format=options["format"], container=container, filters=filters, progress=progress
        )
        if output == "-":
            target = sys.stdout.buffer
            for chunk in chunks:
                target.write(chunk)
            target.flush()
        else:
            # Written beside the target and renamed, so a crash never leaves a half file under its name.
            partial = f"{output}.partial"
            try:
                with open(partial, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                os.replace(partial, output)
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise
        bar.close()
        self.stderr.write(
            f"Exported {progress.rows} {options['format']} rows from {progress.items} items to {output}."
        )

    def _project(self, name: str) -> Project:
        project = Project.objects.filter(name=name).first()
        if project is None and name.isdigit():
            project = Project.objects.filter(pk=int(name)).first()
        if project is None:
            raise CommandError(f"No project named {name!r}.")
        return project
