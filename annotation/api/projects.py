"""Projects (everyone signed in sees the active ones) and items (staff only)."""

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from ..imports import ProjectImporting, project_delete
from ..models import Answer, Item, Project
from .permissions import IsStaff
from .work import ErrorSerializer


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "guidelines", "rankings_per_item", "allow_ties", "flag_labels", "is_active"]


class ProjectStaffSerializer(serializers.ModelSerializer):
    item_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "guidelines",
            "rankings_per_item",
            "allow_ties",
            "flag_labels",
            "is_active",
            "retrain_min_new_rankings",
            "training_arguments",
            "created_at",
            "item_count",
        ]
        read_only_fields = ["created_at", "item_count"]

    def validate_flag_labels(self, value):
        if not isinstance(value, list) or not all(
            isinstance(label, str) and label.strip() for label in value
        ):
            raise serializers.ValidationError("flag_labels must be a list of non-empty strings.")
        return value


@extend_schema_view(
    list=extend_schema(summary="Projects: active ones for annotators, all for staff"),
    retrieve=extend_schema(summary="One project"),
    destroy=extend_schema(
        summary="Delete a project and all its data (staff)",
        responses={204: None, 409: ErrorSerializer},
    ),
)
class ProjectViewSet(viewsets.ModelViewSet):
    """Annotators read the active projects; staff also create, change and delete them."""

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return [IsAuthenticated()]
        return [IsStaff()]

    def get_queryset(self):
        if self.request.user.is_staff:
            return Project.objects.annotate(item_count=Count("items"))
        return Project.objects.filter(is_active=True)

    def get_serializer_class(self):
        if self.request.user.is_staff:
            return ProjectStaffSerializer
        return ProjectSerializer

    def destroy(self, request, *args, **kwargs):
        try:
            project_delete(project=self.get_object())
        except ProjectImporting as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnswerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Answer
        fields = ["id", "position", "text", "model_name", "external_id"]


class ItemSerializer(serializers.ModelSerializer):
    answers = AnswerSerializer(many=True, read_only=True)
    ranking_count = serializers.IntegerField(source="human_ranking_count", read_only=True)

    class Meta:
        model = Item
        fields = ["id", "project", "external_id", "conversation", "answers", "ranking_count", "created_at"]


def project_filter(queryset, request):
    """The rows of the project named by `?project=ID`, or all rows when it is absent."""
    project = request.query_params.get("project")
    if project:
        if not project.isdigit():
            raise serializers.ValidationError({"project": "must be a project id"})
        queryset = queryset.filter(project_id=int(project))
    return queryset


@extend_schema_view(list=extend_schema(summary="Items with their answers (staff)"))
class ItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Items with their answers, filterable by `?project=ID` and `?external_id=`."""

    permission_classes = [IsStaff]
    serializer_class = ItemSerializer

    def get_queryset(self):
        queryset = Item.objects.prefetch_related(
            Prefetch("answers", queryset=Answer.objects.order_by("position"))
        )
        queryset = project_filter(queryset, self.request)
        external_id = self.request.query_params.get("external_id")
        if external_id:
            queryset = queryset.filter(external_id=external_id)
        return queryset.order_by("id")
