"""Make the screenshots of the web view that README.md and docs/ui.md show.

Usage (from the root of a clone, with chromium and chromedriver installed):

    python tests/ui_screenshots.py docs/images

Builds a demo store of real runs in a temporary folder (tests/uistore.py, plus a small grid of
``alpha`` and ``layers``), serves it, and saves one PNG per page (1200 pixels wide): the runs
table, a run, a comparison, the plots; and a sweep's page, of a store with one small grid sweep.
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import start_browser, wait_for
from conftest import Reprun
from uistore import build, build_sweep, run, serving

PAGES = ("runs", "run", "compare", "plots")


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reprun-shots-") as scratch:
        root = Path(scratch)
        (root / "work").mkdir()
        reprun = Reprun(root / "home", root / "work")
        demo = build(reprun, root)
        for alpha in (0.05, 0.35, 0.6):
            for layers in (3, 6):
                demo.runs[f"grid-{alpha}-{layers}"] = run(
                    reprun, str(demo.project), "-P", f"alpha={alpha}", "-P", f"layers={layers}")
        browser = start_browser()
        saved = []
        try:
            with serving(reprun.home) as client:
                base = f"http://127.0.0.1:{client.port}/#"
                a, b = demo.runs["dirty"], demo.runs["a0.1-l2"]
                views = {
                    "runs": ("/runs?" + urllib.parse.urlencode({
                        "cols": "params.alpha,params.layers,metrics.loss,metrics.r2",
                        "sort": "-metrics.r2", "sel": f"{a},{b}"}), "#runs tbody tr", 900),
                    "run": (f"/run/{a}", '#metric-plot[data-ready="1"]', 2400),
                    "compare": ("/compare?runs=" + f"{a},{b}", ".diff-view", 1300),
                    "plots": ("/plots?" + urllib.parse.urlencode({
                        "where": "entry_point = main", "runs": f"{a},{b}", "metric": "r2",
                        "x": "params.alpha", "dims": "params.alpha,params.layers"}),
                        '#parcoords-plot[data-ready]', 1500),
                }
                for name in PAGES:
                    fragment, ready, height = views[name]
                    browser.set_window_size(1200, height)
                    browser.get(base + fragment)
                    wait_for(browser, lambda b, css=ready: b.find_elements("css selector", css),
                             30, f"the {name} page")
                    time.sleep(0.5)  # the plots' transitions
                    path = out / f"ui-{name}.png"
                    browser.save_screenshot(str(path))
                    saved.append(path)
            saved.append(shoot_sweep(browser, root, out))
        finally:
            browser.quit()
        return saved


def shoot_sweep(browser: Any, root: Path, out: Path) -> Path:
    """The page of a sweep, from a store of its own (its runs would crowd the other pages)."""
    (root / "sweep-work").mkdir()
    swept = build_sweep(Reprun(root / "sweep-home", root / "sweep-work"), root)
    path = out / "ui-sweep.png"
    with serving(swept.reprun.home) as client:
        browser.set_window_size(1200, 1250)
        browser.get(f"http://127.0.0.1:{client.port}/#/sweeps/{swept.sweep_id}")
        wait_for(browser, lambda b: b.find_elements("css selector",
                                                    '#sweep-parcoords[data-ready]'),
                 30, "the sweep page")
        browser.save_screenshot(str(path))
    return path


if __name__ == "__main__":
    for saved_path in shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")):
        print(saved_path)
