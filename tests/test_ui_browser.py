"""The web view in a real browser (headless chromium): the runs table of a store of real runs,
sorted by a metric and filtered, a run with its log and metric plot, two runs compared, a
lineage link followed, plots, a run followed live; screenshots go to the test's folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import start_browser, wait_for
from conftest import Reprun
from uistore import HTML_VALUE, Client, DemoStore, SweepStore, demo_store, serving, sweep_store

pytestmark = pytest.mark.xdist_group("ui-browser")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return demo_store(tmp_path_factory.mktemp("ui-browser-store"))


@pytest.fixture(scope="module")
def client(demo: DemoStore) -> Iterator[Client]:
    with serving(demo.reprun.home) as c:
        yield c


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_browser(tmp_path_factory.mktemp("downloads"))
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser on one server, with screenshots into the test's folder."""

    def __init__(self, browser: Any, client: Client, shots: Path) -> None:
        self.browser = browser
        self.base = f"http://127.0.0.1:{client.port}/"
        self.shots = shots
        self.count = 0

    def open(self, fragment: str) -> None:
        self.browser.get(self.base + "#" + fragment)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        found: list[Any] = self.browser.find_elements(By.CSS_SELECTOR, css)
        return found

    def wait(self, css: str, what: str = "", timeout: float = 20) -> Any:
        return wait_for(self.browser, lambda _b: (self.all(css) or [None])[0], timeout,
                        what or css)

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        assert self.browser.save_screenshot(str(path)), path
        return path

    def table_ids(self) -> list[str]:
        """The run ids of the table's rows, read again if the table was redrawn meanwhile (it
        is, when the page's poll finds the store changed or the columns arrive)."""
        return self.stable(lambda: [row.get_attribute("data-run")
                                    for row in self.all("#runs tbody tr")])

    def click(self, css: str) -> None:
        self.stable(lambda: self.find(css).click())

    def stable(self, read: Any, tries: int = 50) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(tries - 1):
            try:
                return read()
            except StaleElementReferenceException:
                continue
        return read()

    def hash_params(self) -> dict[str, str]:
        fragment = urllib.parse.urlsplit(self.browser.current_url).fragment
        return dict(urllib.parse.parse_qsl(fragment.partition("?")[2]))

    def console_errors(self) -> list[Any]:
        return [e for e in self.browser.get_log("browser") if e["level"] == "SEVERE"
                and "favicon" not in e["message"]]


@pytest.fixture
def page(browser: Any, client: Client, tmp_path: Path) -> Page:
    browser.get_log("browser")  # forget what earlier tests logged
    return Page(browser, client, tmp_path)


def cli_ids(demo: DemoStore, *args: str) -> list[str]:
    listed = demo.reprun("runs", "list", "--json", *args)
    assert listed.code == 0, listed.stderr
    return [row["run_id"] for row in listed.json()]


def test_the_runs_table_sorts_filters_and_escapes(page: Page, demo: DemoStore) -> None:
    page.open("/runs")
    page.wait("#runs tbody tr")
    assert page.table_ids() == cli_ids(demo)
    assert page.browser.title == "reprun"
    # The parameter that is HTML is shown as its text; no element was made from it.
    note = f'tr[data-run="{demo.runs["html"]}"] td[data-field="params.note"]'
    assert page.stable(lambda: page.find(note).text) == HTML_VALUE
    assert page.all("#runs img, #runs b") == []
    page.shot("runs")

    page.click('th[data-field="metrics.r2"]')
    wait_for(page.browser, lambda _b: page.hash_params().get("sort") == "metrics.r2")
    wait_for(page.browser, lambda _b: page.table_ids() == cli_ids(demo, "--sort", "metrics.r2"))
    page.click('th[data-field="metrics.r2"]')
    wait_for(page.browser, lambda _b: page.table_ids() == cli_ids(demo, "--sort", "-metrics.r2"))
    assert "sorted-desc" in page.stable(
        lambda: page.find('th[data-field="metrics.r2"]').get_attribute("class"))
    page.shot("sorted")

    where = page.find("#where")
    where.send_keys("params.layers = 2 and metrics.r2 > 0.5\n")
    wanted = cli_ids(demo, "--where", "params.layers = 2 and metrics.r2 > 0.5", "--sort",
                     "-metrics.r2")
    assert len(wanted) == 3
    wait_for(page.browser, lambda _b: page.table_ids() == wanted, what="the filtered table")
    page.shot("filtered")
    # The state is in the address: opening it again shows the same table.
    shared = page.browser.current_url
    page.open("/plots")
    page.browser.get(shared)
    wait_for(page.browser, lambda _b: page.table_ids() == wanted, what="the shared table")

    where = page.find("#where")
    where.clear()
    where.send_keys("metrics.r2 >\n")
    error = page.wait(".error", "the filter's error")
    cli = demo.reprun("runs", "list", "--where", "metrics.r2 >")
    assert error.text == cli.error_lines[0].removeprefix("reprun: error: ")
    page.shot("bad-filter")
    assert page.console_errors() == [] or all("400" in e["message"]
                                              for e in page.console_errors())


def test_the_default_columns_are_the_metrics_then_the_parameters_that_vary(
        page: Page, demo: DemoStore) -> None:
    page.open("/runs")
    page.wait("#runs tbody tr")
    heads = page.stable(lambda: [th.get_attribute("data-field")
                                 for th in page.all("#runs th.sortable")])
    # not the store's first parameter names (gate, layers, ...), mostly '-'
    assert heads[5:] == ["metrics.loss", "metrics.r2", "params.alpha", "params.layers",
                         "params.note"]
    page.open("/runs?" + urllib.parse.urlencode({"where": "entry_point = fit"}))
    wait_for(page.browser, lambda _b: page.table_ids() == cli_ids(demo, "--where",
                                                                  "entry_point = fit"))
    heads = page.stable(lambda: [th.get_attribute("data-field")
                                 for th in page.all("#runs th.sortable")])
    assert heads[5:] == ["metrics.r2"]


def test_favicon_and_links_out(page: Page, demo: DemoStore, client: Client) -> None:
    code, headers, _body = client.request("/static/favicon.svg")
    assert code == 200 and headers["Content-Type"] == "image/svg+xml"
    page.open("/runs")
    page.wait("#runs tbody tr")
    assert [e for e in page.browser.get_log("browser") if "favicon" in e["message"]] == []
    tags = page.browser.execute_script(
        "return [externalLink('https://mlflow.example/#/experiments/1/runs/abc', 'x'),"
        " externalLink('javascript:alert(1)', 'y')].map(n => [n.tagName, n.getAttribute('href')])")
    assert tags == [["A", "https://mlflow.example/#/experiments/1/runs/abc"], ["SPAN", None]]


def test_a_run_shows_its_record_log_and_metric_plot(page: Page, demo: DemoStore) -> None:
    page.open("/runs")
    page.wait(f'tr[data-run="{demo.runs["dirty"]}"] a.run-link')  # (not the last page's table)
    page.click(f'tr[data-run="{demo.runs["dirty"]}"] a.run-link')
    page.wait("#run-id")
    assert page.find("#run-id").text == demo.runs["dirty"]
    log = wait_for(page.browser, lambda _b: "loss: " in page.find("#log").text and page.find(
        "#log"), what="the log")
    assert "training alpha=0.2 layers=3" in log.text
    page.wait('#metric-plot[data-ready="1"] .main-svg', "the metric plot")
    assert len(page.all("#metric-plot .scatterlayer .trace")) == 1  # loss; r2 has one value
    assert page.find("#metric-values").text.startswith("r2 = 0.95 ")
    assert page.find("#command").text == "python train.py 0.2 3"
    patch = page.wait("#patch pre.diff", "the patch")
    assert "+import sys, os" in patch.text
    assert page.all("#patch span.add")
    params = page.browser.execute_script(
        "return [...document.querySelectorAll('#parameters tr')].filter(r => r.cells[0]"
        ".tagName === 'TD').map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    assert dict(params) == {"alpha": "0.2", "layers": "3", "note": "plain"}
    page.shot("run")
    page.open(f"/run/{demo.runs['html']}")
    wait_for(page.browser, lambda _b: page.find("#run-id").text == demo.runs["html"])
    value = page.wait("#parameters tr[data-name=note] td.param-value")
    assert value.text == HTML_VALUE and page.all("#parameters img") == []
    assert page.browser.title == "reprun"
    page.open("/run/ffff0000ffff")
    assert "no run matches 'ffff0000ffff'" in page.wait(".error").text


def test_two_selected_runs_are_compared(page: Page, demo: DemoStore) -> None:
    a, b = demo.runs["dirty"], demo.runs["a0.1-l2"]
    page.open("/runs")
    # The rows of these two runs (a table drawn for an earlier page may still be there).
    page.wait(f'input.select[data-run="{a}"]', "the first run's row")
    page.wait(f'input.select[data-run="{b}"]', "the second run's row")
    assert page.find("#compare").get_attribute("disabled") is not None
    page.click(f'input.select[data-run="{a}"]')
    page.click(f'input.select[data-run="{b}"]')
    assert page.hash_params()["sel"].split(",") == [a, b]
    page.click("#compare")
    page.wait("#compare-table")
    headers = [th.text for th in page.all("#compare-table tr:first-child th")][1:]
    assert headers == [a[:12], b[:12]]
    alpha = page.find('#compare-table tr[data-field="params.alpha"]')
    assert "differs" in alpha.get_attribute("class")
    assert [td.text for td in alpha.find_elements("css selector", "td")] == [
        "params.alpha", "0.2", "0.1"]
    r2 = page.find('#compare-table tr[data-field="metrics.r2"]')
    best = r2.find_elements("css selector", "td.best")
    assert [td.text for td in best] == ["0.9667"]  # max, as the MLproject says
    files = page.wait(".diff-view .code-files", "the diff")
    assert files.text == "train.py"
    diff_text = page.find(".diff-view").text
    assert "parameter alpha" in diff_text and "metric r2" in diff_text
    page.shot("compare")


def test_a_lineage_link_is_followed_both_ways(page: Page, demo: DemoStore) -> None:
    page.open(f"/run/{demo.runs['fit']}")
    link = page.wait("#inputs td.lineage a", "the lineage link")
    assert link.text == demo.runs["prepare"][:8]
    link.click()
    wait_for(page.browser, lambda _b: page.all("#run-id")
             and page.find("#run-id").text == demo.runs["prepare"], what="the producing run")
    consumer = page.wait("#consumers a", "the runs that read its output")
    assert consumer.text == demo.runs["fit"][:12]
    page.shot("lineage")
    consumer.click()
    wait_for(page.browser, lambda _b: page.find("#run-id").text == demo.runs["fit"])


def test_plots_over_steps_against_a_parameter_and_parallel_coordinates(
        page: Page, demo: DemoStore) -> None:
    a, b = demo.runs["a0.1-l2"], demo.runs["a0.9-l2"]
    page.open("/runs?" + urllib.parse.urlencode({"sel": f"{a},{b}"}))
    page.wait("#runs tbody tr")
    page.click("#plot-selected")
    page.wait('#steps-plot[data-ready="2"]', "two runs' loss over steps")
    assert len(page.all("#steps-plot .scatterlayer .trace")) == 2
    # The other plots are of the selection too, against a parameter it has that varies.
    page.wait('#parcoords-plot[data-ready="2"]', "the selection's parallel coordinates")
    assert page.find("#plot-x").get_attribute("value") == "params.alpha"
    assert page.find("#plot-dims").get_attribute("value") == "params.alpha"
    page.open("/plots?" + urllib.parse.urlencode({
        "where": "entry_point = main", "metric": "r2", "x": "params.alpha",
        "dims": "params.alpha,params.layers,params.note"}))
    rows = len(cli_ids(demo, "--where", "entry_point = main"))
    page.wait(f'#scatter-plot[data-ready="{rows}"]', "the metric against a parameter")
    assert len(page.all("#scatter-plot .scatterlayer .point")) == rows
    page.wait(f'#parcoords-plot[data-ready="{rows}"]', "the parallel coordinates")
    labels = [t.get_attribute("textContent") for t in page.all("#parcoords-plot .axis-title")]
    assert labels == ["params.alpha", "params.layers", "params.note", "metrics.r2"]
    assert len(page.all("#parcoords-plot .pc-line")) == rows
    # Without chosen axes, the parameters that vary among the runs the filter selects.
    page.open("/plots?" + urllib.parse.urlencode({
        "where": "entry_point = main and params.layers = 2", "metric": "loss"}))
    page.wait('#parcoords-plot[data-ready="3"]', "the default axes")
    labels = [t.get_attribute("textContent") for t in page.all("#parcoords-plot .axis-title")]
    assert labels == ["params.alpha", "params.note", "metrics.loss"]
    # The HTML value is a tick label, as text.
    ticks = [t.get_attribute("textContent") for t in page.all("#parcoords-plot text.tick")]
    assert HTML_VALUE[:23] + "…" in ticks and page.all("#parcoords-plot img") == []
    page.shot("plots")
    # A text parameter on Plotly's axis is shown as its text (Plotly reads <b>, <a> in labels).
    page.open("/plots?" + urllib.parse.urlencode({
        "where": "entry_point = main", "metric": "r2", "x": "params.note"}))
    page.wait(f'#scatter-plot[data-ready="{rows}"]', "the metric against a text parameter")
    ticks = [t.get_attribute("textContent") for t in page.all("#scatter-plot .xtick text")]
    assert sorted(ticks) == sorted([HTML_VALUE, "plain"])
    assert page.all("#scatter-plot .xtick text tspan") == []  # no <b> made bold


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    return sweep_store(tmp_path_factory.mktemp("ui-browser-sweep"))


def test_a_sweep_is_listed_ranked_and_plotted(browser: Any, swept: SweepStore,
                                              tmp_path: Path) -> None:
    sid = swept.sweep_id
    shown = swept.reprun("sweep", "show", sid, "--json").json()
    with serving(swept.reprun.home) as client:
        page = Page(browser, client, tmp_path)
        browser.get_log("browser")
        page.open("/runs")
        page.wait("#runs tbody tr")
        page.click("#nav-sweeps")
        page.wait("#sweeps tbody tr")
        assert page.stable(lambda: [r.get_attribute("data-sweep")
                                    for r in page.all("#sweeps tbody tr")]) == [sid]
        best = shown["trials"][0]
        assert page.stable(lambda: page.find(f'tr[data-sweep="{sid}"] td[data-field="best"]'
                                             ).text) == "0.01"
        page.click(f'tr[data-sweep="{sid}"] a.sweep-link')
        wait_for(browser, lambda _b: page.find("#sweep-id").text == sid, what="the sweep page")
        assert urllib.parse.urlsplit(browser.current_url).fragment == f"/sweeps/{sid}"
        # The trials ranked as 'sweep show' ranks them; the failed one shown as such, last.
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#trials tbody tr')].map(r => "
            "[Number(r.dataset.trial), r.dataset.run, r.cells[2].textContent])")
        assert rows == [[t["index"], t["run_id"], t["status"] or "PENDING"]
                        for t in shown["trials"]]
        assert rows[-1][2] == "FAILED" and [r[2] for r in rows[:-1]] == ["FINISHED"] * 5
        values = [td.text for td in page.all('#trials td[data-field="value"]')]
        assert values[0] == "0.01" and values[-1] == "-"
        assert [c.text for c in page.all("#sweep-params code")] == ["-P x=0.1,0.5,0.9",
                                                                    "-P opt=adam,sgd"]
        # Parallel coordinates of the swept parameters and the sweep's metric.
        page.wait('#sweep-parcoords[data-ready="5"]', "the sweep's parallel coordinates")
        labels = [t.get_attribute("textContent")
                  for t in page.all("#sweep-parcoords .axis-title")]
        assert labels == ["params.x", "params.opt", "metrics.loss"]
        assert len(page.all("#sweep-parcoords .pc-line")) == 5
        page.shot("sweep")
        # A trial's run, and back through its "this sweep" link.
        page.click(f'#trials tr[data-trial="{best["index"]}"] a.run-link')
        wait_for(browser, lambda _b: page.find("#run-id").text == best["run_id"],
                 what="the best trial's run")
        page.click("#this-sweep")
        wait_for(browser, lambda _b: page.find("#sweep-id").text == sid, what="back to the sweep")
        # Its runs: the table shows the trial, the swept parameters and the sweep's metric.
        page.click("#sweep-runs")
        page.wait("#runs tbody tr")
        where = f"sweep = '{sid}'"
        cli = swept.reprun("runs", "list", "--json", "--where", where).json()
        wait_for(browser, lambda _b: page.table_ids() == [r["run_id"] for r in cli],
                 what="the sweep's runs")
        heads = page.stable(lambda: [th.get_attribute("data-field")
                                     for th in page.all("#runs th.sortable")])
        # (not the store's first metric by name, aaa, that none of the sweep's runs reported)
        assert heads[5:] == ["trial", "params.x", "params.opt", "metrics.loss", "metrics.acc"]
        trial = page.stable(lambda: page.find(
            f'tr[data-run="{best["run_id"]}"] td[data-field="trial"]').text)
        assert trial == str(best["index"])
        page.shot("sweep-runs")
        # Its plots: the sweep's metric by default (not the first metric by name, acc).
        page.click("#plot-filter")
        page.wait('#parcoords-plot[data-ready="5"]', "the plots of the sweep's runs")
        assert page.find("#plot-metric").get_attribute("value") == "loss"
        labels = [t.get_attribute("textContent") for t in page.all("#parcoords-plot .axis-title")]
        assert labels[-1] == "metrics.loss"
        page.open("/sweeps/sfffffffff")
        assert "no sweep matches 'sfffffffff'" in page.wait(".error").text
        page.open("/sweeps/..%2f..%2fetc")
        wait_for(browser, lambda _b: "a sweep id is 's' and 11 hexadecimal digits" in page.find(
            ".error").text, what="the refused id")
        assert [e for e in page.console_errors() if "404" not in e["message"]] == []


def test_csv_download_link_asks_for_the_table(page: Page, demo: DemoStore,
                                              client: Client) -> None:
    page.open("/runs?" + urllib.parse.urlencode({"where": "metrics.r2 > 0.5",
                                                  "sort": "-metrics.r2", "cols": "params.alpha"}))
    page.wait("#runs tbody tr")
    href = page.find("#csv").get_attribute("href")
    path = urllib.parse.urlsplit(href)
    code, _h, body = client.request(f"{path.path}?{path.query}")
    cli = demo.reprun("runs", "list", "--csv", "--where", "metrics.r2 > 0.5", "--sort",
                      "-metrics.r2", "-c",
                      "status,started,duration,project,entry_point,params.alpha")
    assert code == 200 and body.decode() == cli.stdout


def test_new_runs_and_a_running_log_appear_without_a_reload(
        browser: Any, demo: DemoStore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.reprun.home, home)
    reprun = Reprun(home, tmp_path)
    with serving(home) as client:
        page = Page(browser, client, tmp_path)
        page.open("/runs")
        page.wait("#runs tbody tr")
        before = page.table_ids()
        browser.execute_script("window.__marker = 'same page'")
        gate = tmp_path / "gate"
        proc = reprun.popen("run", str(demo.project), "-e", "slow", "-P", f"gate={gate}",
                            "--env-manager", "local")
        try:
            wait_for(browser, lambda _b: len(page.table_ids()) == len(before) + 1, 60,
                     "the new run in the table")
            new = page.table_ids()[0]
            status = f'tr[data-run="{new}"] td[data-field="status"]'
            assert page.stable(lambda: page.find(status).text) == "RUNNING"
            assert browser.execute_script("return window.__marker") == "same page"
            page.shot("running-in-table")
            page.click(f'tr[data-run="{new}"] a.run-link')
            wait_for(browser, lambda _b: "first line" in page.find("#log").text, 30,
                     "the first line of the running log")
            assert "second line" not in page.find("#log").text
            assert "following" in page.find("#log-note").text
            gate.touch()
            wait_for(browser, lambda _b: "second line" in page.find("#log").text, 30,
                     "the line printed later")
            page.shot("log-followed")
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                gate.touch()
                proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        wait_for(browser, lambda _b: page.all("#run-id") and "FINISHED" in page.find("h1").text,
                 30, "the run's end")
        assert page.find("#log").text.count("first line") == 1


def test_a_browser_that_cannot_start_fails(tmp_path: Path) -> None:
    """The fixture fails (not skips) when chromium cannot start: here, with a driver that is
    not one."""
    code = (
        "import sys, shutil; sys.path.insert(0, 'tests'); import browser; "
        "shutil.which = lambda name, *a, **k: None; browser.start_browser()")
    done = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode != 0
    assert "Failed" in done.stderr and "chromium and chromedriver are needed" in done.stderr


def test_a_long_log_is_read_in_parts_without_breaking_a_character(
        browser: Any, demo: DemoStore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.reprun.home, home)
    run = demo.runs["a0.5-l4"]
    record = Reprun(home, tmp_path).record(run)
    text = "a" * ((1 << 20) - 1) + "é, naïve — 日本\nthe end\n"  # é straddles the first 1 MiB
    (home / "runs" / run / record["log_file"]).write_text(text, encoding="utf-8")
    with serving(home) as client:
        page = Page(browser, client, tmp_path)
        page.open(f"/run/{run}")
        size = len(text.encode())
        wait_for(browser, lambda _b: page.find("#log-note").text == f"{size} bytes", 30,
                 "the whole log")
        shown = browser.execute_script("return document.getElementById('log').textContent")
        assert shown == text
