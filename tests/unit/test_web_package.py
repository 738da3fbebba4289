"""web/ as the installable package ``@sensor-stream/client``: its generated types are current,
a strict TypeScript consumer compiles against them, the client and the dashboard pass
``tsc --strict`` (checkJs), the package holds only the client (its three modules and their
types), and the vendored uPlot is the pinned package's. Needs node_modules (``make install``;
``make test`` runs ``npm ci``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
# The client's modules: the API, the connection's life cycle and the contract's types.
CLIENT_MODULES = ("sensor-stream-client", "sensor-stream-transport", "sensor-stream-types")
TSC = ROOT / "node_modules" / ".bin" / "tsc"
VENDORED = {
    "uPlot.esm.js": "dist/uPlot.esm.js",
    "uPlot.min.css": "dist/uPlot.min.css",
    "uPlot.LICENSE": "LICENSE",
}


def tsc(*args: str) -> None:
    assert TSC.exists(), "node_modules lacks typescript: run make install"
    result = subprocess.run(  # noqa: S603 - our own pinned tsc
        [str(TSC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_types_are_current(tmp_path: Path) -> None:
    tsc("-p", "web/tsconfig.types.json", "--outDir", str(tmp_path))
    generated = sorted(path.name for path in tmp_path.iterdir())
    assert generated == [f"{module}.d.ts" for module in CLIENT_MODULES]
    committed = sorted(path.name for path in (WEB / "types").iterdir())
    assert committed == generated, "run make types"
    for name in generated:
        assert (tmp_path / name).read_text() == (WEB / "types" / name).read_text(), "run make types"


def test_the_client_and_the_dashboard_pass_strict_checks() -> None:
    tsc("-p", "web/tsconfig.json")


def test_a_strict_typescript_consumer_compiles_against_the_package() -> None:
    tsc("-p", "tests/typescript/tsconfig.json")


def test_the_package_holds_the_client_and_its_types() -> None:
    manifest = json.loads((WEB / "package.json").read_text())
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {
        "types": "./types/sensor-stream-client.d.ts",
        "default": "./sensor-stream-client.js",
    }
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    result = subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
        [npm, "pack", "--dry-run", "--json"], cwd=WEB, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    (packed,) = json.loads(result.stdout)
    assert sorted(entry["path"] for entry in packed["files"]) == sorted(
        ["package.json"]
        + [f"{module}.js" for module in CLIENT_MODULES]
        + [f"types/{module}.d.ts" for module in CLIENT_MODULES]
    )


@pytest.mark.parametrize(("vendored", "packaged"), VENDORED.items())
def test_the_vendored_uplot_is_the_pinned_package(vendored: str, packaged: str) -> None:
    source = ROOT / "node_modules" / "uplot" / packaged
    assert source.exists(), "node_modules lacks uplot: run make install"
    assert (WEB / "vendor" / vendored).read_bytes() == source.read_bytes(), "run make vendor"
