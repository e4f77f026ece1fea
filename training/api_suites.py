"""REST API for evaluation suites (staff with the EvaluationSuite permissions): list, upload, rule, delete.

The same services as the suites page (`training.suites`): a file the readers refuse answers 400 with its
`FILE:LINE: why` and nothing is stored; a name the project already uses answers 409.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from annotation.models import Project
from common.api import ErrorSerializer, ProjectQuerySerializer, project_filter
from common.permissions import StaffWithPermissions

from . import suites
from .models import EvaluationSuite, SuiteResult

# The newest versions whose figures one suite's detail lists; older ones stay on the versions page.
SUITE_RESULTS_SHOWN = 50


class EvaluationSuiteSerializer(serializers.ModelSerializer):
    subsets = serializers.DictField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text="Rows per value of the file's `subset` field (the 200 commonest), {} when it has none.",
    )

    class Meta:
        model = EvaluationSuite
        fields = [
            "id",
            "project",
            "name",
            "file_name",
            "format",
            "sha256",
            "items",
            "pairs",
            "subsets",
            "holds_back_promotion",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "sha256": {"help_text": "SHA-256 of the file's bytes, as the engine reports it."},
            "items": {"help_text": "Items (prompts) the readers read from the file."},
            "pairs": {"help_text": "Preference pairs its rankings state: what each version is scored on."},
            "created_by": {"help_text": "The id of the user who uploaded it; null once that user is gone."},
        }


class SuiteResultSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="reward_model.version", read_only=True)
    subsets = serializers.SerializerMethodField(help_text="Pairwise accuracy per subset of the file.")

    class Meta:
        model = SuiteResult
        fields = ["reward_model", "version", "pairwise_accuracy", "pairs", "subsets", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "created_at": {
                "help_text": "When the figures were recorded: by the version's own run, or by a "
                "newer version's run that compared against it."
            },
        }

    @extend_schema_field(serializers.DictField(child=serializers.FloatField()))
    def get_subsets(self, result: SuiteResult) -> dict[str, float]:
        subsets = (result.figures or {}).get("subsets")
        if not isinstance(subsets, dict):
            return {}
        # The engine's figures are stored as it wrote them: keep only what is a number.
        return {
            str(name): accuracy
            for name, accuracy in subsets.items()
            if isinstance(accuracy, int | float) and not isinstance(accuracy, bool)
        }


class EvaluationSuiteDetailSerializer(EvaluationSuiteSerializer):
    results = serializers.SerializerMethodField(
        help_text=f"Each version's figures on this suite, newest version first (the {SUITE_RESULTS_SHOWN} "
        "newest that have some)."
    )

    class Meta(EvaluationSuiteSerializer.Meta):
        fields = [*EvaluationSuiteSerializer.Meta.fields, "results"]
        read_only_fields = fields

    @extend_schema_field(SuiteResultSerializer(many=True))
    def get_results(self, suite: EvaluationSuite) -> list[dict]:
        results = (
            SuiteResult.objects.filter(suite=suite)
            .select_related("reward_model")
            .order_by("-reward_model__version")[:SUITE_RESULTS_SHOWN]
        )
        return SuiteResultSerializer(results, many=True).data


class EvaluationSuiteCreateSerializer(serializers.Serializer):
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=f"At most {suites.SUITE_NAME_MAX} characters, unique in the project; the file's name when "
        "left out or blank, as on the suites page.",
    )
    file = serializers.FileField(
        help_text="Pairs (`prompt`, `chosen`, `rejected`, an optional `subset`) or ranked groups in any "
        f"import format (.jsonl, .jsonl.gz, .json, .parquet), at most {suites.SUITE_MAX_BYTES // 2**20} MB."
    )
    holds_back_promotion = serializers.BooleanField(
        default=False,
        help_text="A new version whose accuracy on this suite is below the active version's stays inactive.",
    )


class EvaluationSuiteUpdateSerializer(serializers.Serializer):
    holds_back_promotion = serializers.BooleanField(
        help_text="A new version whose accuracy on this suite is below the active version's stays inactive."
    )


@extend_schema_view(
    list=extend_schema(
        summary="Evaluation suites (staff with view_evaluationsuite)", parameters=[ProjectQuerySerializer]
    ),
    retrieve=extend_schema(
        summary="One evaluation suite with each version's figures on it (staff with view_evaluationsuite)",
        responses={200: EvaluationSuiteDetailSerializer},
    ),
)
class EvaluationSuiteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Suites: list, detail, upload, turn the promotion rule on or off, delete."""

    permission_classes = [StaffWithPermissions]
    # As the suites page's buttons ask (training/views.py).
    staff_permissions = {
        "list": ("training.view_evaluationsuite",),
        "retrieve": ("training.view_evaluationsuite",),
        "create": ("training.add_evaluationsuite",),
        "partial_update": ("training.change_evaluationsuite",),
        "destroy": ("training.delete_evaluationsuite",),
    }

    def get_queryset(self):
        if self.action != "list":
            return EvaluationSuite.objects.all()
        return project_filter(EvaluationSuite.objects.all(), self.request)  # by project, then name

    def get_serializer_class(self):
        return EvaluationSuiteSerializer if self.action == "list" else EvaluationSuiteDetailSerializer

    @extend_schema(
        summary="Upload an evaluation suite (staff with add_evaluationsuite)",
        request={"multipart/form-data": EvaluationSuiteCreateSerializer},
        responses={
            201: EvaluationSuiteDetailSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="A line the readers refuse (`FILE:LINE: why`), a file without a single pair, "
                "one too large, or a bad field; nothing is stored.",
            ),
            409: OpenApiResponse(ErrorSerializer, description="The project has a suite of that name."),
        },
    )
    def create(self, request):
        serializer = EvaluationSuiteCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        suite = suites.evaluation_suite_create(
            project=serializer.validated_data["project"],
            upload=upload,
            name=serializer.validated_data.get("name") or upload.name,
            holds_back_promotion=serializer.validated_data["holds_back_promotion"],
            created_by=request.user,
        )
        return Response(EvaluationSuiteDetailSerializer(suite).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Turn the suite's promotion rule on or off (staff with change_evaluationsuite)",
        request=EvaluationSuiteUpdateSerializer,
        responses={200: EvaluationSuiteDetailSerializer},
    )
    def partial_update(self, request, pk=None):
        suite = self.get_object()
        serializer = EvaluationSuiteUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suite = suites.evaluation_suite_update(
            suite=suite, holds_back_promotion=serializer.validated_data["holds_back_promotion"]
        )
        return Response(EvaluationSuiteDetailSerializer(suite).data)

    @extend_schema(
        summary="Delete the suite, its figures and its file (staff with delete_evaluationsuite)",
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        suites.evaluation_suite_delete(suite=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
