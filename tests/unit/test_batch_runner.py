"""The in-pod batch runner: what counts as "not JSONL", per-line errors, shards, summaries, failures.

vLLM is replaced by a small script with run_batch's file contract (-i requests, -o one result per line in
request order); the real vLLM runs in tests/e2e/test_batch_e2e.py.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from telechat_operator.batch import runner
from telechat_operator.batch.runner import EXIT_BAD_INPUT, EXIT_BAD_OUTPUT, parse_summary, scan


def req(custom_id: str, **extra: Any) -> str:
    body = {"messages": [{"role": "user", "content": f"hi {custom_id}"}]}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **extra}
    )


GOOD = [req("a"), req("b"), req("c")]

NOT_JSONL: list[tuple[str, str, str]] = [
    ("empty", "", "holds no requests"),
    ("blank-lines", "\n  \n\n", "holds no requests"),
    ("json-array", json.dumps([json.loads(x) for x in GOOD]), "only 0 of 1"),
    ("pretty-printed", json.dumps(json.loads(GOOD[0]), indent=2), "is not JSONL"),
    ("csv", "custom_id,prompt\na,hello\nb,bye\n", "only 0 of 3"),
    ("yaml", "- custom_id: a\n  method: POST\n", "is not JSONL"),
    (
        "bare-chat-bodies",
        "\n".join(json.dumps({"messages": []}) for _ in range(3)),
        "no line is an OpenAI batch",
    ),
    ("mostly-garbage", "\n".join([GOOD[0], "x", "y", "z"]), "only 1 of 4"),
]


@pytest.mark.parametrize(("case", "text", "expected"), NOT_JSONL, ids=[c[0] for c in NOT_JSONL])
def test_whole_file_refusals(case: str, text: str, expected: str) -> None:
    reason = scan(text).not_jsonl_reason()
    assert reason is not None and expected in reason, reason


RUNS: list[tuple[str, str]] = [
    ("all-good", "\n".join(GOOD)),
    ("crlf-and-blank-lines", "\r\n".join([GOOD[0], "", GOOD[1], "   ", GOOD[2], ""])),
    ("one-malformed-line", "\n".join([GOOD[0], "{not json", GOOD[1]])),
    ("half-malformed", "\n".join([GOOD[0], "oops", GOOD[1], "nope"])),
    ("valid-json-bad-request", "\n".join([GOOD[0], json.dumps({"custom_id": "x", "method": "GET"})])),
]


@pytest.mark.parametrize(("case", "text"), RUNS, ids=[c[0] for c in RUNS])
def test_bad_lines_do_not_refuse_the_batch(case: str, text: str) -> None:
    assert scan(text).not_jsonl_reason() is None


LINE_ERRORS: list[tuple[Any, str | None]] = [
    (json.loads(req("a")), None),
    ([], "a JSON list, not an object"),
    ({"method": "POST", "url": "/v1/chat/completions", "body": {}}, "custom_id must be a non-empty string"),
    ({"custom_id": 7, "method": "POST", "url": "/v1/x", "body": {}}, "custom_id must be a non-empty string"),
    ({"custom_id": "a", "method": "GET", "url": "/v1/x", "body": {}}, "method must be POST"),
    (
        {"custom_id": "a", "method": "POST", "url": "v1/x", "body": {}},
        "url must be an API path such as /v1/chat/completions",
    ),
    ({"custom_id": "a", "method": "POST", "url": "/v1/x", "body": "hi"}, "body must be a JSON object"),
]


@pytest.mark.parametrize(("obj", "expected"), LINE_ERRORS)
def test_request_error(obj: Any, expected: str | None) -> None:
    assert runner.request_error(obj) == expected


def test_scan_numbers_lines_and_keeps_ids() -> None:
    found = scan("\n".join([GOOD[0], "", "garbage", json.dumps({"custom_id": "z", "method": "GET"})]))
    assert [(line.ordinal, line.number) for line in found.lines] == [(0, 1), (1, 3), (2, 4)]
    assert [line.custom_id for line in found.lines] == ["a", None, "z"]
    assert found.lines[1].error is not None and found.lines[1].error.startswith("line 3 is not JSON")
    assert found.lines[2].error == "line 4: method must be POST"


# --- running a shard with a stand-in for vLLM -----------------------------------------------------------

FAKE_VLLM = textwrap.dedent(
    """
    import json, os, sys
    args = sys.argv[1:]
    src, dst = args[args.index("-i") + 1], args[args.index("-o") + 1]
    mode = os.environ.get("FAKE_VLLM_MODE", "ok")
    if mode == "silent":
        sys.exit(0)
    if mode == "crash":
        print("INFO loading weights")
        print("Traceback (most recent call last):")
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        sys.exit(int(os.environ.get("FAKE_VLLM_CODE", "1")))
    rows = []
    for line in open(src):
        r = json.loads(line)
        if r["body"].get("fail"):
            rows.append({"id": "v", "custom_id": r["custom_id"], "response": {"status_code": 400,
                         "request_id": "q", "body": None}, "error": {"message": "bad request"}})
        else:
            rows.append({"id": "v", "custom_id": r["custom_id"], "response": {"status_code": 200,
                         "request_id": "q", "body": {"args": args[:2]}}, "error": None})
    if mode == "reversed":
        rows.reverse()
    with open(dst, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\\n")
    """
)


@pytest.fixture
def fake_vllm(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    return [sys.executable, str(script), "--config", "/etc/telechat/vllm.yaml"]


def run_shard(
    tmp_path: Path,
    command: list[str],
    text: str,
    *,
    output: Path | None = None,
    shards: int = 1,
    index: int = 0,
) -> tuple[int, str, Path]:
    src = tmp_path / "in.jsonl"
    src.write_text(text)
    out = output or tmp_path / "out" / "results.jsonl"
    summary = tmp_path / f"termination-log-{index}"
    work = tmp_path / f"work-{index}"
    argv = [
        "--input",
        str(src),
        "--output",
        str(out),
        "--shards",
        str(shards),
        "--summary-file",
        str(summary),
    ]
    with pytest.MonkeyPatch.context() as mp:
        # Kubernetes sets it in each pod of an Indexed Job.
        mp.setenv("JOB_COMPLETION_INDEX", str(index))
        code = runner.main([*argv, "--work-dir", str(work), "--", *command])
    return code, summary.read_text(), out


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_malformed_lines_get_error_lines_in_input_order(tmp_path: Path, fake_vllm: list[str]) -> None:
    text = "\n".join(
        [req("a"), "{broken", req("b", body={"fail": True}), json.dumps({"custom_id": "c"}), req("d")]
    )
    # req(..., body=...) replaces the body: b is a request vLLM answers with an error.
    code, message, out = run_shard(tmp_path, fake_vllm, text)
    assert code == 0
    rows = records(out)
    assert [r["custom_id"] for r in rows] == ["a", None, "b", "c", "d"]
    assert rows[0]["error"] is None and rows[0]["response"]["status_code"] == 200
    assert rows[1]["error"]["line"] == 2 and "not JSON" in rows[1]["error"]["message"]
    assert rows[2]["error"] == {"message": "bad request"}
    assert rows[3]["response"]["status_code"] == 400 and "method must be POST" in rows[3]["error"]["message"]
    summary = parse_summary(message)
    assert summary is not None
    assert (summary.input_requests, summary.requests, summary.succeeded, summary.failed, summary.invalid) == (
        5,
        5,
        2,
        3,
        2,
    )
    assert summary.merged and summary.output == str(out)


def test_results_are_matched_by_custom_id_if_vllm_reorders(
    tmp_path: Path, fake_vllm: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "reversed")
    code, _, out = run_shard(tmp_path, fake_vllm, "\n".join([req("a"), "junk", req("b"), req("c")]))
    assert code == 0
    assert [r["custom_id"] for r in records(out)] == ["a", None, "b", "c"]


def test_shards_merge_back_into_input_order(
    tmp_path: Path, fake_vllm: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [req(f"r{k}") for k in range(7)]
    lines[4] = "not json"
    out = tmp_path / "out" / "merged.jsonl"
    # Parts of an earlier run with the same output path must not be merged in.
    stale = out.parent / "merged.jsonl.parts" / "old-run"
    stale.mkdir(parents=True)
    (stale / "part-00001-of-00003.jsonl").write_text("stale\n")
    monkeypatch.setenv("TELECHAT_BATCH_RUN_ID", "run-1")
    summaries = []
    for index in (2, 0, 1):
        code, message, _ = run_shard(tmp_path, fake_vllm, "\n".join(lines), output=out, shards=3, index=index)
        assert code == 0
        summary = parse_summary(message)
        assert summary is not None
        summaries.append(summary)
        assert summary.merged == (index == 1), "only the shard that finishes last sees every part"
    assert [r["custom_id"] for r in records(out)] == ["r0", "r1", "r2", "r3", None, "r5", "r6"]
    assert sorted((s.shard, s.requests) for s in summaries) == [(0, 3), (1, 2), (2, 2)]
    assert sum(s.succeeded for s in summaries) == 6 and sum(s.invalid for s in summaries) == 1


def test_a_shard_with_nothing_valid_does_not_start_vllm(tmp_path: Path) -> None:
    text = "\n".join([req("a"), "junk"])
    # Shard 1 of 2 holds only the junk line; the command would fail if it were run.
    code, message, _ = run_shard(tmp_path, ["/nonexistent/vllm"], text, shards=2, index=1)
    assert code == 0
    summary = parse_summary(message)
    assert summary is not None and (summary.requests, summary.failed, summary.invalid) == (1, 1, 1)


def test_input_that_is_not_jsonl_exits_3_with_the_reason(tmp_path: Path, fake_vllm: list[str]) -> None:
    code, message, out = run_shard(tmp_path, fake_vllm, json.dumps([1, 2, 3], indent=1))
    assert code == EXIT_BAD_INPUT
    assert "is not JSONL" in message and parse_summary(message) is None
    assert not out.exists()


def test_missing_input_file_exits_3(tmp_path: Path, fake_vllm: list[str]) -> None:
    summary = tmp_path / "log"
    code = runner.main(
        [
            *("--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")),
            *("--summary-file", str(summary), "--work-dir", str(tmp_path / "w"), "--", *fake_vllm),
        ]
    )
    assert code == EXIT_BAD_INPUT and "not found" in summary.read_text()


def test_unwritable_output_exits_4_before_vllm_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    code, message, _ = run_shard(
        tmp_path, ["/nonexistent/vllm"], "\n".join(GOOD), output=blocker / "out.jsonl"
    )
    assert code == EXIT_BAD_OUTPUT and "cannot write the output" in message


@pytest.mark.parametrize(("vllm_code", "expected"), [(1, 1), (EXIT_BAD_INPUT, 1), (-9, 137)])
def test_vllm_failure_reports_its_last_lines(
    tmp_path: Path, fake_vllm: list[str], monkeypatch: pytest.MonkeyPatch, vllm_code: int, expected: int
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    command = fake_vllm
    if vllm_code < 0:
        command = ["sh", "-c", "echo dying; kill -9 $$"]
    else:
        monkeypatch.setenv("FAKE_VLLM_CODE", str(vllm_code))
    code, message, out = run_shard(tmp_path, command, "\n".join(GOOD))
    # vLLM's failures stay retryable: never the runner's own "fail at once" codes.
    assert code == expected
    # The message keeps vLLM's own exit code.
    assert message.startswith(f"vLLM run-batch exited with code {vllm_code if vllm_code > 0 else 137}")
    assert ("CUDA out of memory" in message) or ("dying" in message)
    assert not out.exists()


def test_vllm_that_writes_no_results_is_a_failure(
    tmp_path: Path, fake_vllm: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_MODE", "silent")
    code, message, out = run_shard(tmp_path, fake_vllm, "\n".join(GOOD))
    assert code == 1 and "wrote no results file" in message and not out.exists()


def test_failure_message_fits_a_termination_message() -> None:
    message = runner.failure_message(1, [f"line {i} " + "x" * 200 for i in range(40)])
    assert len(message.encode()) <= runner.TERMINATION_MESSAGE_BYTES
    assert message.endswith("x" * 200) and "line 39" in message


def test_vllm_own_request_model_rejects_lines_before_the_batch_starts(
    tmp_path: Path, fake_vllm: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM 0.32 parses every line with BatchRequestInput up front; a line it refuses would abort the batch.

    A stand-in vllm package provides BatchRequestInput where vLLM 0.32 has it; the runner's child process
    finds it and keeps the refused line away from vLLM.
    """
    package = tmp_path / "site" / "vllm" / "entrypoints" / "launchers"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "run_batch.py").write_text(
        textwrap.dedent(
            """
            import json

            class BatchRequestInput:
                @classmethod
                def model_validate_json(cls, text):
                    if "messages" not in json.loads(text)["body"]:
                        raise ValueError("1 validation error for ChatCompletionRequest messages "
                                         "Field required")
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    text = "\n".join([req("a"), req("b", body={"prompt": "no messages"}), req("c")])
    code, message, out = run_shard(tmp_path, fake_vllm, text)
    assert code == 0
    rows = records(out)
    assert [r["custom_id"] for r in rows] == ["a", "b", "c"]
    assert "messages Field required" in rows[1]["error"]["message"]
    summary = parse_summary(message)
    assert summary is not None and (summary.succeeded, summary.invalid) == (2, 1)


def test_summary_round_trip_and_other_messages() -> None:
    summary = runner.ShardSummary(0, 1, 3, 3, 2, 1, 1, "/batch/output/x.jsonl", True)
    assert parse_summary("vLLM says hi\n" + summary.to_json()) == summary
    assert parse_summary(None) is None
    assert parse_summary("Traceback ...\nRuntimeError: boom") is None
    assert parse_summary(json.dumps({"telechatBatch": 99})) is None
    assert len(summary.to_json()) < 400
