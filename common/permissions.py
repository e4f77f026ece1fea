"""Who may call which part of the API."""

from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    """Staff only: project owners and admins."""

    message = "This endpoint is for staff only."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
