"""The admin's "Import data" page on a project: upload a file, import it all or nothing.

A large file is queued for a Celery worker instead (see annotation.imports): the page says so and links
to the job, where its outcome appears.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from .imports import ImportFailed, ImportQueueUnavailable, import_upload_or_queue
from .models import ImportBatch, ImportJob


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .jsonl or .jsonl.gz file.")
    format = forms.ChoiceField(choices=ImportJob.FORMAT_CHOICES, initial="auto")
    background = forms.BooleanField(
        required=False,
        label="Import in the background",
        help_text="Large files are always imported in the background.",
    )
    gold = forms.BooleanField(
        required=False,
        label="Gold items",
        help_text="Each row's ranking, of all its answers, becomes its item's known ranking: the items are "
        "mixed into annotators' work to measure them, and left out of exports.",
    )


def project_import_view(model_admin, request, object_id: str):
    """Show the upload form for one project and run the import it posts."""
    project = model_admin.get_object(request, unquote(object_id))
    if project is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not model_admin.has_change_permission(request, project):
        raise PermissionDenied
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            imported = import_upload_or_queue(
                upload=form.cleaned_data["file"],
                project=project,
                format=form.cleaned_data["format"],
                user=request.user,
                background=form.cleaned_data["background"],
                gold=form.cleaned_data["gold"],
            )
        except ImportFailed as exc:
            form.add_error("file", f"{exc} — nothing was imported.")
        except ImportQueueUnavailable as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _imported_message(request, imported))
            return redirect("admin:annotation_project_change", project.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Import data into {project}",
        "opts": model_admin.opts,
        "original": project,
        "form": form,
        "formats": ImportJob.FORMAT_CHOICES[1:],
        "inline_max_mb": round(settings.IMPORT_INLINE_MAX_BYTES / 1024 / 1024, 1),
    }
    return TemplateResponse(request, "admin/annotation/project/import.html", context)


def _imported_message(request, imported: ImportBatch | ImportJob) -> str:
    if isinstance(imported, ImportBatch):
        return f"Imported {imported.file_name} ({imported.summary()})."
    if not request.user.has_perm("annotation.view_importjob"):
        return f"Queued {imported.file_name} for import in the background."
    return format_html(
        'Queued {} for import in the background: <a href="{}">follow its import job</a>.',
        imported.file_name,
        reverse("admin:annotation_importjob_change", args=[imported.pk]),
    )
