"""Installs without Rust: the Python wheel and the npm packages (main plus
the linux-x64-gnu platform package, napi-rs layout) are built, then
installed into fresh directories with a PATH that has no cargo, and used
against real Redis. The sdist is checked to hold what a source build
needs. (`make test-install`; the release workflow builds every target.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
VENV_BIN = Path(sys.executable).parent
TARGET = "linux-x64-gnu"


def no_cargo_path() -> str:
    """The PATH of a machine without Rust: node and npm, no cargo or rustc."""
    dirs = {str(Path(shutil.which(t) or "/usr/bin/x").parent) for t in ("node", "npm")} | {"/usr/bin", "/bin"}
    for d in dirs:
        assert not (Path(d) / "cargo").exists(), f"{d} has cargo: pick another layout for this test"
    return os.pathsep.join(sorted(dirs))


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_python_wheel_installs_and_runs_without_rust(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    maturin = str(VENV_BIN / "maturin")
    env = {**os.environ, "VIRTUAL_ENV": str(VENV_BIN.parent)}
    run([maturin, "build", "--locked", "-q", "--out", str(dist)], ROOT, env)
    (wheel,) = dist.glob("stratacache-*.whl")
    assert "manylinux" in wheel.name or "linux_x86_64" in wheel.name, wheel.name
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    clean = {"PATH": f"{target / 'bin'}{os.pathsep}{no_cargo_path()}", "HOME": str(tmp_path)}
    run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)], tmp_path, clean)
    smoke = (
        "import stratacache\n"
        f"c = stratacache.Cache(redis_url={REDIS_URL!r}, namespace='install-smoke')\n"
        "c.set('k', {'v': [1, 2]})\n"
        "assert c.get_or_set('k', lambda: None) == {'v': [1, 2]}\n"
        "c.delete('k'); c.close()\n"
        "import stratacache.testing\n"
        "print('ok', stratacache.__version__)\n"
    )
    assert run(
        [
            str(
                target / "bin" / "python",
            ),
            "-c",
            smoke,
        ],
        tmp_path,
        clean,
    ).startswith("ok")


def test_python_sdist_holds_a_source_build(tmp_path: Path) -> None:
    env = {**os.environ, "VIRTUAL_ENV": str(VENV_BIN.parent)}
    run([str(VENV_BIN / "maturin"), "sdist", "--out", str(tmp_path)], ROOT, env)
    (sdist,) = tmp_path.glob("stratacache-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in (
        "pyproject.toml",
        "Cargo.lock",
        "crates/core/src/lib.rs",
        "crates/python/src/lib.rs",
        "python/stratacache/__init__.py",
        "python/stratacache/_native.pyi",
    ):
        assert needed in names, f"{needed} missing from the sdist"


def test_npm_packages_install_and_run_without_rust(tmp_path: Path) -> None:
    packs = tmp_path / "packs"
    packs.mkdir()
    # The platform package, with the addon `make node-build` made.
    platform = tmp_path / TARGET
    shutil.copytree(ROOT / "npm" / TARGET, platform)
    shutil.copy(ROOT / "node" / f"stratacache.{TARGET}.node", platform)
    run(["npm", "pack", "--silent", "--pack-destination", str(packs)], platform)
    # The main package as the release publishes it: optionalDependencies
    # written by the release script, no .node inside.
    run(["npm", "pack", "--silent", "--ignore-scripts", "--pack-destination", str(packs)], ROOT)
    main = next(packs.glob("stratacache-0*.tgz"))
    staged = tmp_path / "main"
    with tarfile.open(main) as t:
        t.extractall(staged, filter="data")
    manifest = staged / "package" / "package.json"
    run(["node", str(ROOT / "scripts" / "release-manifest.js"), "--manifest", str(manifest), TARGET], ROOT)
    assert json.loads(manifest.read_text())["optionalDependencies"] == {f"stratacache-{TARGET}": "0.1.0"}
    assert not list((staged / "package" / "node").glob("*.node")), "the main package must not carry an addon"
    main.unlink()
    run(["npm", "pack", "--silent", "--ignore-scripts", "--pack-destination", str(packs)], staged / "package")
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}\n')
    clean = {"PATH": no_cargo_path(), "HOME": str(tmp_path)}
    tgzs = sorted(str(p) for p in packs.glob("*.tgz"))
    run(["npm", "install", "--no-audit", "--no-fund", *tgzs], app, clean)
    smoke = (
        "const { Cache } = require('stratacache');"
        "(async () => {"
        f"  const c = new Cache({{ redis: {json.dumps(REDIS_URL)}, namespace: 'install-smoke-js' }});"
        "  await c.set('k', { v: [1, 2] });"
        "  const v = await c.getOrSet({ key: 'k', factory: () => null });"
        "  if (JSON.stringify(v) !== '{\"v\":[1,2]}') throw new Error(JSON.stringify(v));"
        "  await c.delete('k'); await c.close();"
        "  require('stratacache/testing'); require('stratacache/keyv');"
        "  console.log('ok');"
        "})().catch((e) => { console.error(e); process.exit(1) })"
    )
    assert run(["node", "-e", smoke], app, clean).strip() == "ok"
    # The addon came from the platform package, not a build.
    assert (app / "node_modules" / f"stratacache-{TARGET}" / f"stratacache.{TARGET}.node").exists()
    assert not list((app / "node_modules" / "stratacache" / "node").glob("*.node"))
