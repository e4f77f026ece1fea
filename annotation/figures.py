"""A project's agreement figures: worked out through the export reader, and kept, since that takes a while.

Working them out reads every ranking of the project (about a minute for 500,000 rankings), too slow
for a page. So they are stored with the data's fingerprint and shown from there; the hourly snapshot
task and a task queued by the page refresh them when the data changed, and small projects are
simply worked out while the page loads.
"""

import logging
from dataclasses import asdict, dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from preferences.agreement import AgreementSummary, ProjectAgreement
from preferences.consensus import item_consensus
from preferences.export_rows import known_answers_order

from .exports.filters import ExportFilters
from .exports.reading import export_items
from .exports.snapshots import export_source_fingerprint
from .models import AgreementFigures, Project, Ranking

log = logging.getLogger(__name__)

# Up to this many rankings the page works the figures out itself (a second or two at most).
AGREEMENT_INLINE_MAX_RANKINGS = 20_000


@dataclass(frozen=True)
class ProjectFigures:
    """A project's agreement figures and how its consensus looks."""

    agreement: AgreementSummary
    consensus_items: int
    unanimous_best: int

    def as_dict(self) -> dict[str, object]:
        """The figures flat, as the API and the project data page show them."""
        summary = self.agreement
        return {
            "items": summary.items,
            "comparisons": summary.comparisons,
            "mean_tau_b": summary.mean_tau_b,
            "alpha_ordinal": summary.alpha_ordinal,
            "consensus_items": self.consensus_items,
            "unanimous_best": self.unanimous_best,
            "annotators": [asdict(a) for a in summary.annotators],
        }


def project_figures(*, project: Project, filters: ExportFilters | None = None) -> ProjectFigures:
    """Work out agreement and consensus figures (people's rankings only unless the filters say).

    Imported rankings are left out by default: an aggregate such as Open-Assistant's `rank` is no
    annotator.
    """
    filters = filters or ExportFilters(include_imported=False)
    agreement = ProjectAgreement()
    consensus_items = unanimous_best = 0
    for item in export_items(project=project, filters=filters, details=False):
        known = {a.id for a in item.answers}
        candidates = [a.id for a in item.answers]
        by_annotator = {r.annotator: known_answers_order(r.order, known) for r in item.rankings}
        agreement.add_item(by_annotator, candidates=candidates)
        consensus = item_consensus(list(by_annotator.values()), candidates=candidates)
        if consensus.n_annotators:
            consensus_items += 1
            # One person always "agrees" with their own ranking: only items two or more ranked count.
            unanimous_best += consensus.n_annotators >= 2 and consensus.n_agreeing == consensus.n_annotators
    return ProjectFigures(agreement.summary(), consensus_items, unanimous_best)


def agreement_figures_refresh(*, project: Project, force: bool = False) -> AgreementFigures:
    """Work the project's figures out again and keep them, unless the kept ones still match its data."""
    fingerprint = export_source_fingerprint(project=project)
    kept = AgreementFigures.objects.filter(project=project).first()
    if kept is not None and kept.source_fingerprint == fingerprint and not force:
        return kept
    figures = project_figures(project=project).as_dict()
    with transaction.atomic():
        kept, _ = AgreementFigures.objects.update_or_create(
            project=project,
            defaults={"source_fingerprint": fingerprint, "figures": figures, "computed_at": timezone.now()},
        )
    return kept


@dataclass(frozen=True)
class FiguresForDisplay:
    """What to show: the kept figures (None before the first time), whether the data changed since."""

    figures: dict | None
    computed_at: datetime | None
    stale: bool


def agreement_figures_for_display(*, project: Project) -> FiguresForDisplay:
    """The figures to show now: worked out on the spot for small projects, else the kept ones.

    For a large project whose figures are missing or out of date, a refresh is queued.
    """
    fingerprint = export_source_fingerprint(project=project)
    kept = AgreementFigures.objects.filter(project=project).first()
    if kept is not None and kept.source_fingerprint == fingerprint:
        return FiguresForDisplay(kept.figures, kept.computed_at, stale=False)
    if Ranking.objects.filter(item__project=project).count() <= AGREEMENT_INLINE_MAX_RANKINGS:
        kept = agreement_figures_refresh(project=project)
        return FiguresForDisplay(kept.figures, kept.computed_at, stale=False)
    # One refresh per change of the data, however often the page is opened meanwhile.
    if cache.add(f"agreement-figures-queued:{project.pk}:{fingerprint}", True, timeout=3600):
        transaction.on_commit(lambda: _queue_refresh(project.pk))
    if kept is None:
        return FiguresForDisplay(None, None, stale=True)
    return FiguresForDisplay(kept.figures, kept.computed_at, stale=True)


def _queue_refresh(project_id: int) -> None:
    from .tasks import agreement_figures_write

    try:
        agreement_figures_write.delay(project_id)
    except Exception:
        # The page still shows what it has; the hourly task refreshes the figures anyway.
        log.exception("Could not queue the agreement figures of project %s", project_id)


def agreement_figures_refresh_all() -> int:
    """Refresh the figures of every active project whose data changed; how many were worked out."""
    refreshed = 0
    for project in Project.objects.filter(is_active=True).order_by("pk"):
        before = (
            AgreementFigures.objects.filter(project=project).values_list("computed_at", flat=True).first()
        )
        if agreement_figures_refresh(project=project).computed_at != before:
            refreshed += 1
    return refreshed
