"""The quick start works: an example project runs and leaves a record."""

from conftest import EXAMPLES, Reprun


def test_hello_example_runs_and_is_recorded(reprun: Reprun) -> None:
    result = reprun("run", str(EXAMPLES / "hello"), "-P", "alpha=0.3")
    assert result.code == 0, result.stderr
    assert "Hello, world!" in result.stdout
    record = reprun.last_record()
    assert record["status"] == "FINISHED"
    assert record["parameters"]["alpha"] == "0.3"
    assert [o["path"] for o in record["outputs"]] == ["summary.json"]
