"""The SQL every way of choosing an annotator's next item shares: both orders, gold and calibration.

`CANDIDATE_COLUMNS` takes one parameter (the annotator's id); `NOT_SEEN_BY_ANNOTATOR` takes the four
`not_seen_params` gives.
"""

from .models import Assignment, Ranking

# The item, its counters, and the annotator's own lapsed lease on it (reused rather than a second row).
CANDIDATE_COLUMNS = f"""candidate.id, candidate.human_ranking_count, candidate.open_lease_count,
               (SELECT lapsed.id FROM {Assignment._meta.db_table} lapsed
                 WHERE lapsed.item_id = candidate.id AND lapsed.annotator_id = %s)"""

# Never the same person twice: no live or finished lease of theirs, and no ranking of theirs.
NOT_SEEN_BY_ANNOTATOR = f"""NOT EXISTS (SELECT 1 FROM {Assignment._meta.db_table} taken
                            WHERE taken.item_id = candidate.id AND taken.annotator_id = %s
                              AND taken.status <> %s)
           AND NOT EXISTS (SELECT 1 FROM {Ranking._meta.db_table} ranked
                            WHERE ranked.item_id = candidate.id AND ranked.annotator_id = %s
                              AND ranked.source = %s)"""


def not_seen_params(annotator_id: int) -> list:
    """NOT_SEEN_BY_ANNOTATOR's parameters, in its order."""
    return [annotator_id, Assignment.Status.EXPIRED.value, annotator_id, Ranking.Source.HUMAN.value]
