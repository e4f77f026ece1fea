"""Projects (everyone signed in sees the active ones) and items (staff only)."""

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from common.api import ErrorSerializer, project_filter
from common.permissions import IsStaff

from ..imports import project_delete
from ..models import Answer, Item, Project
from ..projects import ProjectInvalid, project_save, project_values_validate


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

    def validate(self, attrs):
        try:
            return project_values_validate(values=attrs)
        except ProjectInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc

    def create(self, validated_data):
        return project_save(project=Project(**validated_data))

    def update(self, instance, validated_data):
        for field, value in validated_data.items():
            setattr(instance, field, value)
        return project_save(project=instance)

    def to_representation(self, instance):
        if not hasattr(instance, "item_count"):  # a project just created or changed: count it here
            instance.item_count = instance.items.count()
        return super().to_representation(instance)


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
        project_delete(project=self.get_object())
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
