"""Importing a file into a project over the API (staff with change_project): small files at once, large
ones queued."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import RetrieveAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import ErrorSerializer
from common.permissions import StaffWithPermissions

from ..imports import (
    FORMATS,
    import_upload_or_queue,
)
from ..models import ImportBatch, ImportJob, Project


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl or .jsonl.gz file in one of the import formats.")
    format = serializers.ChoiceField(choices=["auto", *FORMATS], default="auto")
    background = serializers.BooleanField(
        default=False,
        help_text="Queue the import even if the file is small. Files over IMPORT_INLINE_MAX_BYTES "
        "(10 MB unless configured) are always queued.",
    )
    gold = serializers.BooleanField(
        default=False,
        help_text="Import the items as gold items: each row's ranking, which must name every answer of its "
        "item, becomes the item's known ranking; no rankings are imported.",
    )


class ImportBatchSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportBatch
        fields = [
            "id",
            "project",
            "file_name",
            "format",
            "sha256",
            "lines_read",
            "items_created",
            "answers_created",
            "rankings_created",
            "gold",
            "gold_marked",
            "created_at",
        ]


class ImportJobSerializer(serializers.ModelSerializer):
    batch = ImportBatchSerializer(read_only=True, allow_null=True, help_text="The import, once it succeeded.")
    links = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "project",
            "file_name",
            "format",
            "gold",
            "status",
            "error",
            "batch",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "links",
        ]

    @extend_schema_field(
        inline_serializer("ImportJobLinks", fields={"self": serializers.CharField(help_text="Poll this.")})
    )
    def get_links(self, job: ImportJob) -> dict[str, str]:
        url = reverse("import-job", args=[job.pk])
        request = self.context.get("request")
        return {"self": request.build_absolute_uri(url) if request else url}


class ProjectImportView(APIView):
    """Import a file into a project, all or nothing; a bad line answers 400 with `FILE:LINE: why`.

    A large file (or `background=true`) is queued instead, as it would hold a web worker for minutes:
    202 with the job, whose `links.self` tells how it went.
    """

    # The admin's upload sits on the project's change page, and asks for the same permission.
    permission_classes = [StaffWithPermissions]
    staff_permissions = {"post": ("annotation.change_project",)}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="Import a file into a project (staff with change_project)",
        request={"multipart/form-data": ImportInputSerializer},
        responses={
            201: ImportBatchSerializer,
            202: ImportJobSerializer,
            400: OpenApiResponse(ErrorSerializer, description="A bad line (`FILE:LINE: why`) or field."),
            503: OpenApiResponse(ErrorSerializer, description="The broker is unreachable; nothing queued."),
        },
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        imported = import_upload_or_queue(
            upload=serializer.validated_data["file"],
            project=project,
            format=serializer.validated_data["format"],
            user=request.user,
            background=serializer.validated_data["background"],
            gold=serializer.validated_data["gold"],
        )
        if isinstance(imported, ImportJob):
            data = ImportJobSerializer(imported, context={"request": request}).data
            return Response(
                data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["links"]["self"]}
            )
        return Response(ImportBatchSerializer(imported).data, status=status.HTTP_201_CREATED)


@extend_schema(summary="How a queued import went (staff with view_importjob)")
class ImportJobView(RetrieveAPIView):
    """A queued import: its status, the error that stopped it, or the counts of what it added."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_importjob",)}
    serializer_class = ImportJobSerializer
    queryset = ImportJob.objects.select_related("batch")
    lookup_url_kwarg = "job_id"
