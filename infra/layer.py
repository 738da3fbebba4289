"""The functions' dependencies as a Lambda layer, built with pip for the Lambda platform
(no Docker): ``pip install --platform manylinux2014_aarch64 --only-binary=:all:``.

A build is keyed by a digest of the requirements file and of the pip target arguments,
so synthesizing again costs nothing until ``functions/requirements.txt`` changes.
"""

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = REPOSITORY_ROOT / "functions" / "requirements.txt"
LAYER_CACHE_ROOT = REPOSITORY_ROOT / "build" / "layer"

# Must match the functions' runtime and architecture (see functions.py).
LAMBDA_PYTHON_VERSION = "3.14"
LAMBDA_PLATFORM = "manylinux2014_aarch64"
PIP_PLATFORM_ARGUMENTS = (
    "--platform",
    LAMBDA_PLATFORM,
    "--implementation",
    "cp",
    "--python-version",
    LAMBDA_PYTHON_VERSION,
    "--only-binary=:all:",
)
# A layer's Python packages live under python/ (it is on the runtime's sys.path).
LAYER_PYTHON_DIRECTORY = "python"
# Console scripts are of no use inside a layer and would only add weight.
PRUNED_DIRECTORIES = ("bin",)


@dataclass(frozen=True)
class DependencyLayer:
    """A built layer: ``directory`` holds ``python/``; ``digest`` identifies its inputs."""

    directory: Path
    digest: str

    @property
    def python_directory(self) -> Path:
        return self.directory / LAYER_PYTHON_DIRECTORY


def requirements_digest(requirements_file: Path) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(PIP_PLATFORM_ARGUMENTS).encode())
    digest.update(b"\0")
    digest.update(requirements_file.read_bytes())
    return digest.hexdigest()


def build_dependency_layer(
    requirements_file: Path = REQUIREMENTS_FILE, cache_root: Path = LAYER_CACHE_ROOT
) -> DependencyLayer:
    """Return the layer for ``requirements_file``, running pip only when no build of
    the same digest exists. Safe against a concurrent build: each build happens in a
    private directory that is renamed into place at the end."""
    digest = requirements_digest(requirements_file)
    layer = DependencyLayer(directory=cache_root / digest[:16], digest=digest)
    if layer.python_directory.is_dir():
        return layer

    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_root))
    try:
        _pip_install(requirements_file, staging / LAYER_PYTHON_DIRECTORY)
        for name in PRUNED_DIRECTORIES:
            shutil.rmtree(staging / LAYER_PYTHON_DIRECTORY / name, ignore_errors=True)
        try:
            staging.rename(layer.directory)
        except OSError:
            # Another process finished the same build first: its result is identical.
            if not layer.python_directory.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale_builds(cache_root, keep=layer.directory)
    return layer


def _pip_install(requirements_file: Path, target: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-qq",  # errors only: pip's warnings here are about this machine's index settings
        "--disable-pip-version-check",
        # Byte code compiled here would be for this interpreter, not the Lambda runtime's.
        "--no-compile",
        *PIP_PLATFORM_ARGUMENTS,
        "--target",
        str(target),
        "--requirement",
        str(requirements_file),
    ]
    print(f"Building the Lambda dependency layer: {' '.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True)  # noqa: S603 - fixed arguments, our own interpreter


def _remove_stale_builds(cache_root: Path, keep: Path) -> None:
    for entry in cache_root.iterdir():
        if entry != keep and entry.is_dir() and not entry.name.startswith(".partial-"):
            shutil.rmtree(entry, ignore_errors=True)
