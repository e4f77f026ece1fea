"""Training runs on unchanged data share one rankings snapshot instead of writing the same file again."""

import pytest

from annotation.models import ExportSnapshot
from tests.conftest import files_under
from tests.factories import ItemFactory, ProjectFactory, RankingFactory
from training import execution

pytestmark = pytest.mark.django_db


def test_runs_on_unchanged_data_share_one_snapshot_and_new_rankings_make_a_new_one(media):
    project = ProjectFactory()
    item = ItemFactory(project=project)
    RankingFactory(item=item)

    first = execution._rankings_snapshot(project=project)
    again = execution._rankings_snapshot(project=project)
    RankingFactory(item=item)
    changed = execution._rankings_snapshot(project=project)

    assert again.pk == first.pk
    assert changed.pk != first.pk and changed.row_count == 2
    assert ExportSnapshot.objects.filter(project=project).count() == 2
    assert len(files_under(media)) == 2


def test_a_snapshot_whose_file_is_gone_is_written_again(media):
    project = ProjectFactory()
    RankingFactory(item=ItemFactory(project=project))
    first = execution._rankings_snapshot(project=project)
    (media / first.file.name).unlink()

    second = execution._rankings_snapshot(project=project)

    assert second.pk != first.pk and (media / second.file.name).exists()
    assert second.sha256 == first.sha256
