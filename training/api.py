"""REST API for training runs, reward-model versions and scoring (staff with the model permissions)."""

from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Project
from annotation.projects import TrainingArgumentsInvalid, training_arguments_validate
from common.api import (
    BoundedListField,
    ErrorSerializer,
    ProjectQuerySerializer,
    project_filter,
    query_validated,
)
from common.permissions import StaffWithPermissions

from . import registry, runs
from .artifacts import directory_archive_stream
from .models import RewardModel, TrainingRun
from .scoring import answers_score


class TrainingRunSerializer(serializers.ModelSerializer):
    progress_percent = serializers.IntegerField(read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    reward_model = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "trigger",
            "status",
            "created_by",
            "retry_of",
            "export_snapshot",
            "arguments",
            "train_row_count",
            "eval_row_count",
            "step",
            "total_steps",
            "epoch",
            "progress_percent",
            "loss_history",
            "eval_metrics",
            "result_metrics",
            "log_tail",
            "error",
            "worker_hostname",
            "cancel_requested_at",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "duration_seconds",
            "reward_model",
        ]
        read_only_fields = fields


class TrainingArgumentsField(serializers.DictField):
    """Training options, checked and typed by the service that reads them."""

    def to_internal_value(self, data):
        try:
            return training_arguments_validate(arguments=super().to_internal_value(data))
        except TrainingArgumentsInvalid as exc:
            raise serializers.ValidationError(str(exc)) from exc


class TrainingRunCreateSerializer(serializers.Serializer):
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    arguments = TrainingArgumentsField(
        required=False,
        default=dict,
        help_text="Overrides of the project's training_arguments: base_model, epochs, lr, max_length, "
        "batch_tokens, seed, eval_fraction.",
    )


class TrainingRunRetrySerializer(serializers.Serializer):
    arguments = TrainingArgumentsField(
        required=False, default=dict, help_text="Overrides, e.g. fewer epochs."
    )


class RewardModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RewardModel
        fields = [
            "id",
            "project",
            "version",
            "training_run",
            "base_model",
            "pairwise_accuracy",
            "eval_pairs",
            "metrics",
            "compared_with",
            "compared_accuracy",
            "is_active",
            "activated_at",
            "not_active_reason",
            "created_at",
        ]
        read_only_fields = fields


class TrainingRunQuerySerializer(ProjectQuerySerializer):
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices, required=False)


@extend_schema_view(
    list=extend_schema(
        summary="Training runs, newest first (staff with view_trainingrun)",
        parameters=[TrainingRunQuerySerializer],
    ),
    retrieve=extend_schema(summary="One training run with its live progress (staff with view_trainingrun)"),
)
class TrainingRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs: list, detail (poll it for progress), create, cancel and retry."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {
        "list": ("training.view_trainingrun",),
        "retrieve": ("training.view_trainingrun",),
        "create": ("training.add_trainingrun",),
        "retry": ("training.add_trainingrun",),  # it starts a new run
        "cancel": ("training.change_trainingrun",),
    }
    serializer_class = TrainingRunSerializer

    def get_queryset(self):
        queryset = TrainingRun.objects.select_related("reward_model")
        if self.action != "list":
            return queryset
        queryset = project_filter(queryset, self.request)
        run_status = query_validated(TrainingRunQuerySerializer, self.request).get("status")
        if run_status:
            queryset = queryset.filter(status=run_status)
        return queryset

    @extend_schema(
        summary="Start a training run (staff with add_trainingrun)",
        request=TrainingRunCreateSerializer,
        responses={
            201: TrainingRunSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid project or arguments."),
            409: OpenApiResponse(
                ErrorSerializer, description="A run of this project is already queued or running."
            ),
            503: OpenApiResponse(
                ErrorSerializer, description="The Celery broker is unreachable; nothing queued."
            ),
        },
    )
    def create(self, request):
        serializer = TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = runs.training_run_create(
            project=serializer.validated_data["project"],
            trigger=TrainingRun.Trigger.API,
            created_by=request.user,
            arguments=serializer.validated_data["arguments"],
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a queued or running run (staff with change_trainingrun)",
        request=None,
        responses={200: TrainingRunSerializer, 409: OpenApiResponse(ErrorSerializer)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = runs.training_run_cancel(run=self.get_object())
        return Response(TrainingRunSerializer(run).data)

    @extend_schema(
        summary="Start a new run with a failed or cancelled run's arguments (staff with add_trainingrun)",
        request=TrainingRunRetrySerializer,
        responses={201: TrainingRunSerializer, 409: ErrorSerializer, 503: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        run = self.get_object()
        serializer = TrainingRunRetrySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        new_run = runs.training_run_retry(
            run=run, created_by=request.user, arguments=serializer.validated_data["arguments"]
        )
        return Response(TrainingRunSerializer(new_run).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="Reward-model versions (staff with view_rewardmodel)", parameters=[ProjectQuerySerializer]
    ),
    retrieve=extend_schema(summary="One reward-model version (staff with view_rewardmodel)"),
)
class RewardModelViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions: list, detail, activate and download."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {
        "list": ("training.view_rewardmodel",),
        "retrieve": ("training.view_rewardmodel",),
        "download": ("training.view_rewardmodel",),
        "activate": ("training.change_rewardmodel",),
    }
    serializer_class = RewardModelSerializer

    def get_queryset(self):
        if self.action != "list":
            return RewardModel.objects.all()
        return project_filter(RewardModel.objects.all(), self.request)

    @extend_schema(
        summary="Make this version the project's active model (staff with change_rewardmodel)", request=None
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        reward_model = registry.reward_model_activate(reward_model=self.get_object())
        return Response(RewardModelSerializer(reward_model).data)

    @extend_schema(
        summary="Download the model directory as a .tar.gz archive (staff with view_rewardmodel)",
        responses={(200, "application/gzip"): OpenApiTypes.BINARY, 404: ErrorSerializer},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        reward_model = self.get_object()
        return reward_model_archive_response(reward_model)


def reward_model_archive_response(reward_model: RewardModel):
    """A streamed .tar.gz of the model's directory, or Http404 when the artifact is gone."""
    name = f"rewardlab-project{reward_model.project_id}-v{reward_model.version}"
    try:
        stream = directory_archive_stream(directory=reward_model.artifact_path, root_name=name)
    except FileNotFoundError:
        # Http404 serves the staff page and the API alike (DRF answers it as {"detail": ...}).
        raise Http404("The model's files are no longer on disk.") from None
    response = StreamingHttpResponse(stream, content_type="application/gzip")
    response["Content-Disposition"] = f'attachment; filename="{name}.tar.gz"'
    return response


# What one score request may hold; the body as a whole is bounded by API_BODY_MAX_BYTES.
SCORE_MAX_TURNS = 1000
SCORE_MAX_ANSWERS = 256


class TurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        ]
    }
)
class ScoreAnswerField(serializers.Field):
    """An answer as a string or as {"text": ...}; checked as a CharField is (no NUL, no lone surrogate)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            data = data.get("text")
        if not isinstance(data, str):
            raise serializers.ValidationError('Each answer is a string or {"text": "..."}.')
        return serializers.CharField(allow_blank=True, trim_whitespace=False).run_validation(data)

    def to_representation(self, value):
        return value


class ScoreRequestSerializer(serializers.Serializer):
    conversation = TurnSerializer(many=True, allow_empty=False, max_length=SCORE_MAX_TURNS)
    answers = BoundedListField(child=ScoreAnswerField(), allow_empty=False, max_length=SCORE_MAX_ANSWERS)


class ScoreResponseSerializer(serializers.Serializer):
    reward_model = serializers.IntegerField()
    version = serializers.IntegerField()
    rewards = serializers.ListField(child=serializers.FloatField())


class ProjectScoreView(APIView):
    """Each answer's reward from the project's active model."""

    permission_classes = [StaffWithPermissions]
    staff_permissions = {"post": ("training.view_rewardmodel",)}

    @extend_schema(
        operation_id="project_score",
        summary="Score answers with the active reward model (staff with view_rewardmodel)",
        request=ScoreRequestSerializer,
        responses={
            200: ScoreResponseSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="No active model, or its files are gone from the disk."
            ),
        },
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        serializer = ScoreRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reward_model, rewards = answers_score(
            project=project,
            conversation=[dict(turn) for turn in serializer.validated_data["conversation"]],
            answers=serializer.validated_data["answers"],
        )
        return Response(
            {"reward_model": reward_model.pk, "version": reward_model.version, "rewards": rewards}
        )
