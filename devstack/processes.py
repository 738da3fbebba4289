"""Child processes of the local stack, and how they end with it.

Every child is started from one multiprocessing *forkserver* whose process has imported
the heavy libraries once (boto3, botocore, pydantic, Powertools, moto), so a new Lambda
environment starts in tens of milliseconds instead of a second of imports, as a warm
Lambda sandbox snapshot would. Forking from that single-threaded server (not from the
stack's own multi-threaded process) keeps locks and threads out of the children.

No child may outlive the stack, even when the stack is killed with SIGKILL: each child
asks the kernel for SIGKILL when its parent (the forkserver) dies (``PR_SET_PDEATHSIG``),
and the forkserver exits when the stack's end of its "alive" pipe closes, which the
kernel does however the stack ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("devstack.processes")

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
# Imported once in the forkserver; every child inherits them already loaded.
PRELOADED_MODULES = [
    "boto3",
    "botocore.session",
    "botocore.client",
    "pydantic",
    "pydantic_settings",
    "jwt",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.parser",
    "devstack.lambda_worker",
]
STOP_GRACE_SECONDS = 5.0

_context: ForkServerContext | None = None


def context() -> ForkServerContext:
    """The forkserver context every child of the stack is started from."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOADED_MODULES)
    return _context


def die_with_parent() -> None:
    """Called first thing in a child: the kernel kills it when its parent goes away,
    however the parent ended (Linux; elsewhere children rely on their pipes). Its stdout
    goes to stderr: the stack's stdout carries the ready line alone."""
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # The forkserver lives while anyone holds its "alive" pipe, and hands every child a
    # copy: dropped here, so that the stack's own copy decides and the forkserver exits
    # with the stack (which in turn kills this child through PR_SET_PDEATHSIG).
    server: Any = getattr(multiprocessing.forkserver, "_forkserver")  # noqa: B009 - private, untyped
    if server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        parent = os.getppid()
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would come.
        if os.getppid() != parent:
            os._exit(1)
    # Ctrl-C in a terminal reaches the whole process group: only the stack itself acts
    # on it, stopping the children in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def name_process(name: str) -> None:
    """Show the process as ``name`` in ps and top (Linux keeps 15 bytes of it)."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        ctypes.CDLL(libc_name).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def stop_process(process: BaseProcess, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it has not exited within the grace period."""
    if process.pid is None:
        return
    if process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        process.join(grace_seconds)
    if process.is_alive():
        log.warning("%s did not stop within %.0f s; killing it", process.name, grace_seconds)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    process.join(grace_seconds)
