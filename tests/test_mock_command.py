"""``policyrouter mock`` as a real subprocess, called through the openai and anthropic SDKs,
and its script files checked with ``file:line:col``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpcore2
import httpx2
import openai
import pytest

from policyrouter.cli.main import main
from policyrouter.testing import MockLLMServer, MockScriptError

REPO = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-c", "import sys; from policyrouter.cli.main import main; sys.exit(main(sys.argv[1:]))")
GPT = "gpt-4.1-mini-2025-04-14"
CLAUDE = "claude-haiku-4-5-20251001"
SCRIPT = f"""\
models:
  {GPT}:
    reply: {{text: "Paris.", usage: {{input: 12, output: 2}}}}
    script:
      - {{status: 429, retry_after_s: 2}}
      - {{tool_calls: [{{name: get_weather, arguments: {{city: Paris}}}}]}}
      - {{json: {{city: Paris, population: 2100000}}}}
      - {{kind: stall, seconds: 30}}
      - {{kind: interrupt_stream, after_chunks: 2, text: "one two three four five six"}}
  {CLAUDE}:
    script: [529, ok]
"""


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The command as a subprocess, and the URL it printed first."""
    proc = subprocess.Popen(
        [*args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    return proc, url


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()  # only if it outlived the signal (then the exit code check fails)
    return proc.returncode, err


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "mock.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    proc, url = start(*CLI, "mock", "--port", "0", "--script", str(path))
    yield url
    code, err = stop(proc)
    assert code == 0, err


def test_first_line_is_the_url_then_the_base_urls(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    proc, url = start(*CLI, "mock", "--port", "0", "--script", str(path))
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"OpenAI base_url: {url}/v1"
    assert proc.stdout.readline().strip() == f"Anthropic base_url: {url}"
    code, _ = stop(proc, signal.SIGINT)
    assert code == 0


def test_format_json_prints_one_object_that_a_script_can_read(tmp_path: Path) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    proc, line = start(*CLI, "mock", "--port", "0", "--script", str(path), "--format", "json")
    startup = json.loads(line)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", startup["url"])
    assert startup["openai_base_url"] == startup["url"] + "/v1"
    assert startup["anthropic_base_url"] == startup["url"]
    assert startup["script"] == str(path) and GPT in startup["models"]
    client = openai.OpenAI(api_key="test", base_url=startup["openai_base_url"], max_retries=0)
    reply = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    code, _ = stop(proc)
    assert code == 0


def test_scripted_replies_and_faults_through_the_openai_sdk(scripted: str) -> None:
    client = openai.OpenAI(base_url=scripted + "/v1", api_key="t", max_retries=0, timeout=1.0)
    messages: list[dict[str, str]] = [{"role": "user", "content": "weather in Paris?"}]
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "2"
    called = client.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
    [call] = called.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})  # type: ignore[union-attr]
    assert called.choices[0].message.content is None
    structured = client.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
    assert json.loads(structured.choices[0].message.content or "") == {"city": "Paris", "population": 2100000}
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
    received = []
    # the stream is cut after two events: older SDKs let the transport's error through unwrapped
    with pytest.raises((openai.APIError, httpx2.RemoteProtocolError, httpcore2.RemoteProtocolError)):
        for chunk in client.chat.completions.create(model=GPT, messages=messages, stream=True):  # type: ignore[arg-type]
            received.append(chunk)
    assert 0 < len(received) <= 2
    plain = client.chat.completions.create(model=GPT, messages=messages)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "Paris." and plain.usage is not None
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (12, 2)


def test_scripted_overload_through_the_anthropic_sdk(scripted: str) -> None:
    client = anthropic.Anthropic(base_url=scripted, api_key="t", max_retries=0)
    messages: list[dict[str, str]] = [{"role": "user", "content": "hi there"}]
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(model=CLAUDE, max_tokens=50, messages=messages)  # type: ignore[arg-type]
    assert overloaded.value.status_code == 529
    answer = client.messages.create(model=CLAUDE, max_tokens=50, messages=messages)  # type: ignore[arg-type]
    assert answer.content[0].text == f"mock answer from {CLAUDE} to a 2-word prompt"  # type: ignore[union-attr]


def test_python_m_mock_server_still_serves(tmp_path: Path) -> None:
    proc, url = start(sys.executable, "-m", "policyrouter.testing.mock_server", "--port", "0")
    client = openai.OpenAI(base_url=url + "/v1", api_key="t", max_retries=0)
    models = client.models.list()
    assert isinstance(models.data, list)
    code, _ = stop(proc)
    assert code == 0


def test_a_bad_script_exits_2_with_every_problem_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "models:\n"
        "  m:\n"
        "    reply: {text: hi, json: {a: 1}, usage: {outptu: 3}}\n"
        "    script:\n"
        "      - 700\n"
        "      - resett\n"
        "      - {status: 429, retry_after: 2}\n"
        "      - {kind: interrupt_stream, status: 500}\n"
        "      - {tool_calls: [{arguments: {}}]}\n"
        "      - true\n"
        "    limits: {rpm: 0}\n"
        "    scirpt: []\n",
        encoding="utf-8",
    )
    assert main(["mock", "--port", "0", "--script", str(path)]) == 2
    err = capsys.readouterr().err
    located = re.findall(rf"{re.escape(str(path))}:(\d+):(\d+): error\[mock-script\]", err)
    assert [int(line) for line, _ in located] == [3, 3, 5, 6, 7, 8, 9, 10, 11, 12]
    for hint in (
        "did you mean `output`?",
        "did you mean `reset`?",
        "did you mean `retry_after_s`?",
        "did you mean `script`?",
    ):
        assert hint in err
    assert "fault status must be 200 or 400-599, got 700" in err
    assert "fault kind 'interrupt_stream' cannot carry status 500" in err


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("models: [\n", "yaml-syntax"),
        ("[1, 2]\n", "yaml-not-mapping"),
        ("models: {m: {script: {a: 1}}}\n", "mock-script"),
    ],
)
def test_unusable_files_are_diagnostics_not_tracebacks(tmp_path: Path, text: str, code: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with MockLLMServer() as server, pytest.raises(MockScriptError) as info:
        server.load_script(path)
    assert [d.code for d in info.value.diagnostics] == [code]
    assert info.value.diagnostics[0].location.line >= 1


def test_a_missing_script_and_a_directory_are_refused(tmp_path: Path) -> None:
    for path, code in ((tmp_path / "nope.yaml", "file-not-found"), (tmp_path, "file-unreadable")):
        with MockLLMServer() as server, pytest.raises(MockScriptError) as info:
            server.load_script(path)
        assert [d.code for d in info.value.diagnostics] == [code]


def test_a_bad_script_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"models:\n  {GPT}: {{script: [429]}}\n  other: {{script: [nope]}}\n", encoding="utf-8")
    with MockLLMServer() as server:
        with pytest.raises(MockScriptError):
            server.load_script(path)
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
        client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "hi"}])
        assert server.count_429 == 0


def test_the_readme_script_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### `policyrouter mock", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    path = tmp_path / "mock.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    with MockLLMServer() as server:
        script = server.load_script(path)
    assert set(script.models) == {GPT, CLAUDE}
    claude = script.models[CLAUDE]
    assert claude.limits == {"rpm": 60, "concurrency": 4}
    assert claude.script is not None and [f.kind if f else None for f in claude.script] == [
        None,
        "stall",
        "interrupt_stream",
    ]


def test_the_script_format_knows_every_fault_field() -> None:
    from dataclasses import fields

    from policyrouter.testing import Fault
    from policyrouter.testing.mock_server._script import _FAULT_FIELDS

    assert set(_FAULT_FIELDS) - {"json"} == {f.name for f in fields(Fault)}


def test_a_replay_entry_answers_the_recorded_body(tmp_path: Path) -> None:
    message = {"role": "assistant", "content": "recorded"}
    body = json.dumps(
        {
            "id": "r",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    )
    path = tmp_path / "s.yaml"
    entry = json.dumps({"kind": "replay", "raw_body": body})  # JSON is YAML
    path.write_text(f"models:\n  {GPT}:\n    script:\n      - {entry}\n", encoding="utf-8")
    with MockLLMServer() as server:
        server.load_script(path)
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0)
        reply = client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "recorded"
