"""axe-core (the npm package pinned in package.json) run inside a Playwright page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Page) -> list[str]:
    """Every rule axe-core runs by default (WCAG 2.x A/AA and best practices), as
    ``"rule: target (summary)"`` lines; empty when the page passes."""
    assert AXE_SCRIPT.exists(), "node_modules lacks axe-core: run make install"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    results: dict[str, Any] = page.evaluate(
        "async () => await window.axe.run(document, { resultTypes: ['violations'] })"
    )
    return [
        f"{violation['id']}: {node['target']} ({node.get('failureSummary', '').splitlines()[-1].strip()})"
        for violation in results["violations"]
        for node in violation["nodes"]
    ]
