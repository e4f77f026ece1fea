"""Stored snapshot filters get `include_gold: false`, the new filter's default (ExportFilters.include_gold).

export_snapshot_latest finds a snapshot by comparing its stored `filters` with ExportFilters.as_dict(),
which now names `include_gold`: without the key, every snapshot written before would look like one of
other filters, and the next scheduled run would write each format of each project again.

Only ExportSnapshot stores whole filter dicts. The snapshot task's kwargs (a periodic task staff may
add) hold filters as given, which ExportFilters.from_mapping completes with the defaults.
"""

from django.db import migrations

BATCH = 2000


def _rewrite_filters(apps, change):
    """Store `change(filters)` for each snapshot where it returns a new dict, a batch of rows at a time."""
    ExportSnapshot = apps.get_model("annotation", "ExportSnapshot")
    # The ids first, then batches by id: no cursor stays open over the rows being updated.
    pks = list(ExportSnapshot.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), BATCH):
        changed = []
        batch = ExportSnapshot.objects.filter(pk__in=pks[start : start + BATCH]).only("pk", "filters")
        for snapshot in batch:
            filters = change(snapshot.filters) if isinstance(snapshot.filters, dict) else None
            if filters is not None:
                snapshot.filters = filters
                changed.append(snapshot)
        ExportSnapshot.objects.bulk_update(changed, ["filters"])


def add_include_gold(apps, schema_editor):
    """`include_gold: false` on every stored filter dict without it, last, where as_dict() puts it."""

    def with_it(filters):
        return None if "include_gold" in filters else {**filters, "include_gold": False}

    _rewrite_filters(apps, with_it)


def remove_include_gold(apps, schema_editor):
    """Take `include_gold: false` off again; snapshots that included gold items keep `include_gold: true`.

    The code before this migration would take a snapshot stripped of `true` for one without gold items,
    and training could then read it; kept, it matches no filters that code makes, so it is only listed.
    """

    def without(filters):
        if filters.get("include_gold") is not False:
            return None
        return {name: value for name, value in filters.items() if name != "include_gold"}

    _rewrite_filters(apps, without)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0015_import_gold"),
    ]

    operations = [migrations.RunPython(add_include_gold, remove_include_gold)]
