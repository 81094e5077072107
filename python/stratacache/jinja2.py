"""A Jinja2 ``{% cache %}`` tag through the cache's read-through::

    from jinja2 import Environment
    from stratacache.jinja2 import FragmentCache

    env = Environment(extensions=[FragmentCache])
    env.stratacache = Cache(redis_url="redis://127.0.0.1:6379", namespace="shop")

    {% cache "sidebar", user.id, ttl=300, tags=["catalog"] %}
        ... expensive fragment ...
    {% endcache %}

The first argument names the fragment, the others are what it varies on;
``ttl`` (seconds, default the cache's) and ``tags`` are optional. As with
``{% load stratacache %}`` in Django templates and Node's
``cache.fragment``, the fragment renders once per key across the fleet
while other renders wait, carries its tags, and depends on what it reads
through the cache while rendering; its key is the core's
``fragment_key``. An environment with ``enable_async=True`` uses the
asyncio read-through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser

from . import _native
from ._args import DEFAULT

__all__ = ["FragmentCache"]


class FragmentCache(Extension):
    """``{% cache name[, vary ...][, ttl=...][, tags=...] %}...{% endcache %}``;
    the environment's ``stratacache`` attribute is the cache."""

    tags = {"cache"}  # noqa: RUF012 (Jinja's own class attribute)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.extend(stratacache=None)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        args: list[nodes.Expr] = [parser.parse_expression()]
        kwargs: dict[str, nodes.Expr] = {}
        while parser.stream.skip_if("comma"):
            if parser.stream.current.type == "name" and parser.stream.look().type == "assign":
                key = next(parser.stream).value
                if key not in ("ttl", "tags"):
                    parser.fail(f"cache tag: unknown option {key!r} (ttl, tags)", lineno)
                next(parser.stream)
                kwargs[key] = parser.parse_expression()
            else:
                if kwargs:
                    parser.fail("cache tag: vary-on values come before ttl= and tags=", lineno)
                args.append(parser.parse_expression())
        body = parser.parse_statements(("name:endcache",), drop_needle=True)
        call_args = [
            args[0],
            nodes.List(args[1:]),
            kwargs.get("ttl", nodes.Const(None)),
            kwargs.get("tags", nodes.List([])),
        ]
        method = "_arender" if self.environment.is_async else "_render"
        return nodes.CallBlock(self.call_method(method, call_args), [], [], body).set_lineno(lineno)

    def _cache(self) -> Any:
        c = self.environment.stratacache  # type: ignore[attr-defined]
        if c is None:
            raise RuntimeError("set env.stratacache = stratacache.Cache(...) to use {% cache %}")
        return c

    @staticmethod
    def _key(name: Any, vary: Sequence[Any]) -> str:
        return _native.fragment_key(str(name), [str(v) for v in vary])

    def _render(self, name: Any, vary: Sequence[Any], ttl: Any, tags: Any, caller: Callable[[], str]) -> str:
        return str(
            self._cache().get_or_set(
                self._key(name, vary), caller, DEFAULT if ttl is None else ttl, tags=_tag_list(tags)
            )
        )

    async def _arender(self, name: Any, vary: Sequence[Any], ttl: Any, tags: Any, caller: Callable[[], Any]) -> str:
        return str(
            await self._cache().aget_or_set(
                self._key(name, vary), caller, DEFAULT if ttl is None else ttl, tags=_tag_list(tags)
            )
        )


def _tag_list(tags: Any) -> list[str]:
    if isinstance(tags, str):
        return tags.split()
    return [str(t) for t in tags or ()]
