"""Each annotator's figures in a project, and leaving one's rankings out or counting them again, over the API
(staff only, with the permissions the annotators page asks for)."""

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import ErrorSerializer
from common.permissions import StaffWithPermissions

from ..annotator_quality import annotator_exclude, annotator_figures, annotator_include
from ..models import Project


class AnnotatorFiguresSerializer(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    rankings = serializers.IntegerField(help_text="The person's rankings in the project.")
    gold_items = serializers.IntegerField(help_text="Gold items they ranked.")
    gold_tau = serializers.FloatField(allow_null=True, help_text="Mean Kendall τ-b against the gold ranking.")
    shared_items = serializers.IntegerField(help_text="Items others ranked too (gold aside).")
    consensus_tau = serializers.FloatField(
        allow_null=True, help_text="Mean Kendall τ-b against the consensus of the others on those items."
    )
    median_seconds = serializers.FloatField(allow_null=True, help_text="Median seconds spent per item.")
    untouched_share = serializers.FloatField(
        allow_null=True, help_text="Share of the orders sent as first shown (0 to 1)."
    )
    skip_rate = serializers.FloatField(
        allow_null=True, help_text="Skipped leases over skipped leases and rankings (0 to 1)."
    )
    excluded = serializers.BooleanField(help_text="Their rankings are left out of exports and training.")
    marked = serializers.BooleanField(
        help_text="A figure is out of the ordinary: worth a look, not a verdict."
    )
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why the row is marked.")


class AnnotatorExclusionSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    annotator_id = serializers.IntegerField()
    excluded = serializers.BooleanField()


NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such project, or no such user.")


class ProjectAnnotatorsView(APIView):
    """The figures of everyone who ranked in the project or skipped there, most rankings first."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"get": ("annotation.view_ranking",)}

    @extend_schema(
        operation_id="project_annotators",
        summary="Each annotator's figures in a project, outliers marked (staff with view_ranking)",
        responses={
            200: AnnotatorFiguresSerializer(many=True),
            404: OpenApiResponse(ErrorSerializer, description="No such project."),
        },
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        return Response(AnnotatorFiguresSerializer(annotator_figures(project=project), many=True).data)


class AnnotatorExclusionView(APIView):
    """Exclude an annotator from a project (PUT) or include them again (DELETE); both are idempotent.

    Excluded, the person's rankings of the project are left out of exports and so of training. Any user may
    be excluded, also one who has not ranked there yet.
    """

    # The page's Exclude and Include again buttons ask for the same permission.
    permission_classes = [StaffWithPermissions]
    staff_permissions = {"put": ("annotation.change_project",), "delete": ("annotation.change_project",)}

    def _project_and_annotator(self, project_id: int, annotator_id: int):
        project = get_object_or_404(Project, pk=project_id)
        return project, get_object_or_404(get_user_model(), pk=annotator_id)

    @extend_schema(
        operation_id="annotator_exclude",
        summary="Leave an annotator's rankings out of exports and training (staff with change_project)",
        request=None,
        responses={200: AnnotatorExclusionSerializer, 404: NOT_FOUND},
    )
    def put(self, request, project_id: int, annotator_id: int):
        project, annotator = self._project_and_annotator(project_id, annotator_id)
        annotator_exclude(project=project, annotator=annotator, by=request.user)
        body = {"project": project.pk, "annotator_id": annotator.pk, "excluded": True}
        return Response(AnnotatorExclusionSerializer(body).data)

    @extend_schema(
        operation_id="annotator_include",
        summary="Count an excluded annotator's rankings again (staff with change_project)",
        responses={204: None, 404: NOT_FOUND},
    )
    def delete(self, request, project_id: int, annotator_id: int):
        project, annotator = self._project_and_annotator(project_id, annotator_id)
        annotator_include(project=project, annotator=annotator)
        return Response(status=status.HTTP_204_NO_CONTENT)
