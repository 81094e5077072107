"""Tracked Django models (stratacache.django.models): a row's change
invalidates the entries tagged with it, in Redis and every L1, once its
transaction commits, and never when it rolls back. Real SQLite database,
real Redis (the "tiered" alias)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from stratacache.django.models import TrackedQuerySet, model_tag, row_tags, track, tracked
from tracked_app.models import Author, AuthorProxy, Book, Label, Writer

cache = caches["tiered"]


@pytest.fixture(scope="module", autouse=True)
def tables() -> Iterator[None]:
    with connection.schema_editor() as editor:
        for m in (Author, Writer, Label, Book):
            editor.create_model(m)
    yield
    with connection.schema_editor() as editor:
        for m in (Book, Label, Writer, Author):
            editor.delete_model(m)


@pytest.fixture(autouse=True)
def empty() -> None:
    Book.objects.all().delete()
    Writer.objects.all().delete()
    Author.objects.all().delete()
    Label.objects.all().delete()


def cached(key: str, tags: list[str]) -> str:
    """Cache a value under `key` with `tags`; the key is the value."""
    cache.set(key, key, 300, tags=tags)
    assert cache.get(key) == key
    return key


def alive(*keys: str) -> set[str]:
    return {k for k in keys if cache.get(k) is not None}


def test_tags_of_rows_and_models() -> None:
    a = Author.objects.create(name="Ada")
    b = Book.objects.create(title="Notes", author=a)
    assert model_tag(Book) == model_tag(b) == "model:tracked_app.Book"
    assert row_tags(b) == [f"model:tracked_app.Book:{b.pk}", "model:tracked_app.Book:*"]
    assert tracked(Book) and tracked(Author) and not tracked(Label)
    with pytest.raises(ValueError, match="primary key"):
        row_tags(Book(title="unsaved", author=a))
    with pytest.raises(TypeError):
        track(object)  # type: ignore[type-var]
    # Tags nothing would invalidate, and misuse, are errors that say so.
    with pytest.raises(TypeError, match="not tracked"):
        row_tags(Label.objects.create(name="x"))
    with pytest.raises(TypeError, match="not tracked"):
        model_tag(Label)
    with pytest.raises(TypeError, match="model class or instance"):
        model_tag("tracked_app.Book")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a model instance"):
        row_tags(Book)  # type: ignore[arg-type]
    with pytest.raises(ImproperlyConfigured, match="no such alias"):
        track(Label, cache="nope")
    assert not tracked(Label)


def test_a_save_invalidates_its_row_and_the_model_not_other_rows() -> None:
    a = Author.objects.create(name="Ada")
    b1 = Book.objects.create(title="One", author=a)
    b2 = Book.objects.create(title="Two", author=a)
    one, two, listing = cached("b1", row_tags(b1)), cached("b2", row_tags(b2)), cached("books", [model_tag(Book)])
    b1.title = "One, revised"
    b1.save()
    assert alive(one, two, listing) == {two}
    # A new row changes every listing of the model.
    listing = cached("books", [model_tag(Book)])
    Book.objects.create(title="Three", author=a)
    assert alive(two, listing) == {two}


def test_inside_a_transaction_only_the_commit_invalidates() -> None:
    a = Author.objects.create(name="Ada")
    entry = cached("a", row_tags(a))
    with transaction.atomic():
        a.name = "Ada L."
        a.save()
        assert alive(entry) == {entry}, "not before the commit"
    assert alive(entry) == set(), "sent before atomic() returned"


def test_a_rolled_back_transaction_or_savepoint_invalidates_nothing() -> None:
    a = Author.objects.create(name="Ada")
    b = Author.objects.create(name="Bob")
    ea, eb = cached("a", row_tags(a)), cached("b", row_tags(b))

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        a.name = "never"
        a.save()
        raise Abort
    assert alive(ea, eb) == {ea, eb}
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint, rolled back
                a.name = "never either"
                a.save()
                raise Abort
        except Abort:
            pass
        b.name = "Bob B."
        b.save()
    assert alive(ea, eb) == {ea}


def test_deletes_one_row_or_a_queryset() -> None:
    a = Author.objects.create(name="Ada")
    b1 = Book.objects.create(title="One", author=a)
    b2 = Book.objects.create(title="Two", author=a)
    b3 = Book.objects.create(title="Three", author=a)
    e1, e2, e3 = cached("b1", row_tags(b1)), cached("b2", row_tags(b2)), cached("b3", row_tags(b3))
    b1.delete()
    assert alive(e1, e2, e3) == {e2, e3}
    Book.objects.filter(pk=b2.pk).delete()
    assert alive(e2, e3) == {e3}


def test_update_and_bulk_operations_of_a_tracked_queryset() -> None:
    a = Author.objects.create(name="Ada")
    books = [Book.objects.create(title=f"B{i}", author=a) for i in range(3)]
    entries = [cached(f"b{i}", row_tags(b)) for i, b in enumerate(books)]
    other = cached("author", row_tags(a))
    # update() names no rows: every row entry of the model goes.
    assert Book.objects.filter(pk=books[0].pk).update(title="U") == 1
    assert alive(*entries, other) == {other}
    entries = [cached(f"b{i}", row_tags(b)) for i, b in enumerate(books)]
    books[1].title = "bulk"
    Book.objects.bulk_update([books[1]], ["title"])
    assert alive(*entries) == {entries[0], entries[2]}
    listing = cached("books", [model_tag(Book)])
    Book.objects.bulk_create([Book(title="new", author=a)])
    assert alive(listing, entries[0]) == {entries[0]}
    # Nothing changed, nothing sent: an update matching no row.
    assert Book.objects.filter(pk=-1).update(title="none") == 0
    assert alive(entries[0]) == {entries[0]}
    assert isinstance(Book.objects.all(), TrackedQuerySet)


def test_many_to_many_changes_invalidate_both_sides() -> None:
    a = Author.objects.create(name="Ada")
    b = Book.objects.create(title="One", author=a)
    x, y = Label.objects.create(name="x"), Label.objects.create(name="y")
    book = cached("book", row_tags(b))
    label_x = cached("x", [f"model:tracked_app.Label:{x.pk}"])
    label_y = cached("y", [f"model:tracked_app.Label:{y.pk}"])
    b.labels.add(x)
    assert alive(book, label_x, label_y) == {label_y}
    book, label_x = cached("book", row_tags(b)), cached("x", [f"model:tracked_app.Label:{x.pk}"])
    y.book_set.add(b)  # from the other side
    assert alive(book, label_x, label_y) == {label_x}
    book = cached("book", row_tags(b))
    every_label = cached("labels", ["model:tracked_app.Label:*"])
    b.labels.clear()
    assert alive(book, every_label) == set()


def test_custom_tags_and_async_saves() -> None:
    a = Author.objects.create(name="Ada")
    b = Book.objects.create(title="One", author=a)
    by_author = cached("by-author", [f"author:{a.pk}"])

    async def rename() -> None:
        b.title = "One, async"
        await b.asave()

    asyncio.run(rename())
    assert alive(by_author) == set(), "the model's own tags went with the row"


def test_a_value_loaded_after_an_uncommitted_write_is_not_stored_for_others() -> None:
    a = Author.objects.create(name="Ada")
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        return Author.objects.get(pk=a.pk).name

    assert cache.get_or_set("author", load, 300, tags=row_tags(a)) == "Ada"
    with transaction.atomic():
        a.name = "Ada (draft)"
        a.save()
        # The cache is left out: the entry stored before the write is not
        # served, and what this transaction loads is not stored.
        assert cache.get_or_set("author", load, 300, tags=row_tags(a)) == "Ada (draft)"
        assert cache.get("author") == "Ada", "not stored (the old entry goes at commit)"
        # Tags this transaction did not write are stored as usual.
        assert cache.get_or_set("other", lambda: "x", 300, tags=["model:tracked_app.Label"]) == "x"
        assert cache.get("other") == "x"
    assert calls == 2
    assert cache.get("author") is None, "the commit invalidated the old entry"
    # Committed: stored again.
    assert cache.get_or_set("author", load, 300, tags=row_tags(a)) == "Ada (draft)"
    assert cache.get("author") == "Ada (draft)" and calls == 3

    class Abort(Exception):
        pass

    # A rolled-back transaction leaves nothing pending behind it.
    with pytest.raises(Abort), transaction.atomic():
        a.save()
        raise Abort
    cache.delete("author")
    assert cache.get_or_set("author", load, 300, tags=row_tags(a)) == "Ada (draft)"
    assert cache.get("author") == "Ada (draft)"


def test_proxies_and_multi_table_subclasses_are_the_tracked_models_rows() -> None:
    a = Author.objects.create(name="Ada")
    proxy = AuthorProxy.objects.get(pk=a.pk)
    assert row_tags(proxy) == row_tags(a) and model_tag(AuthorProxy) == model_tag(Author)
    entry = cached("a", row_tags(a))
    proxy.name = "Ada via proxy"
    proxy.save()
    assert alive(entry) == set()
    entry = cached("a", row_tags(a))
    AuthorProxy.objects.filter(pk=a.pk).delete()
    assert alive(entry) == set(), "a queryset delete through the proxy"

    w = Writer.objects.create(name="Wanda", pen_name="W.")
    assert tracked(Writer) and row_tags(w) == [f"model:tracked_app.Author:{w.pk}", "model:tracked_app.Author:*"]
    as_author = cached("w", row_tags(Author.objects.get(pk=w.pk)))
    w.pen_name = "W. W."
    w.save()
    assert alive(as_author) == set(), "a subclass's save changes the parent's row"


def test_extra_tags_of_the_row_before_and_after_and_of_bulk_creates() -> None:
    a, b = Author.objects.create(name="Ada"), Author.objects.create(name="Bob")
    book = Book.objects.create(title="One", author=a)
    pages = cached("a-page", [f"author:{a.pk}"]), cached("b-page", [f"author:{b.pk}"])
    book.author = b
    book.save()
    assert alive(*pages) == set(), "the book left one author and joined another"
    pages = cached("a-page", [f"author:{a.pk}"]), cached("b-page", [f"author:{b.pk}"])
    Book.objects.bulk_create([Book(title="Two", author=a)])
    assert alive(*pages) == {pages[1]}
