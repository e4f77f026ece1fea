"""Reads: plain functions that return querysets or values, never write."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from .models import Project


def project_list_for_annotator(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Active projects with how many items each holds and how many this user ranked."""
    return Project.objects.filter(is_active=True).annotate(
        item_count=Count("items", distinct=True),
        my_ranking_count=Count("items__rankings", filter=Q(items__rankings__annotator=user), distinct=True),
    )
