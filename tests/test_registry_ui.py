"""The model registry in the web view: /api/models answers what the CLI's --json prints, and the
Models pages in a real browser (headless chromium): the list, a model's versions and alias
history, a version's lineage back to the run that made its data, the link from a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import start_browser, wait_for
from conftest import Reprun, init_repo
from uistore import Client, serving

pytestmark = pytest.mark.xdist_group("ui-browser")

PREP = """
name: wine
entry_points:
  prep:
    command: "python prep.py"
  train:
    parameters:
      data: {type: path}
    command: "python train.py {data}"
    models: {wine-regressor: model}
"""
PREP_PY = ("import os\n"
           "open(os.environ['REPRUN_OUTPUT_DIR'] + '/data.csv', 'w').write('a,b\\n1,2\\n')\n")
TRAIN = """
import json, os, sys
out = os.environ["REPRUN_OUTPUT_DIR"]
os.makedirs(out + "/model", exist_ok=True)
open(out + "/model/weights.txt", "w").write(open(sys.argv[1]).read().upper())
open(out + "/model/MLmodel", "w").write("flavors:\\n  python_function: {}\\n")
json.dump({"rmse": 0.25}, open(out + "/metrics.json", "w"))
"""


class Registry:
    def __init__(self, reprun: Reprun, prep: str, train: str) -> None:
        self.reprun, self.prep, self.train = reprun, prep, train


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("ui-models")
    project = root / "wine"
    project.mkdir()
    (project / "MLproject").write_text(PREP)
    (project / "train.py").write_text(TRAIN)
    (project / "prep.py").write_text(PREP_PY)
    init_repo(project)
    (root / "work").mkdir()
    reprun = Reprun(root / "home", root / "work")

    def run(*args: str) -> str:
        result = reprun("run", str(project), "--env-manager", "local", "-q", *args)
        assert result.code == 0, result.stderr
        return str(reprun.last_record()["run_id"])

    prep = run("-e", "prep")
    data = Path(reprun.record(prep)["output_dir"]) / "data.csv"
    train = run("-e", "train", "-P", f"data={data}")
    for args in (("alias", "wine-regressor", "1", "staging"),
                 ("alias", "wine-regressor", "1", "production"),
                 ("register", "notes", f"{prep}:data.csv", "--description", "<b>raw</b>")):
        result = reprun("models", *args)
        assert result.code == 0, result.stderr
    return Registry(reprun, prep, train)


@pytest.fixture(scope="module")
def client(registry: Registry) -> Iterator[Client]:
    with serving(registry.reprun.home) as c:
        yield c


def test_the_api_answers_what_the_cli_prints(registry: Registry, client: Client) -> None:
    cli = registry.reprun
    assert client.json("/api/models") == cli("models", "list", "--json").json()
    assert client.json("/api/models/wine-regressor") == cli(
        "models", "show", "wine-regressor", "--json").json()
    for which, ref in (("1", "wine-regressor:1"), ("@production", "wine-regressor@production"),
                       ("@latest", "wine-regressor@latest")):
        version = client.json(f"/api/models/wine-regressor/{which}")
        assert version == cli("models", "show", ref, "--json").json()
    lineage = client.json("/api/models/wine-regressor/1")["lineage"]
    assert lineage["inputs"][0]["produced_by"] == [registry.prep]
    made = client.json(f"/api/runs/{registry.train[:8]}/models")
    assert [(v["name"], v["version"], v["aliases"]) for v in made] == [
        ("wine-regressor", 1, ["production", "staging"])]
    assert client.json(f"/api/runs/{registry.prep}/models")[0]["name"] == "notes"
    assert "no model named 'nope'" in client.error("/api/models/nope", 404)
    assert "has no version 7" in client.error("/api/models/wine-regressor/7", 404)
    assert "has no alias 'x'" in client.error("/api/models/wine-regressor/@x", 404)
    assert "contains '..'" in client.error("/api/models/a..b", 400)
    assert "contains '/'" in client.error("/api/models/a%2Fb", 400)
    assert "is not a number" in client.error("/api/models/notes/x", 400)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def test_models_pages_in_a_browser(registry: Registry, client: Client, browser: Any,
                                   tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    def find(css: str, timeout: float = 20) -> Any:
        return wait_for(browser, lambda b: (b.find_elements(By.CSS_SELECTOR, css) or [None])[0],
                        timeout, css)

    base = f"http://127.0.0.1:{client.port}/"
    browser.get(base + "#/runs")
    find("#nav-models").click()
    find("#models tr[data-model='wine-regressor']")
    rows = browser.find_elements(By.CSS_SELECTOR, "#models tr[data-model]")
    assert [r.get_attribute("data-model") for r in rows] == ["notes", "wine-regressor"]
    notes = browser.find_element(By.CSS_SELECTOR, "#models tr[data-model='notes']").text
    assert "<b>raw</b>" in notes  # data shown as text, never as HTML
    assert browser.save_screenshot(str(tmp_path / "01-models.png"))
    browser.find_element(By.CSS_SELECTOR,
                         "#models tr[data-model='wine-regressor'] td a.model-link").click()
    find("#versions tr[data-version='1']")
    history = find("#alias-history").text
    assert "@production" in history and "@staging" in history
    assert browser.save_screenshot(str(tmp_path / "02-model.png"))
    browser.find_element(By.CSS_SELECTOR, "#versions tr[data-version='1'] a.model-link").click()
    digest = find("#version-digest").text
    assert digest == client.json("/api/models/wine-regressor/1")["digest"]
    inputs = find("#version-inputs").text
    assert registry.prep[:8] in inputs
    assert browser.save_screenshot(str(tmp_path / "03-version.png"))
    # The input's producer is a link to the run that made the data; the run of the version
    # links back to its models.
    browser.find_element(By.CSS_SELECTOR, "#version-inputs a.run-link").click()
    find("#run-id")
    assert registry.prep in browser.find_element(By.CSS_SELECTOR, "#run-id").text
    browser.get(base + "#/run/" + registry.train)
    wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#run-id").text
             == registry.train, 20, "the page of the training run")
    link = find("#run-models a.model-link")
    assert link.text == "wine-regressor v1"
    assert "@production" in browser.find_element(By.CSS_SELECTOR, "#run-models").text
    browser.get(base + "#/models/nope")
    assert "no model named 'nope'" in find("main .error").text
