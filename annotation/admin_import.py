"""The admin's "Import data" page on a project: upload a file, import it all or nothing."""

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from .imports import ImportFailed, import_upload
from .models import ImportBatch

FORMAT_CHOICES = [("auto", "Detect from the file"), *ImportBatch.Format.choices]


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .jsonl or .jsonl.gz file.")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, initial="auto")


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
            batch = import_upload(
                upload=form.cleaned_data["file"],
                project=project,
                format=form.cleaned_data["format"],
                user=request.user,
            )
        except ImportFailed as exc:
            form.add_error("file", f"{exc} — nothing was imported.")
        else:
            messages.success(
                request,
                f"Imported {batch.file_name} ({batch.summary()}).",
            )
            return redirect("admin:annotation_project_change", project.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Import data into {project}",
        "opts": model_admin.opts,
        "original": project,
        "form": form,
        "formats": FORMAT_CHOICES[1:],
    }
    return TemplateResponse(request, "admin/annotation/project/import.html", context)
