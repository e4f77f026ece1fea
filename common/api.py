"""API pieces both apps use: the documented error body, checked query strings and bounded lists, the
`?project=` filter, the exception handler and the schema hook that documents the errors every view can give.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
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
# The largest id PostgreSQL's bigint holds: a larger one in a filter would be a database error, not a 400.
MAX_ID = 2**63 - 1

PROJECT_PARAMETER = OpenApiParameter("project", OpenApiTypes.INT, description="Only this project's rows.")


class ErrorSerializer(serializers.Serializer):
    """The body of every error: one sentence for the person who asked, and each bad field for a form."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        required=False,
        help_text="Only when the body or query string failed validation: each field's messages.",
    )


class BoundedListField(serializers.ListField):
    """A ListField that refuses a list over `max_length` before validating a single element of it."""

    def to_internal_value(self, data):
        if isinstance(data, list) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


def first_error(errors: Any) -> str:
    """DRF's nested `{"field": ["message"]}` as one line, `field: message`, for people and simple clients."""
    if isinstance(errors, dict) and errors:
        field, nested = next(iter(errors.items()))
        message = first_error(nested)
        named = field in ("non_field_errors", "detail") or message.startswith(f"{field} ")
        return message if named else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return first_error(errors[0])
    return str(errors)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus the services' errors: each kind of `DomainError` as its status, `{"detail"}`.

    A failed validation answers the documented body too: the first problem as `detail`, and every field's
    messages under `errors` (DRF alone would answer `{"field": [...]}`, a shape of its own).
    """
    if isinstance(exc, ImportFailed):  # a file's FILE:LINE error (the readers know no Django)
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DomainError):
        code = next(
            (code for kind, code in STATUS_OF_KIND if isinstance(exc, kind)), status.HTTP_400_BAD_REQUEST
        )
        return Response({"detail": str(exc)}, status=code)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"detail": first_error(errors), "errors": errors}
    return response


def query_validated(serializer_class: type[serializers.Serializer], request) -> dict[str, Any]:
    """The query string as `serializer_class` reads it; a bad parameter is a 400 that names it."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ProjectQuerySerializer(serializers.Serializer):
    project = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this project's rows."
    )


def project_filter(queryset, request):
    """The rows of the project named by `?project=ID`, or all rows when it is absent."""
    project = query_validated(ProjectQuerySerializer, request).get("project")
    if project is not None:
        queryset = queryset.filter(project_id=project)
    return queryset


# The errors any operation may answer, by what the operation has; each is the ErrorSerializer body.
ERROR_RESPONSES = {
    "400": "The request is invalid: `detail` says what is wrong; for a bad body or query, `errors` names "
    "each field.",
    "403": "Not signed in, or not allowed: annotators reach only their own work, staff need the model "
    "permission the admin would ask for.",
    "404": "No such object, or not yours to see (an inactive project, to annotators).",
    "413": "The request body is larger than API_BODY_MAX_BYTES.",
}


def document_error_responses(result: dict, generator, request, public) -> dict:
    """Schema hook: every operation documents the errors it can answer, with the one error body.

    400 where it takes a body or query parameters, 403 where it needs a user, 404 where its path names an
    object (or a page), 413 where it takes a JSON body. What a view documents itself is left as it is.
    """
    error = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = operation.get("parameters", [])
            body = operation.get("requestBody", {}).get("content", {})
            codes = []
            if body or any(p["in"] == "query" and p["name"] != "page" for p in parameters):
                codes.append("400")
            if {} not in operation.get("security", [{}]):
                codes.append("403")
            if any(p["in"] == "path" or p["name"] == "page" for p in parameters):
                codes.append("404")
            if "application/json" in body:
                codes.append("413")
            for code in codes:
                operation["responses"].setdefault(
                    code,
                    {
                        "content": {"application/json": {"schema": error}},
                        "description": ERROR_RESPONSES[code],
                    },
                )
    return result
