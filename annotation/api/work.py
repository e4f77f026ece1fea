"""The annotator's work loop: take the next item, submit a ranking or skip it, see progress.

The ranking page uses these endpoints with session auth and CSRF; people who bring their own UI use
them with a token. Every error is `{"detail": "<message the page shows>"}`.
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import MAX_ID, BoundedListField, ErrorSerializer

from ..assignment import COMMENT_MAX_LENGTH, assignment_next, assignment_skip, ranking_submit
from ..item_html import item_rendering
from ..markdown import render_markdown
from ..models import Assignment, Project
from ..progress import annotator_progress
from ..projects import MAX_FLAG_LABEL, MAX_FLAG_LABELS

NO_MORE_WORK = "No more items to rank in this project. Thank you!"
NO_SUCH_PROJECT = "This project does not exist or is paused."
SECONDS_SPENT_MAX = 7 * 24 * 3600  # a lease lasts minutes; more than a week is a broken clock


class ProgressSerializer(serializers.Serializer):
    mine_today = serializers.IntegerField(help_text="Rankings this annotator submitted in the project today.")
    mine_total = serializers.IntegerField(help_text="Rankings this annotator submitted in the project.")
    project_done = serializers.IntegerField(
        help_text="Rankings collected towards the goal (at most rankings_per_item per item); "
        "refreshed every few seconds."
    )
    project_wanted = serializers.IntegerField(help_text="Items × rankings_per_item: the goal.")


class TurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True)
    html = serializers.CharField(allow_blank=True, help_text="content rendered from Markdown and sanitised.")


class WorkAnswerSerializer(serializers.Serializer):
    # No model name: annotators rank blind, so that a model's reputation cannot sway the order.
    id = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True, help_text="Untrusted Markdown: render it sanitised.")
    html = serializers.CharField(
        allow_blank=True,
        help_text="text rendered from Markdown and sanitised: raw HTML shows as text, nothing can run.",
    )


class WorkProjectSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    allow_ties = serializers.BooleanField()
    flag_labels = serializers.ListField(child=serializers.CharField())
    guidelines_html = serializers.CharField(allow_blank=True, help_text="The guidelines as sanitised HTML.")


class WorkAssignmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField(help_text="After this the lease lapses and submit is refused.")
    conversation = TurnSerializer(many=True)
    answers = WorkAnswerSerializer(many=True, help_text="In this lease's shuffled order, stable on reload.")
    project = WorkProjectSerializer()


class NextResponseSerializer(serializers.Serializer):
    assignment = WorkAssignmentSerializer(allow_null=True, help_text="null when there is no work for you.")
    progress = ProgressSerializer()
    message = serializers.CharField(required=False, help_text="Present when assignment is null.")


class SubmitRequestSerializer(serializers.Serializer):
    """A ranking, bounded before anything is built from it: at most as many places and ids as an item
    can have answers (the service then holds it to the assignment's own answers, each exactly once)."""

    order = BoundedListField(
        child=BoundedListField(
            child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
            allow_empty=False,
            max_length=settings.ITEM_MAX_ANSWERS,
        ),
        max_length=settings.ITEM_MAX_ANSWERS,
        help_text="Best first; each place is a tie group of answer ids: [[12], [14, 15], [13]]. "
        "May be empty when not_rankable is true.",
    )
    not_rankable = serializers.BooleanField(default=False, help_text="None of the answers is acceptable.")
    flags = serializers.DictField(
        child=BoundedListField(
            child=serializers.CharField(max_length=MAX_FLAG_LABEL), max_length=MAX_FLAG_LABELS
        ),
        default=dict,
        help_text='{"<answer_id>": ["spam", ...]}, labels from the project\'s flag_labels.',
    )
    comment = serializers.CharField(
        default="", allow_blank=True, trim_whitespace=False, max_length=COMMENT_MAX_LENGTH
    )
    seconds_spent = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=SECONDS_SPENT_MAX
    )

    def validate_order(self, order):
        if sum(len(group) for group in order) > settings.ITEM_MAX_ANSWERS:
            raise serializers.ValidationError(
                f"An item has at most {settings.ITEM_MAX_ANSWERS} answers to rank."
            )
        return order

    def validate_flags(self, flags):
        if len(flags) > settings.ITEM_MAX_ANSWERS:
            raise serializers.ValidationError(
                f"An item has at most {settings.ITEM_MAX_ANSWERS} answers to flag."
            )
        return flags


class SubmitResponseSerializer(serializers.Serializer):
    ranking_id = serializers.IntegerField()
    assignment_id = serializers.IntegerField()
    created = serializers.BooleanField(help_text="false when this repeats an earlier submit of the lease.")


class SkipResponseSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField()
    status = serializers.CharField()


def _assignment_payload(assignment: Assignment, project: Project) -> dict:
    # Built as plain data in the shape of WorkAssignmentSerializer (which documents it and which the
    # tests hold it to): "next" is the hottest call, and walking the nested serializers cost more CPU
    # than the queries behind it. A lease made just now comes with its item and answers loaded.
    item = assignment.item
    answers = {answer.pk: answer for answer in item.answers.all()}
    shown = [answers[answer_id] for answer_id in assignment.answer_order if answer_id in answers]
    rendered = item_rendering(item, shown)
    return {
        "id": assignment.pk,
        "item_id": item.pk,
        "expires_at": assignment.expires_at,
        "conversation": [
            {"role": turn.get("role"), "content": turn.get("content", ""), "html": html}
            for turn, html in zip(item.conversation, rendered.turns, strict=True)
        ],
        "answers": [
            {"id": answer.pk, "text": answer.text, "html": rendered.answers[answer.pk]} for answer in shown
        ],
        "project": {
            "id": project.pk,
            "name": project.name,
            "allow_ties": project.allow_ties,
            "flag_labels": list(project.flag_labels or []),
            "guidelines_html": render_markdown(project.guidelines),
        },
    }


def _active_project(project_id: int) -> Project:
    # Inactive projects are invisible to the work loop, as to the ranking page: 404, not "paused".
    project = Project.objects.filter(pk=project_id, is_active=True).first()
    if project is None:
        raise NotFound(NO_SUCH_PROJECT)
    return project


class NextAssignmentView(APIView):
    """Lease the next item to rank in the project (or get your open lease back)."""

    @extend_schema(
        operation_id="assignment_next",
        summary="Take the next item to rank",
        description="POST because it creates a lease. While your lease is open it returns the same "
        "assignment with the same answer order. `assignment` is null (with a `message`) when there is no "
        "work for you in this project.",
        request=None,
        responses={200: NextResponseSerializer, 404: ErrorSerializer},
    )
    def post(self, request, project_id: int):
        project = _active_project(project_id)
        assignment = assignment_next(annotator=request.user, project=project)
        progress = annotator_progress(annotator=request.user, project=project)
        if assignment is None:
            return Response({"assignment": None, "progress": progress, "message": NO_MORE_WORK})
        return Response({"assignment": _assignment_payload(assignment, project), "progress": progress})


class SubmitView(APIView):
    """Submit the ranking for one of your open leases."""

    @extend_schema(
        operation_id="assignment_submit",
        summary="Submit a ranking",
        description="The order must name every answer of the assignment exactly once (tie groups only "
        "when the project allows ties). Submitting the same lease again returns the first result "
        "with 200 and `created: false`.",
        request=SubmitRequestSerializer,
        responses={
            201: SubmitResponseSerializer,
            200: OpenApiResponse(SubmitResponseSerializer, description="Repeat of an earlier submit."),
            400: OpenApiResponse(ErrorSerializer, description="The ranking does not fit the item."),
            404: OpenApiResponse(ErrorSerializer, description="No such assignment, or not yours."),
            409: OpenApiResponse(ErrorSerializer, description="The lease expired or was skipped."),
        },
    )
    def post(self, request, assignment_id: int):
        serializer = SubmitRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ranking, created = ranking_submit(
            assignment_id=assignment_id, annotator=request.user, **serializer.validated_data
        )
        body = {"ranking_id": ranking.pk, "assignment_id": assignment_id, "created": created}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SkipView(APIView):
    """Give an item back without ranking it; it is not offered to you again."""

    @extend_schema(
        operation_id="assignment_skip",
        summary="Skip an item",
        request=None,
        responses={
            200: SkipResponseSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such assignment, or not yours."),
            409: OpenApiResponse(ErrorSerializer, description="Already ranked."),
        },
    )
    def post(self, request, assignment_id: int):
        assignment = assignment_skip(assignment_id=assignment_id, annotator=request.user)
        return Response({"assignment_id": assignment.pk, "status": assignment.status})


class ProgressView(APIView):
    """Your progress and the project's."""

    @extend_schema(
        operation_id="project_progress",
        summary="Progress in a project",
        responses={200: ProgressSerializer, 404: ErrorSerializer},
    )
    def get(self, request, project_id: int):
        project = _active_project(project_id)
        return Response(annotator_progress(annotator=request.user, project=project))
