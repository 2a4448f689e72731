"""Reading project URIs and scrubbing git's messages: pure functions, no git needed."""

from __future__ import annotations

import pytest

from runner.errors import UsageError
from runner.source.git import fetch_error, scrub, secrets_of, transport
from runner.source.uri import cache_name, clean_subdirectory, is_remote, join_url, parse_uri


@pytest.mark.parametrize(("uri", "base", "sub"), [
    ("https://h/org/repo.git#a/b", "https://h/org/repo.git", "a/b"),
    ("'https://h/org/repo#v1.2/x'", "https://h/org/repo", "v1.2/x"),
    ("git@h:org/repo.git#./src//train/", "git@h:org/repo.git", "src/train"),
    ("./local#.", "./local", None),
    ("./local", "./local", None),
])
def test_parse_uri(uri: str, base: str, sub: str | None) -> None:
    parsed = parse_uri(uri)
    assert (parsed.base, parsed.subdirectory) == (base, sub)


@pytest.mark.parametrize("sub", ["..", "a/../../b", "a/..", "/abs", "C:/x", "a\\..\\b"])
def test_subdirectory_must_stay_inside(sub: str) -> None:
    with pytest.raises(UsageError):
        clean_subdirectory(sub, "u")


def test_dots_inside_names_are_fine() -> None:
    assert clean_subdirectory("v1.2/.hidden/x..y", "u") == "v1.2/.hidden/x..y"


@pytest.mark.parametrize(("uri", "remote"), [
    ("https://h/o/r", True), ("http://127.0.0.1:8080/r.git", True), ("ssh://git@h/o/r", True),
    ("git@h:o/r.git", True), ("file:///srv/r", False), ("./r", False), ("h.com/o/r", False),
    ("relative/dir", False), ("/abs/dir", False),
])
def test_is_remote(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote


@pytest.mark.parametrize(("base", "rel", "joined"), [
    ("https://h/org/repo.git", "../lib.git", "https://h/org/lib.git"),
    ("https://u:t@h/org/repo.git/", "../lib.git", "https://u:t@h/org/lib.git"),
    ("https://h/org/repo.git", "./sub", "https://h/org/repo.git/sub"),
    ("https://h/org/repo", "../../other/x.git", "https://h/other/x.git"),
    ("git@h:org/repo.git", "../lib.git", "git@h:org/lib.git"),
    ("/srv/git/repo", "../lib", "/srv/git/lib"),
    ("file:///srv/git/repo.git", "../lib.git", "file:///srv/git/lib.git"),
    ("https://h/org/repo.git", "https://other/x.git", "https://other/x.git"),
])
def test_join_url(base: str, rel: str, joined: str) -> None:
    assert join_url(base, rel) == joined


def test_cache_name_ignores_credentials_and_trailing_slash() -> None:
    plain = cache_name("https://h/org/repo.git")
    assert cache_name("https://user:tok@h/org/repo.git/") == plain
    assert plain.startswith("repo-")
    assert cache_name("https://h/org/repo") != plain
    assert cache_name("git@h:org/repo.git").startswith("repo-")


def test_scrub_removes_userinfo_and_secrets() -> None:
    url = "https://alice:tok%2Fen-99@h/org/repo.git"
    assert secrets_of(url) == ["alice", "tok%2Fen-99", "tok/en-99"]
    text = "fatal: unable to access 'https://alice:tok%2Fen-99@h/x': got tok/en-99 back"
    assert scrub(text, secrets_of(url)) == "fatal: unable to access 'https://h/x': got *** back"


def test_fetch_error_is_one_line_without_the_token() -> None:
    url = "https://bob:ghp_abcdef@h/org/repo.git"
    stderr = ("remote: Invalid username or password.\n"
              "fatal: Authentication failed for 'https://bob:ghp_abcdef@h/org/repo.git/'\n")
    message = fetch_error(url, stderr).render()
    assert "\n" not in message
    assert "ghp_abcdef" not in message
    assert message.startswith("authentication failed for 'https://h/org/repo.git'")


def test_transport_moves_http_credentials_into_a_header() -> None:
    url, env = transport("https://alice:p%40ss@h/org/repo.git", {"GIT_CONFIG_COUNT": "1"})
    assert url == "https://h/org/repo.git"
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert env["GIT_CONFIG_KEY_1"] == "http.https://h/org/repo.git.extraHeader"
    assert env["GIT_CONFIG_VALUE_1"] == "Authorization: Basic YWxpY2U6cEBzcw=="  # alice:p@ss
    for other in ("git@h:org/repo.git", "https://h/org/repo.git", "ssh://a:b@h/r"):
        assert transport(other, {}) == (other, {})
