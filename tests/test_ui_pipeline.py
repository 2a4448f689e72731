"""The web view's pipeline page: /api/pipelines/ID answers what ``runs show --json`` prints for
a pipeline run (and 404 for any other run), and in a real browser (headless chromium) a
pipeline run's page draws its graph with each step's status, reuse and metrics, each step
linking to its run, whose page links back to the pipeline run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import start_browser, wait_for
from conftest import Reprun, init_repo
from uistore import Client, serving

pytestmark = pytest.mark.xdist_group("ui-browser")

MLPROJECT = """\
name: steps
entry_points:
  prep:
    command: 'printf "a\\nb\\nc\\n" > "$REPRUN_OUTPUT_DIR/clean.csv" && echo "rows: 3"'
    metrics: {stdout: true}
  train:
    parameters: {data: path, alpha: float}
    command: 'wc -l < {data} > "$REPRUN_OUTPUT_DIR/model.txt" && echo "loss: {alpha}"'
    metrics: {stdout: true}
  evaluate:
    parameters: {model: path, data: path}
    command: 'cat {model} {data} > /dev/null && echo "mse: 0.25"'
    metrics: {stdout: true}
pipelines:
  all:
    parameters: {alpha: {type: float, default: 0.5}}
    steps:
      prep: {entry_point: prep}
      train: {entry_point: train, parameters: {data: "{prep.outputs}/clean.csv", alpha: "{alpha}"}}
      evaluate: {entry_point: evaluate, parameters: {model: "{train.outputs}/model.txt",
                                                     data: "{prep.outputs}/clean.csv"}}
"""


@dataclass
class PipelineStore:
    reprun: Reprun
    first: str  # every step ran
    second: str  # alpha changed: prep reused, train and evaluate ran


def pipeline_run(reprun: Reprun, project: Path, alpha: str) -> str:
    result = reprun("run", str(project), "-e", "all", "-P", f"alpha={alpha}",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("reprun: pipeline run "))
    return line.split()[3]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PipelineStore:
    root = tmp_path_factory.mktemp("ui-pipeline")
    (root / "work").mkdir()
    reprun = Reprun(root / "reprun-home", root / "work")
    project = root / "steps"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    init_repo(project)
    return PipelineStore(reprun, pipeline_run(reprun, project, "0.3"),
                         pipeline_run(reprun, project, "0.9"))


@pytest.fixture(scope="module")
def client(store: PipelineStore) -> Iterator[Client]:
    with serving(store.reprun.home) as c:
        yield c


def shown(store: PipelineStore, run_id: str) -> Any:
    result = store.reprun("runs", "show", run_id, "--json")
    assert result.code == 0, result.stderr
    return result.json()


# -- the API -------------------------------------------------------------------------------

def test_pipeline_endpoint_answers_what_runs_show_json_prints(
        store: PipelineStore, client: Client) -> None:
    cli = shown(store, store.second)
    assert client.json(f"/api/pipelines/{store.second[:8]}") == cli
    steps = {s["name"]: s for s in cli["pipeline"]["steps"]}
    assert steps["prep"]["reused_from"] is not None and steps["train"]["reused_from"] is None
    assert cli["metrics"]["train.loss"]["last"] == 0.9


def test_pipeline_endpoint_refuses_a_step_run_and_unknown_ids(
        store: PipelineStore, client: Client) -> None:
    step = shown(store, store.first)["pipeline"]["steps"][1]["run_id"]
    assert client.error(f"/api/pipelines/{step}", 404) == (
        f"run {step[:8]} is not a pipeline run (it runs entry point 'train'); its record is at "
        f"/api/runs/{step[:8]}")
    assert "no run matches" in client.error("/api/pipelines/ffffffff", 404)
    assert "a run id is 4 to 64 hexadecimal digits" in client.error(
        "/api/pipelines/..%2f..%2fetc", 404)


# -- the page in a browser -----------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_browser(tmp_path_factory.mktemp("downloads"))
    try:
        yield driver
    finally:
        driver.quit()


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    found: list[Any] = browser.find_elements(By.CSS_SELECTOR, selector)
    return found


def wait(browser: Any, selector: str, count: int = 1) -> list[Any]:
    def enough(b: Any) -> list[Any] | None:
        found = css(b, selector)
        return found if len(found) >= count else None

    shown: list[Any] = wait_for(browser, enough, what=selector)
    return shown


def test_a_pipeline_run_page_draws_its_graph_and_links_steps_both_ways(
        store: PipelineStore, client: Client, browser: Any, tmp_path: Path) -> None:
    record = shown(store, store.second)
    steps = {s["name"]: s for s in record["pipeline"]["steps"]}
    browser.get(f"http://127.0.0.1:{client.port}/#/run/{store.second}")
    nodes = wait(browser, "#pipeline-graph g.pipeline-node", 3)
    assert [n.get_attribute("data-step") for n in nodes] == ["prep", "train", "evaluate"]
    by_name = {n.get_attribute("data-step"): n for n in nodes}
    assert by_name["prep"].get_attribute("data-reused") == steps["prep"]["reused_from"]
    assert by_name["train"].get_attribute("data-reused") == ""
    assert by_name["train"].get_attribute("data-status") == "FINISHED"
    texts = {name: [t.text for t in css(node, "text")] for name, node in by_name.items()}
    assert texts["prep"][1] == f"reused from {steps['prep']['reused_from'][:8]}"
    assert texts["prep"][2] == "rows=3"
    assert texts["train"][1] == f"FINISHED run {steps['train']['run_id'][:8]}"
    assert texts["train"][2] == "loss=0.9"
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to"))
             for e in css(browser, "#pipeline-graph path.pipeline-edge")}
    assert edges == {("prep", "train"), ("train", "evaluate"), ("prep", "evaluate")}
    rows = css(browser, "#pipeline-steps tbody tr")
    assert [r.get_attribute("data-run") for r in rows] == [
        steps[n]["run_id"] for n in ("prep", "train", "evaluate")]
    assert css(rows[2], "td.step-metrics")[0].text == "mse=0.25"
    assert browser.save_screenshot(str(tmp_path / "pipeline.png"))

    # a step's node opens its run, whose page links back to the pipeline run
    css(browser, f'#pipeline-graph a.step-link[data-run="{steps["train"]["run_id"]}"]')[0].click()
    wait_for(browser, lambda b: (css(b, "#run-id") or [None])[0] is not None
             and css(b, "#run-id")[0].text == steps["train"]["run_id"], what="the step's run")
    assert not css(browser, "#pipeline-graph")
    wait(browser, "#parent a.run-link")[0].click()
    wait_for(browser, lambda b: (css(b, "#run-id") or [None])[0] is not None
             and css(b, "#run-id")[0].text == store.second, what="the pipeline run again")
    wait(browser, "#pipeline-graph g.pipeline-node", 3)
    errors = [e for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
    assert not errors, errors
