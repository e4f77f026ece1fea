"""Guards of the server-rendered pages both apps serve, and the page a locked-out sign-in gets."""

import functools
import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render


def staff_only(view):
    """Signed-out visitors are sent to log in; signed-in annotators are refused outright (403)."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("This page is for staff only.")
        return view(request, *args, **kwargs)

    return wrapped


def mail_configured(view):
    """A page that sends mail (password reset) exists only where mail can be sent (PASSWORD_RESET_ENABLED).

    Without a mail server the reset form would say "sent" while the send fails and is only logged.
    """

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not settings.PASSWORD_RESET_ENABLED:
            raise Http404("Password reset needs a mail server, and none is configured (EMAIL_HOST).")
        return view(request, *args, **kwargs)

    return wrapped


def login_locked_out(request, original_response=None, credentials=None) -> HttpResponse:
    """What django-axes answers a sign-in while its username and address are locked out (429)."""
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "registration/locked_out.html", context, status=429)


def client_address(request) -> str | None:
    """The address a request came from, for the sign-in throttle (django-axes).

    REMOTE_ADDR, unless the site runs behind TRUSTED_PROXY_COUNT proxies of its own: each appends the
    address it received from to X-Forwarded-For, so the client is that many entries from the right. A
    client can write entries to the left, never those; a header with fewer entries, or an entry that is
    not an address, leaves REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote
