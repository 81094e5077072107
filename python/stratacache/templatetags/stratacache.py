"""``{% load stratacache %}``: Django's ``{% cache %}`` tag, through the
cache's read-through.

Written as Django's own tag is, plus tags::

    {% load stratacache %}
    {% cache 300 sidebar request.user.pk tags="catalog" using="default" %}
        ... expensive fragment ...
    {% endcache %}

Unlike Django's tag (a ``get``, then a ``set``), the fragment renders once
per key across the fleet while other requests wait for it (the backend's
``get_or_set``), it carries ``tags`` (a space-separated string or a list),
and whatever the fragment reads through the cache while it renders
becomes a dependency of it (tracked dependencies): invalidating those
invalidates the fragment. The key is the core's injective encoding of the
name and the vary-on values (``fragment_key``), so ``a:b`` + ``c`` and
``a`` + ``b:c`` are two fragments. Needs ``"stratacache"`` in
``INSTALLED_APPS`` and a :class:`~stratacache.django.StrataCache` alias
(``using``, else ``template_fragments`` when configured, else
``default``). A timeout of ``None`` keeps the fragment until it is
invalidated.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from django import template
from django.core.cache import InvalidCacheBackendError, caches
from django.template.base import FilterExpression, NodeList, Parser, Token

from stratacache import _native

register = template.Library()


class FragmentNode(template.Node):
    def __init__(
        self,
        nodelist: NodeList,
        timeout: FilterExpression,
        name: str,
        vary_on: list[FilterExpression],
        tags: FilterExpression | None,
        using: FilterExpression | None,
    ) -> None:
        self.nodelist = nodelist
        self.timeout = timeout
        self.name = name
        self.vary_on = vary_on
        self.tags = tags
        self.using = using

    def render(self, context: template.Context) -> str:
        from stratacache.django import StrataCache

        timeout = self.timeout.resolve(context)
        if timeout is not None:
            try:
                timeout = int(timeout)
            except (TypeError, ValueError):
                raise template.TemplateSyntaxError(f"cache tag got a non-integer timeout value: {timeout!r}") from None
        alias = self.using.resolve(context) if self.using is not None else None
        try:
            if alias is None:
                try:
                    backend = caches["template_fragments"]
                except InvalidCacheBackendError:
                    backend = caches["default"]
            else:
                backend = caches[alias]
        except InvalidCacheBackendError as e:
            raise template.TemplateSyntaxError(f"cache tag: {e}") from None
        if not isinstance(backend, StrataCache):
            raise template.TemplateSyntaxError(
                f"{{% load stratacache %}}'s cache tag needs a StrataCache alias, not {type(backend).__name__}"
            )
        tags: Any = self.tags.resolve(context) if self.tags is not None else ()
        if isinstance(tags, str):
            tags = tags.split()
        key = _native.fragment_key(self.name, [str(v.resolve(context)) for v in self.vary_on])
        # The loader may run on another thread (a background refresh, a
        # timeout): it renders a copy of the context, never the one this
        # thread goes on rendering with.
        own = copy.copy(context)
        here = threading.get_ident()

        def render() -> str:
            if threading.get_ident() == here:
                return str(self.nodelist.render(own))
            from django.db import close_old_connections

            try:
                return str(self.nodelist.render(own))
            finally:
                close_old_connections()

        return str(backend.get_or_set(key, render, timeout, tags=list(tags or ())))


@register.tag("cache")
def do_cache(parser: Parser, token: Token) -> FragmentNode:
    """``{% cache timeout name [vary ...] [tags=...] [using=...] %}``."""
    nodelist = parser.parse(("endcache",))
    parser.delete_first_token()
    bits = token.split_contents()
    named: dict[str, FilterExpression] = {}
    while len(bits) > 3 and bits[-1].split("=", 1)[0] in ("tags", "using") and "=" in bits[-1]:
        k, v = bits.pop().split("=", 1)
        if k in named:
            raise template.TemplateSyntaxError(f"'cache' tag got {k}= twice")
        named[k] = parser.compile_filter(v)
    if len(bits) < 3:
        raise template.TemplateSyntaxError("'cache' tag requires at least 2 arguments: a timeout and a name")
    return FragmentNode(
        nodelist,
        parser.compile_filter(bits[1]),
        bits[2],
        [parser.compile_filter(b) for b in bits[3:]],
        named.get("tags"),
        named.get("using"),
    )
