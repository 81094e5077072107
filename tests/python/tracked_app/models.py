from __future__ import annotations

from django.db import models

from stratacache.django.models import TrackedQuerySet, track


@track(cache="tiered")
class Author(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "tracked_app"


class AuthorProxy(Author):
    """Saves and deletes through a proxy are the tracked model's."""

    class Meta:
        app_label = "tracked_app"
        proxy = True


class Writer(Author):
    """Multi-table inheritance: a Writer's row is an Author's row too."""

    pen_name = models.CharField(max_length=50)

    class Meta:
        app_label = "tracked_app"


class Label(models.Model):
    """Not tracked itself: reached through Book.labels."""

    name = models.CharField(max_length=50)

    class Meta:
        app_label = "tracked_app"


@track(tags=lambda b: [f"author:{b.author_id}"], cache="tiered")
class Book(models.Model):
    title = models.CharField(max_length=50)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    labels = models.ManyToManyField(Label)

    objects = TrackedQuerySet.as_manager()

    class Meta:
        app_label = "tracked_app"
