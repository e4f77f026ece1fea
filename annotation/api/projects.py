"""Projects (everyone signed in sees the active ones) and items (staff only)."""

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from common.api import ErrorSerializer, ProjectQuerySerializer, project_filter, query_validated
from common.permissions import StaffWithPermissions

from ..imports import project_delete
from ..models import Answer, Item, Project
from ..projects import PROJECT_FIELDS, ProjectInvalid, project_save, project_values_validate


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "guidelines", "rankings_per_item", "allow_ties", "flag_labels", "is_active"]


class ProjectStaffSerializer(serializers.ModelSerializer):
    item_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Project
        fields = ["id", *PROJECT_FIELDS, "created_at", "item_count"]
        read_only_fields = ["created_at", "item_count"]

    def validate(self, attrs):
        # A partial change is checked together with the settings it leaves as they are (rules that tie
        # two fields, such as max_rankings_per_item >= rankings_per_item, need both).
        kept = {field: getattr(self.instance, field) for field in PROJECT_FIELDS} if self.instance else {}
        try:
            clean = project_values_validate(values={**kept, **attrs})
        except ProjectInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return {field: clean[field] for field in attrs}

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


STAFF_FIELDS_NOTE = (
    "Staff who may view projects (view_project or change_project) see every project, also with "
    "retrain_min_new_rankings, training_arguments, work_order, max_rankings_per_item, revision_window_hours, "
    "gold_rate, calibration_items, created_at and item_count; others see the active ones."
)
STAFF_WRITE = {"request": ProjectStaffSerializer, "responses": ProjectStaffSerializer}


@extend_schema_view(
    list=extend_schema(
        summary="Projects: active ones for annotators, all for staff", description=STAFF_FIELDS_NOTE
    ),
    retrieve=extend_schema(summary="One project", description=STAFF_FIELDS_NOTE),
    create=extend_schema(summary="Create a project (staff with add_project)", **STAFF_WRITE),
    update=extend_schema(summary="Change a project (staff with change_project)", **STAFF_WRITE),
    partial_update=extend_schema(
        summary="Change some of a project's settings (staff with change_project)", **STAFF_WRITE
    ),
    destroy=extend_schema(
        summary="Delete a project and all its data (staff with delete_project)",
        responses={204: None, 409: ErrorSerializer},
    ),
)
class ProjectViewSet(viewsets.ModelViewSet):
    """Annotators read the active projects; staff with the model permissions create, change and delete."""

    staff_permissions = {
        "create": ("annotation.add_project",),
        "update": ("annotation.change_project",),
        "partial_update": ("annotation.change_project",),
        "destroy": ("annotation.delete_project",),
    }

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return [IsAuthenticated()]
        return [StaffWithPermissions()]

    def _sees_every_project(self) -> bool:
        # As the admin: viewing takes the view or the change permission.
        user = self.request.user
        return user.is_staff and (
            user.has_perm("annotation.view_project") or user.has_perm("annotation.change_project")
        )

    def get_queryset(self):
        if self._sees_every_project() or self.action not in {"list", "retrieve"}:
            # An aggregate drops Meta.ordering, so the name order is asked for again (pages need one).
            return Project.objects.annotate(item_count=Count("items")).order_by("name", "id")
        return Project.objects.filter(is_active=True)

    def get_serializer_class(self):
        if self._sees_every_project() or self.action not in {"list", "retrieve"}:
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


class ItemQuerySerializer(ProjectQuerySerializer):
    external_id = serializers.CharField(
        required=False, max_length=Item._meta.get_field("external_id").max_length, help_text="Only this item."
    )


@extend_schema_view(
    list=extend_schema(
        summary="Items with their answers (staff with view_item)", parameters=[ItemQuerySerializer]
    ),
    retrieve=extend_schema(summary="One item with its answers (staff with view_item)"),
)
class ItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Items with their answers, filterable by `?project=ID` and `?external_id=`."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"list": ("annotation.view_item",), "retrieve": ("annotation.view_item",)}
    serializer_class = ItemSerializer

    def get_queryset(self):
        queryset = Item.objects.prefetch_related(
            Prefetch("answers", queryset=Answer.objects.order_by("position"))
        )
        if self.action == "list":
            queryset = project_filter(queryset, self.request)
            external_id = query_validated(ItemQuerySerializer, self.request).get("external_id")
            if external_id:
                queryset = queryset.filter(external_id=external_id)
        return queryset.order_by("id")
