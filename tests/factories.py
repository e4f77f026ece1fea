"""factory_boy factories for the annotation models."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotation.models import Answer, ImportBatch, Item, Project, Ranking


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"annotator{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()

    @factory.post_generation
    def permissions(obj, create, extracted, **kwargs):
        """`permissions=["annotation.change_project", ...]`: the Django permissions this user holds."""
        for name in extracted or ():
            app_label, codename = name.split(".")
            obj.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


# Every permission the API and the staff pages ask of staff, each for the actions named beside it.
STAFF_PERMISSIONS = (
    "annotation.view_project",  # every project, with its staff-only settings; the staff home
    "annotation.add_project",
    "annotation.change_project",  # and importing into it
    "annotation.delete_project",
    "annotation.view_item",
    "annotation.view_importjob",
    "annotation.view_ranking",  # exports and agreement figures; progress, data, disputes, annotators pages
    "annotation.view_exportsnapshot",
    "training.view_trainingrun",  # and the training index and runs pages
    "training.add_trainingrun",  # start and retry runs
    "training.change_trainingrun",  # cancel them
    "training.view_rewardmodel",  # list, download and score with them; versions, compare, loop pages
    "training.change_rewardmodel",  # activate one
    "training.view_evaluationsuite",  # list them over the API and on the suites page
    "training.add_evaluationsuite",  # upload evaluation suites
    "training.change_evaluationsuite",  # turn a suite's promotion rule on or off
    "training.delete_evaluationsuite",
)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    guidelines = "Rank the most **helpful** and honest answer first."


class ItemFactory(factory.django.DjangoModelFactory):
    """An item with `answers` (default 3) candidate answers."""

    class Meta:
        model = Item
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    conversation = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])

    @factory.post_generation
    def answers(obj, create, extracted, **kwargs):
        if not create:
            return
        texts = extracted if isinstance(extracted, list) else [f"Answer {i}" for i in range(extracted or 3)]
        for position, text in enumerate(texts):
            Answer.objects.create(item=obj, project=obj.project, position=position, text=text)


class ImportBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImportBatch

    project = factory.SubFactory(ProjectFactory)
    file_name = "fixture.jsonl"
    format = ImportBatch.Format.RANKINGS


class RankingFactory(factory.django.DjangoModelFactory):
    """A person's ranking; by default the answers in their imported order, no ties."""

    class Meta:
        model = Ranking

    item = factory.SubFactory(ItemFactory)
    annotator = factory.SubFactory(UserFactory)
    order = factory.LazyAttribute(
        lambda ranking: [[answer.pk] for answer in ranking.item.answers.order_by("position")]
    )
