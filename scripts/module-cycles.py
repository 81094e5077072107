#!/usr/bin/env python3
"""Print the core's module import graph and fail on a cycle: no module of
crates/core/src may import from a module that (directly or not) imports
back from it (issue: one responsibility per module, no module cycles)."""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parents[1] / "crates" / "core" / "src"


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p not in ("mod", "lib")]
    return parts[0] if parts else "lib"


graph: dict[str, set[str]] = {}
for f in SRC.rglob("*.rs"):
    m = module_of(f)
    text = f.read_text()
    text = text.split("#[cfg(test)]", 1)[0]  # unit tests may use anything
    deps = set(re.findall(r"crate::([a-z_0-9]+)", text))
    graph.setdefault(m, set()).update(d for d in deps if d != m)
graph.pop("lib", None)

# Tarjan-free check: DFS for a back edge.
state: dict[str, int] = {}
stack: list[str] = []
cycles: list[list[str]] = []


def visit(n: str) -> None:
    state[n] = 1
    stack.append(n)
    for d in sorted(graph.get(n, ())):
        if d not in graph:
            continue
        if state.get(d) == 1:
            cycles.append(stack[stack.index(d) :] + [d])
        elif d not in state:
            visit(d)
    stack.pop()
    state[n] = 2


for n in sorted(graph):
    if n not in state:
        visit(n)

for n in sorted(graph):
    print(f"{n:10} -> {', '.join(sorted(d for d in graph[n] if d in graph))}")
if cycles:
    for c in cycles:
        print("cycle:", " -> ".join(c), file=sys.stderr)
    sys.exit(1)
