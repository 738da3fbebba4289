"""The functions' dependencies as a Lambda layer, built with pip for the Lambda platform
(no Docker): ``pip install --require-hashes --no-deps --platform manylinux_2_34_aarch64
... --only-binary=:all: -r functions/requirements.lock``.

``functions/requirements.txt`` names the packages the functions import; ``make lock``
resolves it for the runtime (CPython 3.14 on arm64, Amazon Linux 2023) into
``functions/requirements.lock``: every package, transitive ones included, pinned with the
hashes of its published files, so pip installs exactly those files or fails.

A build is cached under a digest of the lock file and of the pip arguments, so
synthesizing again costs nothing until the lock changes. The layer's asset hash is CDK's
hash of the built directory's contents, not of any input: different files can never
deploy under the same hash.
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
LOCK_FILE = REPOSITORY_ROOT / "functions" / "requirements.lock"
LAYER_CACHE_ROOT = REPOSITORY_ROOT / "build" / "layer"

# Must match the functions' runtime and architecture (see functions.py). The python3.14
# runtime runs on Amazon Linux 2023, whose glibc is 2.34: it runs wheels built for any
# manylinux_2_X up to 2_34 (pip takes the platforms literally, so each is listed, newest
# first; manylinux2014 is 2_17 under its older name).
LAMBDA_PYTHON_VERSION = "3.14"
LAMBDA_GLIBC_MINOR = 34
LAMBDA_PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)),
    "manylinux2014_aarch64",
)
PIP_PLATFORM_ARGUMENTS = (
    *(argument for platform in LAMBDA_PLATFORMS for argument in ("--platform", platform)),
    "--implementation",
    "cp",
    "--python-version",
    LAMBDA_PYTHON_VERSION,
    "--only-binary=:all:",
)
# What `make lock` runs (uv resolves for another platform than this machine's).
LOCK_COMMAND = (
    "uv pip compile functions/requirements.txt --python-version 3.14 "
    "--python-platform aarch64-manylinux_2_34 --generate-hashes -o functions/requirements.lock"
)
# A layer's Python packages live under python/ (it is on the runtime's sys.path).
LAYER_PYTHON_DIRECTORY = "python"
# Console scripts are of no use inside a layer and would only add weight.
PRUNED_DIRECTORIES = ("bin",)


@dataclass(frozen=True)
class DependencyLayer:
    """A built layer: ``directory`` holds ``python/``; ``digest`` identifies its inputs
    (the cache key; the asset hash is the directory's own)."""

    directory: Path
    digest: str

    @property
    def python_directory(self) -> Path:
        return self.directory / LAYER_PYTHON_DIRECTORY


def lock_digest(lock_file: Path) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(PIP_PLATFORM_ARGUMENTS).encode())
    digest.update(b"\0")
    digest.update(lock_file.read_bytes())
    return digest.hexdigest()


def build_dependency_layer(
    lock_file: Path = LOCK_FILE, cache_root: Path = LAYER_CACHE_ROOT
) -> DependencyLayer:
    """Return the layer for ``lock_file``, running pip only when no build of the same
    digest exists. Safe against a concurrent build: each build happens in a private
    directory that is renamed into place at the end."""
    digest = lock_digest(lock_file)
    layer = DependencyLayer(directory=cache_root / digest[:16], digest=digest)
    if layer.python_directory.is_dir():
        return layer

    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_root))
    try:
        _pip_install(lock_file, staging / LAYER_PYTHON_DIRECTORY)
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


def _pip_install(lock_file: Path, target: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-qq",  # errors only: pip's warnings here are about this machine's index settings
        "--disable-pip-version-check",
        # Byte code compiled here would be for this interpreter, not the Lambda runtime's.
        "--no-compile",
        # Exactly the locked files: every package pinned, every file's hash checked, and
        # nothing resolved beyond the lock.
        "--require-hashes",
        "--no-deps",
        *PIP_PLATFORM_ARGUMENTS,
        "--target",
        str(target),
        "--requirement",
        str(lock_file),
    ]
    print(f"Building the Lambda dependency layer: {' '.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True)  # noqa: S603 - fixed arguments, our own interpreter


def _remove_stale_builds(cache_root: Path, keep: Path) -> None:
    for entry in cache_root.iterdir():
        if entry != keep and entry.is_dir() and not entry.name.startswith(".partial-"):
            shutil.rmtree(entry, ignore_errors=True)
