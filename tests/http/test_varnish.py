"""A real Varnish 7 with vmod_xkey in front of each framework's app (the
apps of the case table): a cached API response is served by Varnish, its
`Surrogate-Key` header (`edge_tag_header`) is what xkey indexes, and a purge
by one of those keys makes Varnish fetch from the app again, while the rest
stays cached. `make test` runs it; `.ci/run` installs Varnish and
varnish-modules from Debian."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cases import FRAMEWORKS, Apps, Reply, free_port, request

VCL = """vcl 4.1;
import xkey;
backend app {{ .host = "127.0.0.1"; .port = "{port}"; }}
sub vcl_recv {{
  if (req.method == "PURGE") {{
    set req.http.n-gone = xkey.purge(req.http.xkey-purge);
    return (synth(200, "Invalidated " + req.http.n-gone));
  }}
}}
sub vcl_backend_response {{
  # xkey indexes the xkey header: the app sends Surrogate-Key.
  set beresp.http.xkey = beresp.http.surrogate-key;
}}
"""


class Varnish:
    """varnishd in the foreground on a free loopback port, in front of
    `backend_port`; stopped by its PID."""

    def __init__(self, backend_port: int) -> None:
        varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
        assert Path(varnishd).exists(), "varnishd is missing: install varnish and varnish-modules (.ci/run does)"
        self.dir = tempfile.mkdtemp(prefix="stratacache-varnish-")
        # Varnish's child drops privileges: it must read the VCL and its workdir.
        Path(self.dir).chmod(0o755)
        vcl = Path(self.dir) / "edge.vcl"
        vcl.write_text(VCL.format(port=backend_port))
        self.port = free_port()
        workdir = str(Path(self.dir) / "work")
        self.proc = subprocess.Popen(
            [varnishd, "-F", "-n", workdir, "-a", f"127.0.0.1:{self.port}", "-f", str(vcl), "-s", "malloc,32m"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"varnishd exited with {self.proc.returncode}"
            try:
                if self.purge("nothing").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "varnishd never answered"
            time.sleep(0.05)

    def get(self, path: str) -> Reply:
        return request(self.port, "GET", path)

    def purge(self, key: str) -> Reply:
        return request(self.port, "PURGE", "/", {"xkey-purge": key})

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def edge(request: pytest.FixtureRequest) -> Iterator[tuple[Apps, Varnish]]:
    apps = Apps(request.param)
    try:
        varnish = Varnish(apps.ports[0])
        try:
            yield apps, varnish
        finally:
            varnish.close()
    finally:
        apps.close()


def served_by_varnish(r: Reply) -> bool:
    # X-Varnish holds two transaction ids on a cache hit, one on a fetch.
    return len(r.headers["x-varnish"].split()) == 2


def test_varnish_serves_and_purges_by_surrogate_key(edge: tuple[Apps, Varnish]) -> None:
    apps, varnish = edge
    before = apps.calls().get("edgetags", 0)
    first = varnish.get("/edgetags?v=1")
    assert first.status == 200 and not served_by_varnish(first)
    keys = first.headers["surrogate-key"].split(" ")
    assert keys and all(k.startswith("http:url:") for k in keys), keys
    other = varnish.get("/edgetags?v=2")  # the same path: the same URL tag
    for path in ("/edgetags?v=1", "/edgetags?v=2"):
        again = varnish.get(path)
        assert served_by_varnish(again), f"{path}: {again.headers}"
    assert apps.calls().get("edgetags", 0) == before + 2

    # One key of the response: every object carrying it goes, nothing else.
    untagged = varnish.get("/plain?edge=1")
    assert varnish.get("/plain?edge=1").headers["x-varnish"].count(" ") == 1
    gone = varnish.purge(keys[0])
    assert gone.status == 200 and b"Invalidated 2" in gone.body, gone.body
    refetched = varnish.get("/edgetags?v=1")
    assert not served_by_varnish(refetched)
    assert refetched.body == first.body  # the app's own cache answered the fetch
    assert served_by_varnish(varnish.get("/plain?edge=1")), "an object without the key was purged"
    assert not served_by_varnish(other) and untagged.status == 200
