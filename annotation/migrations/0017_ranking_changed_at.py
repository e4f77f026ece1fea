"""Rankings record when their annotator last changed them, and exports take `changed_since`.

`Ranking.changed_at` is filled for rankings changed before it existed from their newest revision's
`replaced_at`. Stored snapshot filters get `changed_since: null`, the new filter's default, for the reason
0016 gives `include_gold: false` (a snapshot is found by its filters as `ExportFilters.as_dict()` makes
them), with 0016's own rewriting.
"""

import importlib

from django.db import migrations, models
from django.db.models import Max, OuterRef, Subquery

include_gold = importlib.import_module("annotation.migrations.0016_export_filters_include_gold")


def changed_at_from_revisions(apps, schema_editor):
    Ranking = apps.get_model("annotation", "Ranking")
    RankingRevision = apps.get_model("annotation", "RankingRevision")
    newest = (
        RankingRevision.objects.filter(ranking=OuterRef("pk"))
        .values("ranking")
        .annotate(last=Max("replaced_at"))
        .values("last")
    )
    Ranking.objects.filter(revisions__isnull=False).update(changed_at=Subquery(newest))


def add_changed_since(apps, schema_editor):
    def with_it(filters):
        return None if "changed_since" in filters else {**filters, "changed_since": None}

    include_gold._rewrite_filters(apps, with_it)


def remove_changed_since(apps, schema_editor):
    """Take `changed_since: null` off again; snapshots made with a moment keep it (as 0016 does)."""

    def without(filters):
        if "changed_since" not in filters or filters["changed_since"] is not None:
            return None
        return {name: value for name, value in filters.items() if name != "changed_since"}

    include_gold._rewrite_filters(apps, without)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0016_export_filters_include_gold")]

    operations = [
        migrations.AddField(
            model_name="ranking",
            name="changed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(changed_at_from_revisions, migrations.RunPython.noop),
        migrations.RunPython(add_changed_since, remove_changed_since),
    ]
