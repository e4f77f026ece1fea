"""API pieces both apps use: the documented error body, the `?project=` filter and the exception handler."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from preferences.readers import ImportFailed

from .errors import Conflict, DomainError, Invalid, NotFound, Unavailable

# First match wins: an error may be of two kinds (an assignment error that is also "not found").
STATUS_OF_KIND = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Unavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (Conflict, status.HTTP_409_CONFLICT),
    (Invalid, status.HTTP_400_BAD_REQUEST),
)

PROJECT_PARAMETER = OpenApiParameter("project", OpenApiTypes.INT, description="Only this project's rows.")


class ErrorSerializer(serializers.Serializer):
    """The body of every error the services report: one sentence for the person who asked."""

    detail = serializers.CharField()


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus the services' errors: each kind of `DomainError` as its status, `{"detail"}`."""
    if isinstance(exc, ImportFailed):  # a file's FILE:LINE error (the readers know no Django)
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DomainError):
        code = next(
            (code for kind, code in STATUS_OF_KIND if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST
        )
        return Response({"detail": str(exc)}, status=code)
    return drf_exception_handler(exc, context)


def project_filter(queryset, request):
    """The rows of the project named by `?project=ID`, or all rows when it is absent."""
    project = request.query_params.get("project")
    if project:
        if not (project.isascii() and project.isdigit()):
            raise serializers.ValidationError({"project": "must be a project id"})
        queryset = queryset.filter(project_id=int(project))
    return queryset
