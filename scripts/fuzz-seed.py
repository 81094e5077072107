#!/usr/bin/env python3
"""Seed the fuzz corpora with the golden vectors (tests/vectors), so the
fuzzer starts from well-formed envelopes and bus messages instead of
having to guess their magic bytes."""

import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
vectors = root / "tests" / "vectors"
envelope = json.loads((vectors / "envelope_v1.json").read_text())
bus = json.loads((vectors / "bus_v1.json").read_text())
seeds = {
    "envelope": [v["encoded_hex"] for v in envelope["good"] + envelope["bad"]],
    "bus": [v["encoded_hex"] for v in bus],
}
for target, hexes in seeds.items():
    d = root / "fuzz" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for i, h in enumerate(hexes):
        (d / f"vector-{i:03}").write_bytes(bytes.fromhex(h))
    print(f"fuzz/corpus/{target}: {len(hexes)} seeds")
