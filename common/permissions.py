"""Who may call which part of the API: staff, and for each staff action the permission the admin asks for."""

from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    """Staff only: project owners and admins."""

    message = "This endpoint is for staff only."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StaffWithPermissions(IsStaff):
    """Staff who also hold the Django model permissions the view names for this action, as in the admin.

    The view maps each action (a viewset's `list`, `create`, `activate`, ...) or, on a plain APIView, each
    HTTP method (`get`, `post`, ...) to the permissions it needs, all of them:
    `staff_permissions = {"post": ("annotation.change_project",)}`. An action it does not name is refused,
    so a new action is closed until someone decides who may use it. Superusers hold every permission.
    """

    message = "You do not have the permission this needs (ask an administrator, as in the admin)."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            self.message = IsStaff.message
            return False
        method = request.method.lower()
        if method == "options":
            return True  # the endpoint's description, no data
        key = getattr(view, "action", None) or ("get" if method == "head" else method)
        needed = view.staff_permissions.get(key)
        return needed is not None and request.user.has_perms(needed)
