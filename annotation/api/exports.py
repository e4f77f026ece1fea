"""Datasets out over the API (staff with view_ranking or view_exportsnapshot): streamed exports, snapshots,
agreement and consensus figures."""

import os
from dataclasses import fields

from django.core.files.storage import default_storage
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import ErrorSerializer, query_validated
from common.permissions import StaffWithPermissions

from ..exports.containers import export_file_name, export_stream
from ..exports.filters import (
    CONTAINERS,
    FORMATS,
    PAIRS_FROM,
    ExportFilters,
    check_format,
    container_for,
)
from ..figures import agreement_figures_for_display, project_figures
from ..models import ExportSnapshot, Project

CONTENT_TYPES = {
    "jsonl": "application/x-ndjson; charset=utf-8",
    "jsonl.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}

# A dataset file in each container, as the export streams it and a snapshot download serves it.
FILE_RESPONSES = {
    (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY, description="JSON Lines"),
    (200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY, description="Gzipped JSON Lines"),
    (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY, description="Parquet"),
}

FILTER_PARAMETERS = [
    OpenApiParameter(
        "since", OpenApiTypes.DATETIME, description="Rankings created at or after (date or ISO)."
    ),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Rankings created before (date or ISO)."),
    OpenApiParameter(
        "changed_since",
        OpenApiTypes.DATETIME,
        description="Rankings created or changed by their annotator at or after (date or ISO): an "
        "incremental download that also brings the rankings changed since.",
    ),
    OpenApiParameter("min_annotators", int, description="Skip items with fewer rankings (default 1)."),
    OpenApiParameter("include_imported", bool, description="Take imported rankings too."),
    OpenApiParameter("exclude_not_rankable", bool, description="Leave out rankings marked not rankable."),
    OpenApiParameter("exclude_flagged", bool, description="Leave out answers anyone flagged."),
    OpenApiParameter(
        "include_gold",
        bool,
        description="Take gold items' rankings too (default false; not their known ranking).",
    ),
]


class IgnoreFormatParameter(BaseContentNegotiation):
    """`?format=` names the dataset shape here, not DRF's renderer, so it must not pick one."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _filters(query) -> ExportFilters:
    # An ExportError names the bad parameter; the API's exception handler makes it a 400.
    names = [field.name for field in fields(ExportFilters)]
    return ExportFilters.from_mapping({name: query[name] for name in names if name in query})


class ProjectExportView(APIView):
    """Stream a project's dataset in one of the export shapes, as JSONL, gzip or Parquet."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_ranking",)}
    content_negotiation_class = IgnoreFormatParameter

    @extend_schema(
        summary="Download a dataset export, streamed (staff with view_ranking)",
        parameters=[
            OpenApiParameter("format", str, enum=FORMATS, required=True, description="The row shape."),
            OpenApiParameter("container", str, enum=CONTAINERS, description="File type (default jsonl)."),
            OpenApiParameter(
                "pairs_from", str, enum=PAIRS_FROM, description="Pairs from each ranking or consensus."
            ),
            *FILTER_PARAMETERS,
        ],
        responses={
            **FILE_RESPONSES,
            400: OpenApiResponse(ErrorSerializer, description="A parameter is invalid; it is named."),
        },
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        format = check_format(request.query_params.get("format", ""))
        container = container_for(container=request.query_params.get("container") or "jsonl")
        filters = _filters(request.query_params)
        response = StreamingHttpResponse(
            export_stream(project=project, format=format, container=container, filters=filters),
            content_type=CONTENT_TYPES[container],
        )
        name = export_file_name(project=project, format=format, container=container)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["X-Accel-Buffering"] = "no"  # let a proxy pass the stream on as it comes
        return response


class SnapshotSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()
    file_name = serializers.SerializerMethodField()

    class Meta:
        model = ExportSnapshot
        fields = [
            "id",
            "project",
            "format",
            "container",
            "filters",
            "row_count",
            "item_count",
            "sha256",
            "file_name",
            "created_at",
            "download_url",
        ]

    def get_download_url(self, snapshot) -> str:
        return reverse("snapshot-download", args=[snapshot.pk])

    def get_file_name(self, snapshot) -> str:
        return os.path.basename(snapshot.file.name)


class SnapshotQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS, required=False, help_text="Only this format.")
    container = serializers.ChoiceField(choices=CONTAINERS, required=False, help_text="Only this file type.")


@extend_schema(
    summary="A project's export snapshots, newest first (staff with view_exportsnapshot)",
    parameters=[SnapshotQuerySerializer],
)
class ProjectSnapshotListView(generics.ListAPIView):
    """The snapshots the schedule (or training) wrote for a project."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_exportsnapshot",)}
    serializer_class = SnapshotSerializer
    content_negotiation_class = IgnoreFormatParameter

    def get_queryset(self):
        project = get_object_or_404(Project, pk=self.kwargs["project_id"])
        query = query_validated(SnapshotQuerySerializer, self.request)
        return ExportSnapshot.objects.filter(project=project, **query).order_by("-created_at", "-id")


class SnapshotDownloadView(APIView):
    """The snapshot's file, as written."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_exportsnapshot",)}

    @extend_schema(
        summary="Download an export snapshot (staff with view_exportsnapshot)",
        responses={
            **FILE_RESPONSES,
            404: OpenApiResponse(ErrorSerializer, description="No such snapshot, or its file is gone."),
        },
    )
    def get(self, request, snapshot_id: int):
        snapshot = get_object_or_404(ExportSnapshot, pk=snapshot_id)
        name = os.path.basename(snapshot.file.name)
        try:
            file = default_storage.open(snapshot.file.name, "rb")
        except FileNotFoundError:
            raise NotFound(
                f"Snapshot {snapshot.pk}'s file {name} is no longer in the media storage."
            ) from None
        response = FileResponse(
            file,
            as_attachment=True,
            filename=name,
            content_type=CONTENT_TYPES[snapshot.container],
        )
        response["X-Checksum-SHA256"] = snapshot.sha256
        return response


class AnnotatorAgreementSerializer(serializers.Serializer):
    annotator = serializers.CharField(help_text="Pseudonym.")
    items = serializers.IntegerField(help_text="Items this annotator shares with others.")
    tau_b = serializers.FloatField(allow_null=True, help_text="Mean τ-b against the others' consensus.")


class ProjectAgreementSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    items = serializers.IntegerField(help_text="Items ranked by at least two annotators.")
    comparisons = serializers.IntegerField(help_text="Annotator pairs on shared items with a defined τ-b.")
    mean_tau_b = serializers.FloatField(allow_null=True)
    alpha_ordinal = serializers.FloatField(allow_null=True, help_text="Krippendorff's α, ordinal.")
    consensus_items = serializers.IntegerField(help_text="Items with a consensus (at least one ranking).")
    unanimous_best = serializers.IntegerField(help_text="Items where every annotator chose a consensus best.")
    annotators = AnnotatorAgreementSerializer(many=True)
    computed_at = serializers.DateTimeField(allow_null=True)
    stale = serializers.BooleanField(help_text="The data changed since; newer figures are being worked out.")


class ProjectAgreementView(APIView):
    """Agreement and consensus figures: the kept ones (annotation.figures), or worked out now for filters."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_ranking",)}

    @extend_schema(
        summary="Agreement and consensus figures (staff with view_ranking)",
        parameters=FILTER_PARAMETERS,
        responses={
            200: ProjectAgreementSerializer,
            202: OpenApiResponse(description="Not worked out yet for this (large) project; queued."),
        },
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        names = {field.name for field in fields(ExportFilters)}
        if names & set(request.query_params):
            # Filters of one's own: worked out now (slow on a large project), never kept.
            query = request.query_params.copy()
            query.setdefault("include_imported", "false")
            figures = project_figures(project=project, filters=_filters(query)).as_dict()
            payload = {"project": project.pk, **figures, "computed_at": timezone.now(), "stale": False}
            return Response(ProjectAgreementSerializer(payload).data)
        shown = agreement_figures_for_display(project=project)
        if shown.figures is None:
            return Response(
                {"detail": "The figures are being worked out; ask again in a minute."}, status=202
            )
        payload = {
            "project": project.pk,
            **shown.figures,
            "computed_at": shown.computed_at,
            "stale": shown.stale,
        }
        return Response(ProjectAgreementSerializer(payload).data)
