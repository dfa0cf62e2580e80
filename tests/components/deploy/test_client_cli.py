"""What a user types at ``mlengine predict`` / ``mlengine serve`` before any model loads."""

from __future__ import annotations

import socket

import pytest

from mlengine.cli import main
from mlengine.components.deploy.client import PredictionClient, split_server_url


@pytest.mark.parametrize(("given", "base", "name"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080", None),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080", None),
    ("http://127.0.0.1:8080/v1/models/taxi:predict", "http://127.0.0.1:8080", "taxi"),
    ("http://h:80/v2/models/taxi/infer", "http://h:80", "taxi"),
    ("http://h:80/v2/models/taxi/versions/1/infer", "http://h:80", "taxi"),
    ("https://gw.example/ns/taxi/v1/models/taxi", "https://gw.example/ns/taxi", "taxi"),
    ("http://h:80/v1/models", "http://h:80", None),
])
def test_a_url_that_already_names_a_route_is_not_doubled(given, base, name):
    assert split_server_url(given) == (base, name)
    client = PredictionClient(given)
    assert client.url == base
    if name:
        assert client.name == name  # taken from the URL: no request needed


def test_an_explicit_name_wins_over_the_one_in_the_url():
    assert PredictionClient("http://h:1/v1/models/a:predict", name="b").name == "b"


def test_serve_on_a_busy_port_is_one_line_naming_it(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["serve", "--model", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"127.0.0.1:{port} is already in use" in err[0] and "choose another port" in err[0]
