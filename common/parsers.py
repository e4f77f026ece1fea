"""The API's body parsers, apart from `common.api`, which imports DRF's views (they read this setting)."""

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing a body over API_BODY_MAX_BYTES before reading it.

    DRF reads JSON from the request stream, not `request.body`, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    never applies to it; without this one request could make the parser build gigabytes of lists.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_BODY_MAX_BYTES
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and length.isascii() and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        return super().parse(stream, media_type, parser_context)
