"""Importing a file into a project over the API (staff only)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..imports import FORMATS, ImportFailed, import_upload
from ..models import ImportBatch, Project
from .permissions import IsStaff


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl or .jsonl.gz file in one of the import formats.")
    format = serializers.ChoiceField(choices=["auto", *FORMATS], default="auto")


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
            "created_at",
        ]


class ProjectImportView(APIView):
    """Import a file into a project, all or nothing; a bad line answers 400 with `FILE:LINE: why`."""

    permission_classes = [IsStaff]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="Import a file into a project (staff)",
        request={"multipart/form-data": ImportInputSerializer},
        responses={
            201: ImportBatchSerializer,
            400: inline_serializer("ImportError", fields={"detail": serializers.CharField()}),
        },
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            batch = import_upload(
                upload=serializer.validated_data["file"],
                project=project,
                format=serializer.validated_data["format"],
                user=request.user,
            )
        except ImportFailed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ImportBatchSerializer(batch).data, status=status.HTTP_201_CREATED)
