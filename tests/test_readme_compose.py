"""The README's "Compose the components" block, run as written: compile, run here, upload.

The three commands are read from the README; the paths keep their names under a temporary
folder, and the upload goes to a fake KFP v2beta1 API on 127.0.0.1 (tests/kfp_fake.py) that
checks every request body against kfp-server-api's models.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

from mlengine.cli import main as mlengine_main
from tests.kfp_fake import FakeKfp, check_package, start

pytestmark = pytest.mark.e2e  # a kfp.local run of the example pipeline

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Compose the components", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def _example(path: Path):
    spec = importlib.util.spec_from_file_location("readme_compose_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_compose_walk_through(tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [shlex.split(c)[:2] for c in commands] == [
        ["python", "examples/pipelines/compose.py"], ["python", "examples/pipelines/compose.py"],
        ["mlengine", "upload"]]
    monkeypatch.chdir(tmp_path)  # the README's relative out/ paths land here
    for name in ("KF_PIPELINES_ENDPOINT", "MLENGINE_KFP_TOKEN", "MLENGINE_KFP_COOKIES", "MLENGINE_IMAGE_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    compose = _example(ROOT / "examples" / "pipelines" / "compose.py")
    server = start(FakeKfp())
    try:
        for command in commands:
            args = shlex.split(command.replace("http://localhost:8080", server.fake.url))
            if args[0] == "python":
                assert compose.main(args[2:]) == 0
            else:
                capsys.readouterr()
                assert mlengine_main(args[1:]) == 0, capsys.readouterr().err[-2000:]
        compiled = tmp_path / "out" / "compose" / "compose_pipeline.cluster.yaml"
        assert compiled.is_file()
        uploaded = server.fake.bodies("POST", "/pipelines/upload_version")
        assert uploaded == [compiled.read_text(encoding="utf-8")]
        spec, _ = check_package(uploaded[0])
        assert {"comp-check-rows", "comp-notify", "comp-ingest", "comp-train"} <= set(spec["components"])
        assert [b["display_name"] for b in server.fake.bodies("POST", "/apis/v2beta1/pipelines")] == ["my-dag"]
        assert server.fake.errors == []
    finally:
        server.stop()
    printed = capsys.readouterr().out
    run_message = [json.loads(line) for line in printed.splitlines() if line.startswith('{"message"')]
    assert not run_message or run_message[0]["message"].startswith("model trained on ")
    notes = list((tmp_path / "out" / "compose-run").rglob("note"))
    assert len(notes) == 1 and "model trained on " in notes[0].read_text(encoding="utf-8")
