"""The web view's API (`reprun ui`): each endpoint answers what the CLI's ``--json`` prints for
the same store, and every error: unknown runs, bad filters, path traversal, links out of a run's
folder, a missing token, another method, another Host."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Reprun
from uistore import HTML_VALUE, Client, DemoStore, SweepStore, demo_store, serving, sweep_store

from runner.record.store import RunStore
from runner.ui import make_server

pytestmark = pytest.mark.xdist_group("ui-api")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return demo_store(tmp_path_factory.mktemp("ui-store"))


@pytest.fixture(scope="module")
def client(demo: DemoStore) -> Iterator[Client]:
    with serving(demo.reprun.home) as c:
        yield c


def q(**params: str) -> str:
    import urllib.parse

    return "?" + urllib.parse.urlencode(params)


# -- one model, two faces ------------------------------------------------------------------

@pytest.mark.parametrize("cli_args", [
    (),
    ("-c", "params.alpha,metrics.r2,status", "--sort", "-metrics.r2"),
    ("--where", "metrics.r2 > 0.5 and params.layers = 2", "-c", "params.alpha", "-n", "2"),
])
def test_runs_endpoint_answers_what_runs_list_json_prints(
        demo: DemoStore, client: Client, cli_args: tuple[str, ...]) -> None:
    cli = demo.reprun("runs", "list", "--json", *cli_args)
    assert cli.code == 0, cli.stderr
    options = dict(zip(cli_args[::2], cli_args[1::2], strict=True))
    names = {"-c": "columns", "--sort": "sort", "--where": "where", "-n": "limit"}
    params = {names[k]: v for k, v in options.items()}
    assert client.json("/api/runs" + (q(**params) if params else "")) == cli.json()
    assert cli.json(), "the comparison must not be of two empty lists"


def test_csv_endpoint_answers_what_runs_list_csv_prints(demo: DemoStore, client: Client) -> None:
    cli = demo.reprun("runs", "list", "--csv", "-c", "params.alpha,metrics.loss", "--sort",
                      "metrics.loss")
    code, headers, body = client.request("/api/runs.csv" + q(columns="params.alpha,metrics.loss",
                                                             sort="metrics.loss"))
    assert code == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    assert body.decode() == cli.stdout
    default = client.request("/api/runs.csv")[2].decode()
    assert default == demo.reprun("runs", "list", "--csv").stdout


def test_run_endpoints_answer_what_show_compare_diff_and_lineage_print(
        demo: DemoStore, client: Client) -> None:
    runs = demo.runs
    for role in ("dirty", "failed", "fit"):
        assert client.json(f"/api/runs/{runs[role]}") == demo.reprun.record(runs[role])
    assert client.json(f"/api/runs/{runs['dirty'][:8]}")["run_id"] == runs["dirty"]
    a, b, c = runs["dirty"], runs["a0.1-l2"], runs["a0.5-l4"]
    cli = demo.reprun("runs", "compare", a, b, c, "--json").json()
    assert client.json("/api/compare" + q(runs=f"{a},{b[:10]},{c}")) == cli
    cli = demo.reprun("runs", "compare", a, b, "--better", "loss:max", "--json").json()
    assert client.json("/api/compare" + q(runs=f"{a},{b}", better="loss:max")) == cli
    diff = demo.reprun("diff", a, b, "--json").json()
    assert client.json("/api/diff" + q(runs=f"{a},{b}")) == diff
    assert diff["code"]["files"] == ["train.py"]
    for down in ("", "1"):
        args = ("--down",) if down else ()
        run = runs["prepare"] if down else runs["fit"]
        cli = demo.reprun("runs", "lineage", run, "--json", *args).json()
        assert client.json(f"/api/runs/{run}/lineage" + (q(down=down) if down else "")) == cli
        assert cli["children"], "the lineage must link the two runs"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    return sweep_store(tmp_path_factory.mktemp("ui-sweep-store"))


@pytest.fixture(scope="module")
def sweep_client(swept: SweepStore) -> Iterator[Client]:
    with serving(swept.reprun.home) as c:
        yield c


def test_sweep_endpoints_answer_what_sweep_list_and_show_print(
        swept: SweepStore, sweep_client: Client, demo: DemoStore, client: Client) -> None:
    listed = swept.reprun("sweep", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert sweep_client.json("/api/sweeps") == listed.json()
    [row] = listed.json()
    assert (row["status"], row["trials_done"], row["trials_total"]) == ("FAILED", 5, 6)
    assert row["metric"] == "loss" and row["goal"] == "min"
    sid = swept.sweep_id
    shown = swept.reprun("sweep", "show", sid, "--json")
    assert shown.code == 0, shown.stderr
    assert sweep_client.json(f"/api/sweeps/{sid}") == shown.json()
    assert sweep_client.json(f"/api/sweeps/{sid[:5]}") == shown.json()  # a prefix, as the CLI
    trials = shown.json()["trials"]
    assert trials[-1]["status"] == "FAILED" and trials[-1]["params"] == {"x": "0.9", "opt": "sgd"}
    assert trials[0]["run_id"] == row["best"]["run_id"] and trials[0]["params"]["x"] == "0.5"
    by_acc = swept.reprun("sweep", "show", sid, "--metric", "metrics.acc:max", "--json").json()
    assert sweep_client.json(f"/api/sweeps/{sid}" + q(metric="metrics.acc:max")) == by_acc
    assert by_acc["trials"][0]["params"]["x"] == "0.1"
    # A store without sweeps: an empty list, as the CLI prints.
    assert client.json("/api/sweeps") == demo.reprun("sweep", "list", "--json").json() == []


def test_an_unknown_sweep_is_404_with_the_clis_message(swept: SweepStore,
                                                       sweep_client: Client) -> None:
    cli = swept.reprun("sweep", "show", "sfffffffff", "--json")
    assert cli.code == 2 and cli.stdout == ""
    message = sweep_client.error("/api/sweeps/sfffffffff", 404)
    assert cli.stderr.strip() == f"reprun: error: {message}"
    assert "no sweep matches 'sfffffffff'" in message
    bad = sweep_client.error(f"/api/sweeps/{swept.sweep_id}" + q(metric="metrics.acc"), 400)
    assert bad == swept.reprun("sweep", "show", swept.sweep_id, "--metric", "metrics.acc"
                               ).stderr.strip().removeprefix("reprun: error: ")


@pytest.mark.parametrize("given", [
    "..%2f..%2fetc", "%2e%2e", "..", ".", "s12", "S1234567", "abcdef", "s123456789abc",
    "s12345%2f..", "s1234\\..", "%00s1234", "s1234%00",
])
def test_a_sweep_id_of_another_form_never_reaches_the_file_system(
        swept: SweepStore, sweep_client: Client, given: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.sweep.store import SweepStore as Store

    def touched(*_args: object) -> None:
        raise AssertionError("the sweep store was read")

    for name in ("ids", "load", "get", "resolve_id"):  # the server runs in this process
        monkeypatch.setattr(Store, name, touched)
    code, _headers, body = sweep_client.request(f"/api/sweeps/{given}")
    assert code == 404, body
    assert b"a sweep id is 's' and 11 hexadecimal digits" in body


@pytest.mark.parametrize("path", [
    "/api/sweeps/../../etc/passwd", "/api/sweeps/..%2f..%2fetc", "/api/sweeps/SWEEP/../x",
    "/api/sweeps/SWEEP/trials", "/api/sweeps/", "/api/sweeps/%2e%2e/sweep.json",
])
def test_no_sweep_path_reaches_the_file_system(swept: SweepStore, sweep_client: Client,
                                               path: str) -> None:
    code, _headers, body = sweep_client.request(path.replace("SWEEP", swept.sweep_id))
    assert code == 404, body
    assert b"root:" not in body


def test_a_parameter_that_is_html_comes_back_as_data(demo: DemoStore, client: Client) -> None:
    record = client.json(f"/api/runs/{demo.runs['html']}")
    assert record["parameters"]["note"] == HTML_VALUE
    rows = client.json("/api/runs" + q(columns="params.note", where="params.note != plain"))
    assert [r["params.note"] for r in rows] == [HTML_VALUE]


def test_fields_history_and_files(demo: DemoStore, client: Client) -> None:
    fields = client.json("/api/fields")
    assert {"alpha", "layers", "note", "raw", "table"} <= set(fields["params"])
    assert fields["metrics"] == ["loss", "r2"]
    history = client.json(f"/api/runs/{demo.runs['a0.1-l2']}/history")
    assert history["loss"] == {"step": [0, 1, 2, 3, 4], "value": [1.05, 0.55, 0.3833, 0.3, 0.25]}
    assert client.json(f"/api/runs/{demo.runs['prepare']}/history") == {}
    run_dir = demo.reprun.home / "runs" / demo.runs["dirty"]
    record = demo.reprun.record(demo.runs["dirty"])
    for which, name in (("patch", record["source"]["patch_file"]),
                        ("lock", record["environment"]["lock_file"]),
                        ("metrics", record["metrics_file"]), ("log", record["log_file"])):
        code, headers, body = client.request(f"/api/runs/{demo.runs['dirty']}/{which}")
        assert code == 200, (which, body)
        assert body == (run_dir / name).read_bytes()
        assert headers["X-File-Size"] == str(len(body))
        assert headers["X-Run-Status"] == "FINISHED"
    assert b"+import sys, os" in client.request(f"/api/runs/{demo.runs['dirty']}/patch")[2]


def test_the_log_is_read_from_an_offset(demo: DemoStore, client: Client) -> None:
    run = demo.runs["a0.9-l2"]
    whole = client.request(f"/api/runs/{run}/log")[2]
    assert b"loss: " in whole
    code, headers, rest = client.request(f"/api/runs/{run}/log?offset=10")
    assert code == 200 and rest == whole[10:] and headers["X-File-Size"] == str(len(whole))
    assert client.request(f"/api/runs/{run}/log?offset={len(whole) + 50}")[2] == b""
    assert "offset must be a whole number" in client.error(f"/api/runs/{run}/log?offset=-1", 400)


def test_changes_stamp_moves_when_a_run_is_recorded(tmp_path: Path, demo: DemoStore) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.reprun.home, home)
    with serving(home) as c:
        before = c.json("/api/changes")["stamp"]
        assert c.json("/api/changes")["stamp"] == before
        reprun = Reprun(home, tmp_path)
        assert reprun("run", str(demo.project), "-e", "fail", "--env-manager", "local",
                      "-q").code == 3
        assert c.json("/api/changes")["stamp"] != before
        assert len(c.json("/api/runs")) == len(demo.runs) + 1


# -- errors --------------------------------------------------------------------------------

def test_a_bad_filter_is_400_with_the_cli_message(demo: DemoStore, client: Client) -> None:
    for where in ("metrics.r2 <", "metrics.r2 > abc", "nosuch = 1", "(status = FINISHED"):
        cli = demo.reprun("runs", "list", "--where", where)
        assert cli.code == 2
        assert client.error("/api/runs" + q(where=where), 400) == \
            cli.error_lines[0].removeprefix("reprun: error: ")
    cli = demo.reprun("runs", "list", "--sort", "bogus")
    assert client.error("/api/runs" + q(sort="bogus"), 400) == \
        cli.error_lines[0].removeprefix("reprun: error: ")
    assert "limit must be" in client.error("/api/runs?limit=0", 400)
    assert "limit must be" in client.error("/api/runs?limit=ten", 400)


def test_a_name_no_run_has_is_an_error_with_the_nearest_names(demo: DemoStore,
                                                              client: Client) -> None:
    for where, named, nearest in (("metrics.r3 > 0.5", "metric 'r3'", "metrics.r2"),
                                  ("status = FINISHED and params.alpah = 0.5", "parameter 'alpah'",
                                   "params.alpha")):
        cli = demo.reprun("runs", "list", "--where", where)
        assert cli.code == 2, cli.stderr
        [line] = cli.error_lines
        assert named in line and nearest in line, line
        assert client.error("/api/runs" + q(where=where), 400) == \
            line.removeprefix("reprun: error: ")
        compared = demo.reprun("runs", "compare", "--where", where)
        assert compared.code == 2 and compared.error_lines == [line], compared.stderr


def test_unknown_runs_and_endpoints_are_404(demo: DemoStore, client: Client) -> None:
    assert "no run matches 'ffff0000'" in client.error("/api/runs/ffff0000", 404)
    assert "hexadecimal" in client.error("/api/runs/not-a-run", 404)
    assert client.error("/api/runs/ffff0000/log", 404)
    assert client.error("/api/compare" + q(runs=f"{demo.runs['dirty']},ffff0000"), 404)
    assert client.error("/api/nothing", 404)
    assert client.error("/nothing.html", 404)
    assert client.error(f"/api/runs/{demo.runs['dirty']}/run.json", 404)
    assert client.error(f"/api/runs/{demo.runs['dirty']}/log/more", 404)
    assert "has no patch file" in client.error(f"/api/runs/{demo.runs['prepare']}/patch", 404)
    assert "no runs to compare" in client.error("/api/compare", 400)
    assert "two runs" in client.error("/api/diff" + q(runs=demo.runs["dirty"]), 400)
    assert client.error("/api/compare" + q(runs=f"{demo.runs['dirty']}", better="r2:up"), 400)


@pytest.mark.parametrize("path", [
    "/api/runs/../../etc/passwd", "/api/runs/%2e%2e/%2e%2e/etc/passwd", "/api/runs/%2e%2e",
    "/static/../../../etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd",
    "//etc/passwd", "/static//etc/passwd", "/static/app.js/../../../../etc/passwd",
    "/api/runs/RUN/..%2f..%2f..%2fetc%2fpasswd", "/api/runs/RUN/../run.json",
    "/static/..%5c..%5cetc%5cpasswd", "/api/runs/%2fetc%2fpasswd/log",
])
def test_no_path_from_a_request_reaches_the_file_system(demo: DemoStore, client: Client,
                                                        path: str) -> None:
    code, _headers, body = client.request(path.replace("RUN", demo.runs["dirty"]))
    assert code == 404, body
    assert b"root:" not in body


def test_a_link_out_of_the_run_folder_is_refused(tmp_path: Path, demo: DemoStore) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo.reprun.home, home, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    run = demo.runs["dirty"]
    record = json.loads((home / "runs" / run / "run.json").read_text())
    log = home / "runs" / run / record["log_file"]
    log.unlink()
    log.symlink_to(secret)
    # A run whose whole folder is a link to a folder outside the store.
    other = demo.runs["a0.1-l2"]
    outside = tmp_path / "outside-run"
    shutil.move(str(home / "runs" / other), outside)
    (home / "runs" / other).symlink_to(outside)
    # A record that names a file outside its folder.
    named = demo.runs["a0.9-l2"]
    path = home / "runs" / named / "run.json"
    data = json.loads(path.read_text())
    data["log_file"] = "../../../secret.txt"
    path.write_text(json.dumps(data))
    with serving(home) as c:
        for target, message in ((f"/api/runs/{run}/log", "not a regular file"),
                                (f"/api/runs/{other}/log", "outside the store"),
                                (f"/api/runs/{named}/log", "not a plain name")):
            code, _h, body = c.request(target)
            assert code == 403, body
            assert message in json.loads(body)["error"]
            assert b"top secret" not in body


def test_only_get_and_head(client: Client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        code, headers, body = client.request("/api/runs", method=method)
        assert code == 405
        assert headers["Allow"] == "GET, HEAD"
        assert json.loads(body)["error"] == (f"{method} is not allowed: the web view is "
                                             "read-only (GET, HEAD)")
    code, headers, body = client.request("/api/runs", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 2


def test_headers_keep_the_page_to_itself(client: Client) -> None:
    code, headers, body = client.request("/")
    assert code == 200 and b"<script src=\"/static/app.js\"" in body
    assert b"<script>" not in body  # no inline script: the policy forbids them
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";")[0]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert client.request("/api/runs")[1]["Cache-Control"] == "no-store"
    code, headers, body = client.request("/static/plotly.min.js")
    assert code == 200 and headers["Content-Type"].startswith("text/javascript")
    assert len(body) > 1_000_000 and b"plotly" in body[:2000].lower()


def test_another_host_name_is_refused(client: Client) -> None:
    for host in ("evil.example", "evil.example:80", f"attacker.test:{client.port}", ""):
        code, _h, body = client.request("/api/runs", headers={"Host": host})
        assert code == 403, host
        assert b"this server answers to 127.0.0.1" in body
    for host in (f"localhost:{client.port}", f"127.0.0.1:{client.port}", "localhost"):
        assert client.request("/api/runs", headers={"Host": host})[0] == 200


def test_a_token_is_asked_for_every_request(demo: DemoStore) -> None:
    with serving(demo.reprun.home, token="s3cret-token") as c:
        for path in ("/", "/api/runs", "/static/app.js", f"/api/runs/{demo.runs['dirty']}/log"):
            code, headers, _ = c.request(path)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert c.request("/api/runs", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert c.request("/api/runs?token=wrong")[0] == 401
        cookie_name = f"reprun_ui_token_{c.port}"
        assert c.request("/api/runs", headers={"Cookie": f"{cookie_name}=wrong"})[0] == 401
        right_port = {"Cookie": f"reprun_ui_token_{c.port + 1}=s3cret-token"}
        assert c.request("/api/runs", headers=right_port)[0] == 401
        ok = {"Authorization": "Bearer s3cret-token"}
        assert c.request("/api/runs", headers=ok)[0] == 200
        code, headers, _ = c.request("/?token=s3cret-token")
        assert code == 200
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"{cookie_name}=s3cret-token;")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert c.request("/api/runs", headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_another_address_needs_a_token(demo: DemoStore) -> None:
    from runner.errors import UsageError

    with pytest.raises(UsageError, match="a token is needed"):
        make_server(RunStore(demo.reprun.home), "0.0.0.0", 0, None, {})
    for bad in ("abc", "has space s", "semi;colon", "x" * 201):
        refused = demo.reprun("ui", "--token", bad)
        assert refused.code == 2
        assert refused.error_lines == ["reprun: error: a token is 8 to 200 letters, digits, '.', "
                                       "'_', '~' or '-'; e.g. reprun ui --token generate"]


def _start(reprun: Reprun, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = reprun.popen("ui", "--port", "0", *args)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert re.match(r"^http://[^/]+:\d+/", line), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line


def test_reprun_ui_prints_the_address_and_serves(demo: DemoStore) -> None:
    started = time.monotonic()
    proc, url = _start(demo.reprun)
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert url == f"http://127.0.0.1:{port}/"
        client = Client(port)
        assert len(client.json("/api/runs")) == len(demo.runs)
        assert time.monotonic() - started < 60  # it started (the speed is benchmarked)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, url = _start(demo.reprun, "--host", "0.0.0.0")  # a token is made and printed
    try:
        import urllib.parse

        split = urllib.parse.urlsplit(url)
        token = urllib.parse.parse_qs(split.query)["token"][0]
        assert len(token) >= 24
        client = Client(split.port or 0)
        assert client.request("/api/runs")[0] == 401
        assert client.request("/api/runs", headers={"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, url = _start(demo.reprun, "--token", "my-own-token")  # the loopback, on request
    try:
        assert url.endswith("/?token=my-own-token")
        client = Client(int(url.split(":")[2].split("/")[0]))
        assert client.request("/api/runs")[0] == 401
        assert client.request("/api/runs?token=my-own-token")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_malformed_request_gets_the_same_kind_of_answer(client: Client) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.sendall(b"GET /a b HTTP/1.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Security-Policy: default-src 'self'" in head
    assert json.loads(body)["status"] == 400


def test_a_port_in_use_is_one_line(demo: DemoStore, client: Client) -> None:
    taken = demo.reprun("ui", "--port", str(client.port))
    assert taken.code == 2
    assert taken.error_lines == [f"reprun: error: port {client.port} of 127.0.0.1 is in use; "
                                 "give another with --port (0: any free one)"]
    nowhere = demo.reprun("ui", "--host", "192.0.2.1", "--port", "0", "--token", "abcdefgh")
    assert nowhere.code == 2
    assert nowhere.error_lines[0].startswith("reprun: error: cannot listen on 192.0.2.1:0: ")
