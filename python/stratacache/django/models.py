"""Invalidate cache entries when Django model rows change, after commit.

Declare once which models the cache follows::

    from stratacache.django.models import TrackedQuerySet, model_tag, row_tags, track

    @track  # or track(Product, tags=lambda p: [f"category:{p.category_id}"], cache="default")
    class Product(models.Model):
        objects = TrackedQuerySet.as_manager()  # update() / bulk_* too (optional)

and tag what you cache with the rows and models it was built from::

    cache.set(f"product:{p.pk}", data, tags=row_tags(p))  # this row
    cache.set("products:top", page, tags=[model_tag(Product)])  # any row

The tags, for a model labelled ``shop.Product`` (``Model._meta.label``):

- ``model:shop.Product`` — any row changed, created or deleted: what a
  list, a count or a page of rows depends on;
- ``model:shop.Product:<pk>`` — that row changed or was deleted;
- ``model:shop.Product:*`` — rows changed that the cache cannot name
  (``QuerySet.update()``, ``bulk_create(update_conflicts=True)``):
  :func:`row_tags` puts it on every row entry beside the row's own tag;
- and whatever ``tags`` (given to :func:`track`) returns for the changed
  instance: e.g. ``author:<id>`` on a book, so that an author's page goes
  when any of their books changes.

What invalidates, in the cache alias given to :func:`track`:

- ``save()`` / ``asave()`` (``post_save``), ``delete()`` and
  ``QuerySet.delete()`` (``post_delete``, sent per row once a receiver
  exists), and ``m2m_changed`` (both sides of the relation);
- with :class:`TrackedQuerySet`: ``update()``, ``bulk_create()`` and
  ``bulk_update()``, which send no signals.

Every invalidation runs through ``transaction.on_commit`` on the
database the row was written to: inside an atomic block it is sent when
the outermost block commits (a rolled-back block, or a savepoint rolled
back inside one, sends nothing); outside one it is sent at once. Either
way it reaches Redis (and every process's L1 through the bus) before the
call that caused it returns, so a redirect after a POST never reads a
stale entry. Until then, the backend's ``get_or_set`` with ``tags`` that
the open transaction has changed leaves the cache out: it loads for its
caller alone (who sees the transaction's writes) and stores nothing, as
no one else may read uncommitted rows. A transaction under manual
management (``set_autocommit(False)``) invalidates at once: Django cannot
say when it commits. Writes that bypass the ORM (raw SQL, other services, psql)
are not seen here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import caches
from django.db import connections, models, router, transaction
from django.db.models.signals import class_prepared, m2m_changed, post_delete, post_save, pre_save

__all__ = ["TrackedQuerySet", "model_tag", "row_tags", "track", "tracked", "uncommitted"]

M = TypeVar("M", bound=type[models.Model])


@dataclass(frozen=True)
class _Tracking:
    cache: str
    extra: Callable[[Any], Iterable[str]] | None


_TRACKED: dict[type[models.Model], _Tracking] = {}
# Set while bulk_update runs: it updates through update(), but names its rows.
_ROWS_NAMED: ContextVar[bool] = ContextVar("stratacache_rows_named", default=False)


def model_tag(model: type[models.Model] | models.Model) -> str:
    """The tag of every row of ``model`` (a tracked model class or instance)."""
    cls = model if isinstance(model, type) else type(model)
    if not (isinstance(cls, type) and issubclass(cls, models.Model)):
        raise TypeError(f"model_tag() takes a Django model class or instance, not {model!r}")
    return f"model:{_tracked_label(cls)}"


def row_tags(instance: models.Model) -> list[str]:
    """The tags an entry built from ``instance`` (a row of a tracked model)
    carries: its row's, and the model's tag for rows the cache cannot name."""
    if not isinstance(instance, models.Model):
        raise TypeError(f"row_tags() takes a model instance (a row), not {instance!r}")
    if instance.pk is None:
        raise ValueError(f"{type(instance).__name__} has no primary key yet: save it first")
    label = _tracked_label(type(instance))
    return [f"model:{label}:{instance.pk}", f"model:{label}:*"]


def _tracked_label(model: type[models.Model]) -> str:
    """``_label`` of a tracked model: tags of an untracked one would never
    be invalidated, so asking for them is a mistake made loud."""
    if not _tracked_in(model):
        raise TypeError(
            f"{model._meta.label} is not tracked: its changes invalidate nothing; "
            "decorate it with @track (stratacache.django.models)"
        )
    return _label(model)


def tracked(model: type[models.Model]) -> bool:
    """Whether the rows of ``model`` (a tracked model, one of its proxies or
    a subclass through multi-table inheritance) are tracked."""
    return bool(_tracked_in(model))


def track(
    model: M | None = None,
    *,
    tags: Callable[[Any], Iterable[str]] | None = None,
    cache: str = "default",
) -> Any:
    """Invalidate the tags of ``model``'s rows (see the module) in cache
    alias ``cache`` whenever they change, through ``model``, its proxies
    and its multi-table subclasses. Use as ``@track``,
    ``@track(tags=..., cache=...)`` or ``track(Model, ...)``; ``tags``
    gives an instance's extra tags (computed from the row before and after
    a save: one more query per save of such a model)."""

    def register(m: M) -> M:
        if not (isinstance(m, type) and issubclass(m, models.Model)):
            raise TypeError(f"track() takes a Django model class, not {m!r}")
        if m._meta.abstract or m._meta.proxy:
            raise TypeError(f"track() takes a concrete model: {m.__name__} is abstract or a proxy")
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        if cache not in settings.CACHES:
            raise ImproperlyConfigured(
                f"track({m.__name__}, cache={cache!r}): no such alias in CACHES ({', '.join(settings.CACHES)})"
            )
        _TRACKED[m] = _Tracking(cache=cache, extra=tags)
        todo: list[type[models.Model]] = [m]
        while todo:  # subclasses defined so far; later ones: class_prepared
            c = todo.pop()
            _connect(c)
            todo.extend(c.__subclasses__())
        class_prepared.connect(_prepared, weak=False, dispatch_uid="stratacache.track:prepared")
        # Any relation's through model (auto-created ones may not exist
        # yet): the receiver looks at both sides.
        m2m_changed.connect(_m2m, weak=False, dispatch_uid="stratacache.track:m2m")
        return m

    if model is None:
        return register
    return register(model)


def _connect(model: type[models.Model]) -> None:
    """Receive ``model``'s save and delete signals (a proxy's and a
    subclass's are sent with their own class as the sender)."""
    if model._meta.abstract:
        return
    uid = f"stratacache.track:{model.__module__}.{model.__qualname__}"
    pre_save.connect(_saving, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(_saved, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(_saved, sender=model, weak=False, dispatch_uid=uid)


def _prepared(sender: type[models.Model], **_: Any) -> None:
    if _tracked_in(sender):
        _connect(sender)


def _concrete(model: type[models.Model]) -> type[models.Model]:
    return model._meta.concrete_model or model


def _tracked_in(model: type[models.Model]) -> list[tuple[type[models.Model], _Tracking]]:
    """The tracked models a row of ``model`` belongs to: its concrete model
    and the parents of a multi-table subclass."""
    concrete = _concrete(model)
    chain = [concrete, *concrete._meta.get_parent_list()]
    return [(m, _TRACKED[m]) for m in chain if m in _TRACKED]


def _label(model: type[models.Model]) -> str:
    """The label in tags: the first tracked model a row of ``model``
    belongs to, else its concrete model's."""
    found = _tracked_in(model)
    label: str = (found[0][0] if found else _concrete(model))._meta.label
    return label


def _instance_tags(instance: models.Model, m: type[models.Model], t: _Tracking) -> list[str]:
    """What a change of ``instance``'s row invalidates for tracked model
    ``m``: the model, the row, and the model's extra tags for it."""
    label = m._meta.label
    tags = [f"model:{label}", f"model:{label}:{instance.pk}"]
    if t.extra is not None:
        tags.extend(t.extra(instance))
    return tags


def _changed(instance: models.Model) -> list[tuple[str, list[str]]]:
    """Per cache alias, the tags a change of ``instance``'s row invalidates."""
    return [(t.cache, _instance_tags(instance, m, t)) for m, t in _tracked_in(type(instance))]


# Per thread (Django's connections are): database alias -> (the open
# transaction's outermost atomic block, the tags its writes will invalidate).
_pending = threading.local()


def _pending_tags() -> dict[str, tuple[int, set[str]]]:
    d: dict[str, tuple[int, set[str]]] | None = getattr(_pending, "by_db", None)
    if d is None:
        d = _pending.by_db = {}
    return d


def _outermost(using: str) -> int | None:
    conn = connections[using]
    if not conn.in_atomic_block or not conn.atomic_blocks:
        return None
    return id(conn.atomic_blocks[0])


def uncommitted(tags: Iterable[str]) -> bool:
    """Whether a transaction open in this thread wrote rows whose change
    will invalidate any of ``tags`` when it commits. (A write in a
    savepoint rolled back since still counts: erring towards not storing.)"""
    wanted = set(tags)
    for using, (outer, written) in list(_pending_tags().items()):
        if _outermost(using) == outer and written & wanted:
            return True
    return False


def _after_commit(using: str, cache: str, tags: Sequence[str]) -> None:
    """Invalidate ``tags`` once the current transaction on ``using`` commits
    (at once outside a transaction)."""
    if not tags:
        return
    wanted = list(dict.fromkeys(tags))
    conn = connections[using]
    outer = _outermost(using)
    if outer is not None:
        by_db = _pending_tags()
        if by_db.get(using, (None, set()))[0] != outer:
            by_db[using] = (outer, set())
        by_db[using][1].update(wanted)

    def send() -> None:
        _pending_tags().pop(using, None)
        # Not a stratacache alias (e.g. swapped for LocMem in a test): nothing to tell.
        invalidate = getattr(caches[cache], "invalidate_tags", None)
        if invalidate is not None:
            invalidate(wanted)

    if outer is None and not conn.get_autocommit():
        # Manual transaction management: Django cannot say when it commits.
        send()
        return
    # robust: a failure is logged by Django and the other hooks still run.
    transaction.on_commit(send, using=using, robust=True)


def _saving(sender: type[models.Model], instance: models.Model, raw: bool = False, **_: Any) -> None:
    """Before a save of a row whose model has extra tags: the extra tags of
    the row as stored, which its change invalidates too (a book moved to
    another author changes both authors' pages)."""
    if instance.pk is None or instance._state.adding:
        return
    old_tags = []
    for m, t in _tracked_in(sender):
        if t.extra is None:
            continue
        old = m._base_manager.using(instance._state.db).filter(pk=instance.pk).first()
        if old is not None:
            old_tags.append((t.cache, list(t.extra(old))))
    instance.__dict__["_stratacache_before"] = old_tags


def _saved(sender: type[models.Model], instance: models.Model, using: str, **_: Any) -> None:
    if instance.pk is None:
        return
    for cache, tags in [*_changed(instance), *instance.__dict__.pop("_stratacache_before", [])]:
        _after_commit(using, cache, tags)


def _m2m(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
    **_: Any,
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    mine = _changed(instance)
    other = _tracked_in(model)
    if not mine and not other:
        return
    label = _label(model)
    own = _label(type(instance))
    tags = [f"model:{own}", f"model:{own}:{instance.pk}", f"model:{label}"]
    if pk_set:
        tags.extend(f"model:{label}:{pk}" for pk in pk_set)
    else:  # a clear: the rows on the other side are not named
        tags.append(f"model:{label}:*")
    caches_ = {c for c, _ in mine} | {t.cache for _, t in other}
    for cache in caches_:
        _after_commit(using, cache, [*(t for c, ts in mine if c == cache for t in ts), *tags])


class TrackedQuerySet(models.QuerySet):  # type: ignore[misc]
    """A QuerySet whose ``update()``, ``bulk_create()`` and
    ``bulk_update()`` invalidate like ``save()`` does (they send no
    signals). Use ``TrackedQuerySet.as_manager()`` on a tracked model."""

    def _tracking(self) -> list[tuple[type[models.Model], _Tracking]]:
        return _tracked_in(self.model)

    def update(self, **kwargs: Any) -> int:
        n: int = super().update(**kwargs)
        if n and not _ROWS_NAMED.get():
            # Which rows changed is not known without another query (nor,
            # so, their extra tags).
            for m, t in self._tracking():
                label = m._meta.label
                _after_commit(self.db, t.cache, [f"model:{label}", f"model:{label}:*"])
        return n

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[models.Model]:
        created: list[models.Model] = super().bulk_create(objs, *args, **kwargs)
        if created:
            upsert = kwargs.get("update_conflicts") or (len(args) >= 3 and args[2])
            using = router.db_for_write(self.model) if self._db is None else self.db
            for m, t in self._tracking():
                label = m._meta.label
                tags = [f"model:{label}"]
                if upsert:
                    tags.append(f"model:{label}:*")  # rows may have been updated in place
                if t.extra is not None:
                    for o in created:
                        tags.extend(t.extra(o))
                _after_commit(using, t.cache, tags)
        return created

    def bulk_update(self, objs: Iterable[models.Model], fields: Sequence[str], *args: Any, **kwargs: Any) -> int:
        objs = list(objs)
        named = _ROWS_NAMED.set(True)
        try:
            n: int = super().bulk_update(objs, fields, *args, **kwargs)
        finally:
            _ROWS_NAMED.reset(named)
        for m, t in self._tracking():
            tags: list[str] = []
            for o in objs:
                tags.extend(_instance_tags(o, m, t))
            _after_commit(self.db, t.cache, tags)
        return n
