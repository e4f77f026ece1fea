"""Undo through the API: the annotator's own recent rankings, reopening one and sending its new version."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import ErrorSerializer

from ..models import Assignment, Ranking
from ..revisions import (
    RevisionWindowClosed,
    ranking_check_window,
    ranking_editable_until,
    ranking_own,
    ranking_revise,
    rankings_mine,
)
from .work import SubmitRequestSerializer, WorkProjectSerializer, _active_project, _assignment_payload


class MyRankingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    prompt = serializers.CharField(allow_blank=True, help_text="The start of the last user turn.")
    created_at = serializers.DateTimeField()
    editable_until = serializers.DateTimeField(
        allow_null=True, help_text="null: the project allows no changes."
    )
    revisions = serializers.IntegerField(help_text="How many times it was changed.")


class ReopenedRankingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    editable_until = serializers.DateTimeField(allow_null=True)
    conversation = serializers.ListField(child=serializers.DictField())
    answers = serializers.ListField(child=serializers.DictField(), help_text="In the order first shown.")
    order = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    not_rankable = serializers.BooleanField()
    flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    comment = serializers.CharField(allow_blank=True)
    project = WorkProjectSerializer()


class RevisedRankingSerializer(serializers.Serializer):
    ranking_id = serializers.IntegerField()
    revisions = serializers.IntegerField(help_text="How many earlier versions are kept.")


class MyRankingsView(APIView):
    """Your latest rankings in a project, newest first, with until when each can be changed."""

    @extend_schema(
        operation_id="rankings_mine",
        summary="My rankings",
        responses={200: MyRankingSerializer(many=True), 404: ErrorSerializer},
    )
    def get(self, request, project_id: int):
        project = _active_project(project_id)
        mine = rankings_mine(annotator=request.user, project=project)
        return Response(
            [
                {
                    "id": m.ranking.pk,
                    "item_id": m.ranking.item_id,
                    "prompt": m.prompt,
                    "created_at": m.ranking.created_at,
                    "editable_until": m.editable_until,
                    "revisions": m.revisions,
                }
                for m in mine
            ]
        )


def _reopened_payload(ranking: Ranking) -> dict:
    # The ranking with its item as the ranking page shows it: answers in the order its lease showed them.
    lease = Assignment.objects.filter(ranking=ranking).select_related("item").first()
    if lease is None:
        raise RevisionWindowClosed("This ranking was not made on the ranking page and cannot be reopened.")
    project = ranking.item.project
    shown = _assignment_payload(lease, project)
    return {
        "id": ranking.pk,
        "item_id": ranking.item_id,
        "editable_until": ranking_editable_until(ranking=ranking, project=project),
        "conversation": shown["conversation"],
        "answers": shown["answers"],
        "order": ranking.order,
        "not_rankable": ranking.not_rankable,
        "flags": ranking.flags,
        "comment": ranking.comment,
        "project": shown["project"],
    }


class ReopenRankingView(APIView):
    """One of your rankings as the ranking page shows it, to change it within the project's window."""

    @extend_schema(
        operation_id="ranking_reopen",
        summary="Reopen one of my rankings",
        responses={
            200: ReopenedRankingSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such ranking, or not yours."),
            409: OpenApiResponse(ErrorSerializer, description="The window to change it has closed."),
        },
    )
    def get(self, request, ranking_id: int):
        ranking = ranking_own(ranking_id=ranking_id, annotator=request.user)
        ranking_check_window(ranking=ranking)
        return Response(_reopened_payload(ranking))


class ReviseRankingView(APIView):
    """Send the new version of one of your rankings; the old one is kept in its history."""

    @extend_schema(
        operation_id="ranking_revise",
        summary="Change one of my rankings",
        description="The body is a submit's. The new version replaces the old one for exports, counters, "
        "consensus and training; the old one is kept as a revision.",
        request=SubmitRequestSerializer,
        responses={
            200: RevisedRankingSerializer,
            400: OpenApiResponse(ErrorSerializer, description="The ranking does not fit the item."),
            404: OpenApiResponse(ErrorSerializer, description="No such ranking, or not yours."),
            409: OpenApiResponse(ErrorSerializer, description="The window to change it has closed."),
        },
    )
    def post(self, request, ranking_id: int):
        serializer = SubmitRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ranking = ranking_revise(ranking_id=ranking_id, annotator=request.user, **serializer.validated_data)
        return Response({"ranking_id": ranking.pk, "revisions": ranking.revisions.count()})
