"""What Lambda will run: the staged ``functions/`` asset and the dependency layer hold every
module the handlers import, built for the runtime (CPython 3.14, arm64), without Docker.

The layer's binaries cannot be imported on this machine (other Python, other CPU), so the
check is static: every import statement in the asset must resolve to a file of the asset,
of the layer, or of the standard library."""

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_cdk import FileSystem

from infra import layer as layer_module
from infra.layer import DependencyLayer, build_dependency_layer
from tests.infra.synthesis import FUNCTION_NAMES, Synthesized

# Modules this machine's standard library has but Python 3.14's no longer does (PEP 594, 632).
REMOVED_FROM_STANDARD_LIBRARY = frozenset(
    {
        "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "distutils", "imghdr", "lib2to3",
        "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
        "telnetlib", "uu", "xdrlib",
    }
)  # fmt: skip
ELF_MAGIC = b"\x7fELF"
ELF_MACHINE_AARCH64 = 183


def _staged_code(synthesized: Synthesized) -> Path:
    function = synthesized.resource(synthesized.stack.functions.ingest)
    return synthesized.asset_directory(function["Properties"]["Code"]["S3Key"])


def _staged_layer(synthesized: Synthesized) -> Path:
    layer = synthesized.resource(synthesized.stack.functions.dependency_layer)
    return synthesized.asset_directory(layer["Properties"]["Content"]["S3Key"]) / "python"


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST, package: list[str]) -> Iterator[str]:
    """Absolute names of the modules a module imports when it runs (not for type checkers)."""
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                yield node.module
            else:
                base = package[: len(package) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
        yield from _runtime_imports(node, package)


def _resolves(module: str, roots: list[Path]) -> bool:
    parts = module.split(".")
    if parts[0] in sys.stdlib_module_names and parts[0] not in REMOVED_FROM_STANDARD_LIBRARY:
        return True
    for root in roots:
        path = root.joinpath(*parts)
        if path.with_suffix(".py").is_file() or path.is_dir():
            return True
        if any(path.parent.glob(f"{parts[-1]}.*.so")):
            return True
    return False


def _imports_of_asset(code: Path) -> dict[str, set[str]]:
    imports: dict[str, set[str]] = {}
    for source in sorted(code.rglob("*.py")):
        relative = source.relative_to(code).with_suffix("")
        package = list(relative.parts[:-1])  # a/b.py and a/__init__.py both live in package a
        tree = ast.parse(source.read_text(), filename=str(source))
        imports[str(relative)] = set(_runtime_imports(tree, package))
    return imports


def test_code_asset_holds_each_handler(synthesized: Synthesized) -> None:
    code = _staged_code(synthesized)
    for name in FUNCTION_NAMES:
        handler_source = code / name / "handler.py"
        assert handler_source.is_file(), f"{name}.handler is missing from the asset"
        tree = ast.parse(handler_source.read_text())
        defined = {
            node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assigned = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert "lambda_handler" in defined | assigned, f"{name}/handler.py defines no lambda_handler"


def test_code_asset_leaves_out_build_leftovers_and_requirements(synthesized: Synthesized) -> None:
    code = _staged_code(synthesized)
    assert not list(code.rglob("__pycache__"))
    assert not list(code.rglob("*.pyc"))
    assert not (code / "requirements.txt").exists()
    assert not (code / "requirements.lock").exists()
    assert (code / "sensor_stream" / "__init__.py").is_file()


def test_every_import_of_the_functions_resolves_in_asset_or_layer(synthesized: Synthesized) -> None:
    roots = [_staged_code(synthesized), _staged_layer(synthesized)]
    imports = _imports_of_asset(roots[0])
    assert imports, "the asset holds no Python module"
    unresolved = {
        module: sorted(name for name in names if not _resolves(name, roots))
        for module, names in imports.items()
    }
    assert {module: names for module, names in unresolved.items() if names} == {}


def test_import_scan_notices_a_missing_dependency(tmp_path: Path) -> None:
    # The check above is only worth something if it can fail.
    (tmp_path / "handler.py").write_text(
        "import json\nimport not_installed_anywhere\nfrom . import sibling\n"
    )
    (tmp_path / "sibling.py").write_text("")
    imports = _imports_of_asset(tmp_path)
    assert {name for name in imports["handler"] if not _resolves(name, [tmp_path])} == {
        "not_installed_anywhere"
    }


def test_layer_holds_the_runtime_dependencies(synthesized: Synthesized) -> None:
    layer = _staged_layer(synthesized)
    for package in (
        "aws_lambda_powertools",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "jwt",
        "cryptography",
    ):
        assert (layer / package / "__init__.py").is_file(), package
    # No byte code compiled for this machine's interpreter, no console scripts.
    assert not list(layer.rglob("*.pyc"))
    assert not (layer / "bin").exists()


def test_layer_binaries_are_built_for_python_3_14_on_arm64(synthesized: Synthesized) -> None:
    extensions = list(_staged_layer(synthesized).rglob("*.so"))
    assert any("pydantic_core" in str(path) for path in extensions)
    for extension in extensions:
        assert ".cpython-314-aarch64-linux-gnu.so" in extension.name or ".abi3.so" in extension.name, (
            extension
        )
        header = extension.read_bytes()[:20]
        assert header[:4] == ELF_MAGIC
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, extension


def test_layer_build_is_reused_while_requirements_are_unchanged(
    dependency_layer: DependencyLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_to_run_pip(*_: object, **__: object) -> None:
        raise AssertionError("pip ran although a build for these requirements exists")

    monkeypatch.setattr(layer_module, "_pip_install", refuse_to_run_pip)
    assert build_dependency_layer() == dependency_layer


def test_layer_digest_follows_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("pydantic==2.13.4 --hash=sha256:aa\n")
    first = layer_module.lock_digest(lock)
    lock.write_text("pydantic==2.13.4 --hash=sha256:bb\n")
    assert layer_module.lock_digest(lock) != first


def _pins(text: str) -> dict[str, str]:
    """name -> version of each ``name==version`` line (names normalised as PyPI does)."""
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^]]*\])?==([^ ;\\]+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_lock_pins_every_requirement_at_its_version() -> None:
    required = _pins(layer_module.REQUIREMENTS_FILE.read_text())
    locked = _pins(layer_module.LOCK_FILE.read_text())
    assert required, "requirements.txt pins its packages"
    assert {name: locked.get(name) for name in required} == required, "run make lock"
    # Transitive packages are pinned too (pydantic's core, cryptography's cffi, ...).
    assert {"pydantic-core", "cffi", "botocore", "typing-extensions"} <= set(locked)


def test_every_locked_package_carries_its_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z])", layer_module.LOCK_FILE.read_text().split("\n", 2)[2])
    for entry in entries:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry.splitlines()[0]


def test_lock_was_made_by_make_lock() -> None:
    header = layer_module.LOCK_FILE.read_text().splitlines()[:2]
    assert header[1].strip("# ").strip() == layer_module.LOCK_COMMAND


def test_layer_holds_exactly_the_locked_distributions(synthesized: Synthesized) -> None:
    installed = {}
    for dist_info in _staged_layer(synthesized).glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert installed == _pins(layer_module.LOCK_FILE.read_text())


def test_layer_asset_hash_is_the_hash_of_the_built_files(
    synthesized: Synthesized, dependency_layer: DependencyLayer
) -> None:
    # Not a hash of the inputs: a rebuild that yields other files deploys as another asset.
    layer = synthesized.resource(synthesized.stack.functions.dependency_layer)
    s3_key = layer["Properties"]["Content"]["S3Key"]
    assert s3_key == f"{FileSystem.fingerprint(str(dependency_layer.directory))}.zip"


def test_pip_installs_only_the_locked_files_for_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []

    def run(command: list[str], check: bool) -> None:
        commands.append(command)
        Path(command[command.index("--target") + 1]).mkdir(parents=True)

    monkeypatch.setattr(layer_module.subprocess, "run", run)
    layer_module.build_dependency_layer(layer_module.LOCK_FILE, cache_root=tmp_path)

    (command,) = commands
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(command)
    assert command[command.index("--requirement") + 1] == str(layer_module.LOCK_FILE)
    platforms = [command[i + 1] for i, argument in enumerate(command) if argument == "--platform"]
    # Amazon Linux 2023 (glibc 2.34) runs any manylinux wheel up to 2_34, newest preferred.
    assert platforms[0] == "manylinux_2_34_aarch64"
    assert {"manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(platforms)
    assert command[command.index("--python-version") + 1] == "3.14"
