"""What an export request may ask for: the formats, file types and filters, each checked where it enters."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from common.errors import Invalid

from ..models import ExportSnapshot

FORMATS = [choice.value for choice in ExportSnapshot.Format]
CONTAINERS = [choice.value for choice in ExportSnapshot.Container]
PAIRS_FROM = ["rankings", "consensus"]
MAX_MIN_ANNOTATORS = 2**31 - 1  # compared with a count in SQL: a larger number is a database error


class ExportError(Invalid, ValueError):
    """An export request that cannot be served: unknown format or container, a malformed filter."""


@dataclass(frozen=True)
class ExportFilters:
    """Which items, rankings and answers an export takes; dates bound ranking creation (`until` excluded)."""

    since: datetime | None = None
    until: datetime | None = None
    min_annotators: int = 1
    include_imported: bool = True
    exclude_not_rankable: bool = False
    exclude_flagged: bool = False
    # Pairs from each ranking (one row per person's preference) or from the item's consensus.
    pairs_from: str = "rankings"
    # Gold items (annotation.gold) measure annotators and stay out of training; this takes their people's
    # rankings too, as any item's (their known ranking is not written). Last, so that the snapshots stored
    # before it came, given it by migration 0016, keep their key order (SQLite compares JSON as text).
    include_gold: bool = False
    # Rankings created or changed by their annotator at or after this moment: an incremental download by
    # time, which `since` (creation only) would not give the rankings changed since. Last, as above.
    changed_since: datetime | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> "ExportFilters":
        """Parse filters from query parameters, command options or a stored dict; unknown keys are errors."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ExportError(f"Unknown filter(s): {', '.join(unknown)}.")
        parsed: dict[str, object] = {}
        for name in ("since", "until", "changed_since"):
            if values.get(name) not in (None, ""):
                parsed[name] = _parse_moment(name, values[name])
        if values.get("min_annotators") not in (None, ""):
            try:
                parsed["min_annotators"] = int(values["min_annotators"])
            except (TypeError, ValueError) as exc:
                raise ExportError("min_annotators must be a whole number.") from exc
            if not 0 <= parsed["min_annotators"] <= MAX_MIN_ANNOTATORS:
                raise ExportError(f"min_annotators must be from 0 to {MAX_MIN_ANNOTATORS}.")
        for name in ("include_imported", "exclude_not_rankable", "exclude_flagged", "include_gold"):
            if values.get(name) not in (None, ""):
                parsed[name] = _parse_bool(name, values[name])
        if values.get("pairs_from") not in (None, ""):
            if values["pairs_from"] not in PAIRS_FROM:
                raise ExportError(f"pairs_from must be one of {', '.join(PAIRS_FROM)}.")
            parsed["pairs_from"] = values["pairs_from"]
        return cls(**parsed)

    def as_dict(self) -> dict[str, object]:
        """Every filter, JSON-ready; two equal filter sets give equal dicts (snapshots compare them)."""
        data = asdict(self)
        for name in ("since", "until", "changed_since"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data


def _parse_moment(name: str, value: object) -> datetime:
    invalid = f"{name} must be a date (2025-01-31) or an ISO date-time, from year 1 to 9999."
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime.combine(value, time.min)
        else:
            text = str(value)
            # Well-formed but impossible (year 0, February 30th) is a ValueError, not None.
            moment = parse_datetime(text)
            if moment is None:
                day = parse_date(text)
                if day is None:
                    raise ExportError(invalid)
                moment = datetime.combine(day, time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, timezone.get_default_timezone())
        # In UTC, as the database compares it: a moment that leaves years 1-9999 there is no moment, and
        # an offset PostgreSQL does not take (it stops at 15:59) no longer reaches it.
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ExportError(invalid) from exc
    return moment


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ExportError(f"{name} must be true or false.")


def container_for(*, name: str | None = None, container: str | None = None) -> str:
    """The container an explicit option names, else the one the output name's ending implies (JSONL)."""
    if container:
        if container not in CONTAINERS:
            raise ExportError(f"Unknown container {container!r}; use one of {', '.join(CONTAINERS)}.")
        return container
    lowered = (name or "").lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".gz"):
        return "jsonl.gz"
    return "jsonl"


def check_format(format: str) -> str:
    """The format itself, or ExportError naming the known ones."""
    if format not in FORMATS:
        raise ExportError(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    return format
