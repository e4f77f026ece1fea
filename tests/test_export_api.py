"""The export API: streamed downloads, snapshots and agreement figures, for staff only."""

import gzip
import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest
from rest_framework.test import APIClient

from annotation.exports import annotator_pseudonym, export_snapshot_create
from annotation.models import Ranking
from tests.factories import ImportBatchFactory, ItemFactory, ProjectFactory, RankingFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(db):
    """Two items, each ranked by the same three people; the third reverses the first two's order."""
    project = ProjectFactory(name="API export")
    people = [UserFactory() for _ in range(3)]
    for _ in range(2):
        item = ItemFactory(project=project)
        ids = [a.pk for a in item.answers.order_by("position")]
        for person, order in zip(people, [ids, ids, ids[::-1]], strict=True):
            RankingFactory(item=item, annotator=person, order=[[i] for i in order])
    imported_item = ItemFactory(project=project, answers=2)
    Ranking.objects.create(
        item=imported_item,
        source=Ranking.Source.IMPORT,
        import_batch=ImportBatchFactory(project=project),
        external_annotator="oa-1",
        order=[[a.pk] for a in imported_item.answers.order_by("position")],
    )
    project.people = people
    return project


def endpoints(project, snapshot_id):
    return [
        f"/api/projects/{project.pk}/export/?format=pairs",
        f"/api/projects/{project.pk}/snapshots/",
        f"/api/snapshots/{snapshot_id}/download/",
        f"/api/projects/{project.pk}/agreement/",
    ]


def test_every_endpoint_refuses_anonymous_users_and_annotators(project, media, annotator_client):
    snapshot = export_snapshot_create(project=project, format="pairs")
    for url in endpoints(project, snapshot.pk):
        assert APIClient().get(url).status_code in (401, 403), url
        assert annotator_client.get(url).status_code == 403, url


def test_every_endpoint_answers_staff(project, media, staff_client):
    snapshot = export_snapshot_create(project=project, format="pairs")
    for url in endpoints(project, snapshot.pk):
        assert staff_client.get(url).status_code == 200, url


def lines(response):
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_the_export_streams_jsonl_as_an_attachment(project, staff_client):
    response = staff_client.get(f"/api/projects/{project.pk}/export/?format=pairs")
    assert response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert response["Content-Disposition"].startswith('attachment; filename="api-export-pairs-')
    rows = lines(response)
    assert len(rows) == 2 * 3 * 3 + 1
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "item_id", "rank_gap"}


def test_the_export_takes_filters_from_the_query_string(project, staff_client):
    url = f"/api/projects/{project.pk}/export/?format=rankings&include_imported=false&min_annotators=3"
    rows = lines(staff_client.get(url))
    assert len(rows) == 6
    assert {r["annotator"] for r in rows} == {annotator_pseudonym(p.pk) for p in project.people}
    url = f"/api/projects/{project.pk}/export/?format=pairs&pairs_from=consensus"
    consensus = lines(staff_client.get(url))
    assert len(consensus) == 2 * 3 + 1


def test_the_export_comes_gzipped_or_as_parquet_on_request(project, staff_client):
    gz = staff_client.get(f"/api/projects/{project.pk}/export/?format=consensus&container=jsonl.gz")
    assert gz["Content-Type"] == "application/gzip"
    assert gz["Content-Disposition"].endswith('.jsonl.gz"')
    assert len(gzip.decompress(b"".join(gz.streaming_content)).splitlines()) == 3
    parquet = staff_client.get(f"/api/projects/{project.pk}/export/?format=pairs-chat&container=parquet")
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.num_rows == 19 and table.column_names[:3] == ["prompt", "chosen", "rejected"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("format=csv", "Unknown format"),
        ("", "Unknown format"),
        ("format=pairs&container=zip", "Unknown container"),
        ("format=pairs&min_annotators=many", "whole number"),
        ("format=pairs&since=yesterday", "date"),
        ("format=pairs&pairs_from=nowhere", "pairs_from"),
        # Well-formed but no moment: year 0, a day that does not exist, beyond year 9999 once in UTC.
        ("format=pairs&since=0000-01-01", "since must be a date"),
        ("format=pairs&until=2025-02-30", "until must be a date"),
        ("format=pairs&since=0001-01-01T00:00:00%2B01:00", "since must be a date"),
        ("format=pairs&until=9999-12-31T23:59:59-01:00", "until must be a date"),
        ("format=pairs&since=2025-01-01T00:00:00%2B99:00", "since must be a date"),
        ("format=pairs&min_annotators=99999999999999999999", "min_annotators must be from 0"),
        ("format=pairs&min_annotators=" + "9" * 5000, "whole number"),
    ],
)
def test_a_bad_export_request_answers_400_with_the_reason(project, staff_client, query, message):
    response = staff_client.get(f"/api/projects/{project.pk}/export/?{query}")
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_a_moment_with_an_offset_postgresql_does_not_take_is_read_in_utc(project, staff_client):
    # Found by the API fuzz test: PostgreSQL refuses offsets past 15:59, Python takes them to 23:59.
    far_east = "2000-01-01T00:00:00%2B22:32"

    export = staff_client.get(f"/api/projects/{project.pk}/export/?format=pairs&since={far_east}")
    figures = staff_client.get(f"/api/projects/{project.pk}/agreement/?since={far_east}")

    assert export.status_code == 200 and len(b"".join(export.streaming_content).splitlines()) == 19
    assert figures.status_code == 200


def test_the_agreement_figures_refuse_a_date_that_is_no_moment_too(project, staff_client):
    response = staff_client.get(f"/api/projects/{project.pk}/agreement/?since=0000-01-01")
    assert response.status_code == 400
    assert "since must be a date" in response.json()["detail"]


def test_a_snapshot_whose_file_is_gone_is_404_with_a_message(project, media, staff_client):
    snapshot = export_snapshot_create(project=project, format="pairs")
    (media / snapshot.file.name).unlink()

    response = staff_client.get(f"/api/snapshots/{snapshot.pk}/download/")

    assert response.status_code == 404
    assert "no longer in the media storage" in response.json()["detail"]


@pytest.mark.parametrize("query", ["format=csv", "container=zip", "format=pairs%00"])
def test_the_snapshot_list_refuses_a_filter_that_names_no_format_or_file_type(project, staff_client, query):
    response = staff_client.get(f"/api/projects/{project.pk}/snapshots/?{query}")
    assert response.status_code == 400
    assert response.json()["detail"].split(":")[0] in ("format", "container")


def test_an_unknown_project_is_404(staff_client):
    assert staff_client.get("/api/projects/999999/export/?format=pairs").status_code == 404


def test_staff_list_and_download_snapshots_as_written(project, media, staff_client):
    older = export_snapshot_create(project=project, format="rankings")
    newer = export_snapshot_create(project=project, format="pairs", container="jsonl.gz")
    listing = staff_client.get(f"/api/projects/{project.pk}/snapshots/").json()
    assert [s["id"] for s in listing["results"]] == [newer.pk, older.pk]
    assert listing["results"][0]["row_count"] == 19 and listing["results"][0]["format"] == "pairs"
    only_rankings = staff_client.get(f"/api/projects/{project.pk}/snapshots/?format=rankings").json()
    assert [s["id"] for s in only_rankings["results"]] == [older.pk]
    assert [s["container"] for s in listing["results"]] == ["jsonl.gz", "jsonl"]
    download = staff_client.get(listing["results"][0]["download_url"])
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == newer.sha256 == download["X-Checksum-SHA256"]
    assert download["Content-Type"] == "application/gzip"
    assert len(gzip.decompress(content).splitlines()) == 19


def test_staff_list_only_the_snapshots_of_one_file_type(project, media, staff_client):
    jsonl = export_snapshot_create(project=project, format="pairs")
    parquet = export_snapshot_create(project=project, format="pairs", container="parquet")
    rankings_parquet = export_snapshot_create(project=project, format="rankings", container="parquet")
    url = f"/api/projects/{project.pk}/snapshots/"
    only_parquet = staff_client.get(f"{url}?container=parquet").json()["results"]
    assert [(s["id"], s["container"]) for s in only_parquet] == [
        (rankings_parquet.pk, "parquet"),
        (parquet.pk, "parquet"),
    ]
    both = staff_client.get(f"{url}?container=parquet&format=pairs").json()["results"]
    assert [s["id"] for s in both] == [parquet.pk]
    assert [s["id"] for s in staff_client.get(f"{url}?container=jsonl").json()["results"]] == [jsonl.pk]
    assert staff_client.get(f"{url}?container=jsonl.gz").json()["results"] == []


def test_agreement_figures_for_two_agreeing_people_and_one_who_reverses_them(project, staff_client):
    figures = staff_client.get(f"/api/projects/{project.pk}/agreement/").json()
    assert figures["items"] == 2  # the imported item is no annotator's
    # Per item: the agreeing pair τ = 1, each with the reverser τ = -1.
    assert figures["mean_tau_b"] == pytest.approx(-1 / 3)
    assert figures["comparisons"] == 6
    by_annotator = {a["annotator"]: a["tau_b"] for a in figures["annotators"]}
    first, second, reverser = (annotator_pseudonym(p.pk) for p in project.people)
    # Against the other two (one agreeing, one reversed) every pair splits 1-1, so their consensus is
    # one tie group and τ-b is undefined; the reverser faces two who agree, so τ-b = -1.
    assert set(by_annotator) == {first, second, reverser}
    assert by_annotator == {first: None, second: None, reverser: -1.0}
    assert -1 <= figures["alpha_ordinal"] < 0.5
    # Worked by hand: per item the units are levels [1, 1, 3], [2, 2, 2], [3, 3, 1]; α = 1 - 34/27.
    assert figures["alpha_ordinal"] == pytest.approx(-7 / 27)
    assert figures["consensus_items"] == 2 and figures["unanimous_best"] == 0


def test_the_schema_documents_the_export_endpoints_and_their_parameters(staff_client):
    schema = staff_client.get("/api/schema/?format=json").content.decode()
    document = json.loads(schema)
    export = document["paths"]["/api/projects/{project_id}/export/"]["get"]
    names = {p["name"] for p in export["parameters"]}
    assert {"format", "container", "since", "until", "min_annotators", "include_imported"} <= names
    assert {"exclude_not_rankable", "exclude_flagged", "pairs_from"} <= names
    for path in [
        "/api/projects/{project_id}/snapshots/",
        "/api/snapshots/{snapshot_id}/download/",
        "/api/projects/{project_id}/agreement/",
    ]:
        assert path in document["paths"]


def test_agreement_with_filters_of_ones_own_is_worked_out_on_the_spot(project, staff_client):
    with_imports = staff_client.get(f"/api/projects/{project.pk}/agreement/?include_imported=true").json()
    assert with_imports["consensus_items"] == 3  # the imported item has a consensus now
    assert staff_client.get(f"/api/projects/{project.pk}/agreement/").json()["consensus_items"] == 2
    bad = staff_client.get(f"/api/projects/{project.pk}/agreement/?min_annotators=x")
    assert bad.status_code == 400
