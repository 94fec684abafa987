"""Run one shard of a TeleChatBatchJob inside its pod: check the input, run vLLM's batch mode, merge, report.

This file is shipped in the batch ConfigMap and run by the vLLM image's own Python, so it uses the standard
library only. The operator imports the same file to check ConfigMap input before it creates the Job, so both
sides agree on what "not JSONL" means.

Why a wrapper around ``python -m vllm.entrypoints.openai.run_batch`` rather than vLLM alone:

* vLLM (0.32) parses every line with ``BatchRequestInput.model_validate_json`` before it runs anything; one
  malformed line raises and the whole batch is lost. The wrapper checks each line (with vLLM's own model
  when it can import it) and sends only valid lines; the others get an error line in the output.
* A shard's counts reach the operator as the container's termination message (``/dev/termination-log``):
  a one-line JSON summary on success, vLLM's last log lines on failure.
* With several shards the parts are merged back into input order.

Exit codes: 0 done (per-request errors are in the output), 3 the input as a whole is unusable, 4 the output
cannot be written (both fail the Job at once through its podFailurePolicy), else vLLM's own failure
(retried up to backoffLimit).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY_KEY = "telechatBatch"
SUMMARY_VERSION = 1
EXIT_BAD_INPUT = 3
EXIT_BAD_OUTPUT = 4
# The kubelet keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_BYTES = 4096
LOG_TAIL_LINES = 40
# Where BatchRequestInput lived across vLLM versions (the launchers module since 0.2x, openai before).
VLLM_VALIDATOR_MODULES = (
    "vllm.entrypoints.launchers.run_batch",
    "vllm.entrypoints.openai.run_batch",
    "vllm.entrypoints.openai.protocol",
)
_VALIDATE_FLAG = "--validate-with-vllm"


@dataclass(frozen=True)
class Line:
    """One non-blank input line."""

    ordinal: int  # position among non-blank lines: decides the shard and the output position
    number: int  # 1-based line number in the file, for messages
    text: str
    is_object: bool
    custom_id: str | None
    error: str | None  # why the line is not sent to vLLM; None when it is


@dataclass(frozen=True)
class Scan:
    lines: list[Line]

    @property
    def total(self) -> int:
        return len(self.lines)

    @property
    def objects(self) -> int:
        return sum(1 for line in self.lines if line.is_object)

    @property
    def valid(self) -> int:
        return sum(1 for line in self.lines if line.error is None)

    def not_jsonl_reason(self) -> str | None:
        """Why the file as a whole is not an OpenAI batch file, or None.

        A file is refused when running it cannot be what the user meant: no requests at all; fewer than half
        of its lines are JSON objects (a pretty-printed JSON document, a JSON array, CSV, YAML); or no line
        is a request (JSONL of bare chat bodies without custom_id/method/url). Anything else runs, and each
        bad line gets its own error line in the output.
        """
        if self.total == 0:
            return "the input holds no requests (it is empty or blank)"
        if self.objects * 2 < self.total:
            return (
                f"the input is not JSONL: only {self.objects} of {self.total} non-blank lines are JSON "
                "objects (expected one OpenAI batch request per line; a pretty-printed JSON document or a "
                "JSON array is not JSONL)"
            )
        if self.valid == 0:
            first = next(line.error for line in self.lines if line.error)
            return (
                "no line is an OpenAI batch request (each needs custom_id, method POST, url and body); "
                f"first problem: {first}"
            )
        return None


def request_error(obj: Any) -> str | None:
    """Structural check of one parsed line: what vLLM needs before it can even look at the body."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id must be a non-empty string"
    if obj.get("method") != "POST":
        return "method must be POST"
    url = obj.get("url")
    if not isinstance(url, str) or not url.startswith("/"):
        return "url must be an API path such as /v1/chat/completions"
    if not isinstance(obj.get("body"), dict):
        return "body must be a JSON object"
    return None


def scan(text: str) -> Scan:
    """Classify every non-blank line (vLLM splits on newlines and skips blank lines the same way)."""
    lines: list[Line] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        ordinal = len(lines)
        try:
            obj = json.loads(stripped)
        except ValueError as exc:
            lines.append(Line(ordinal, number, stripped, False, None, f"line {number} is not JSON: {exc}"))
            continue
        custom_id = obj.get("custom_id") if isinstance(obj, dict) else None
        problem = request_error(obj)
        lines.append(
            Line(
                ordinal,
                number,
                stripped,
                isinstance(obj, dict),
                custom_id if isinstance(custom_id, str) else None,
                f"line {number}: {problem}" if problem else None,
            )
        )
    return Scan(lines)


@dataclass(frozen=True)
class ShardSummary:
    """What one finished shard reports in its termination message."""

    shard: int
    shards: int
    input_requests: int
    requests: int
    succeeded: int
    failed: int
    invalid: int
    output: str
    merged: bool

    def to_json(self) -> str:
        return json.dumps(
            {
                SUMMARY_KEY: SUMMARY_VERSION,
                "shard": self.shard,
                "shards": self.shards,
                "inputRequests": self.input_requests,
                "requests": self.requests,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "invalid": self.invalid,
                "output": self.output,
                "merged": self.merged,
            },
            separators=(",", ":"),
        )


def parse_summary(message: str | None) -> ShardSummary | None:
    """The summary in a termination message, or None when the message is something else (an error)."""
    if not message:
        return None
    for candidate in reversed(message.strip().splitlines()):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get(SUMMARY_KEY) != SUMMARY_VERSION:
            continue
        try:
            return ShardSummary(
                shard=int(data["shard"]),
                shards=int(data["shards"]),
                input_requests=int(data["inputRequests"]),
                requests=int(data["requests"]),
                succeeded=int(data["succeeded"]),
                failed=int(data["failed"]),
                invalid=int(data["invalid"]),
                output=str(data["output"]),
                merged=bool(data["merged"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
    return None


# --- inside the pod ------------------------------------------------------------------------------------


class BatchError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def error_record(line: Line, message: str) -> dict[str, Any]:
    """An output line for a request vLLM never saw, shaped like vLLM's own error lines."""
    request_id = f"telechat-batch-line-{line.number}"
    return {
        "id": request_id,
        "custom_id": line.custom_id,
        "response": {"status_code": 400, "request_id": request_id, "body": None},
        "error": {"type": "invalid_request", "message": message, "line": line.number},
    }


def succeeded(record: Any) -> bool:
    if not isinstance(record, dict) or record.get("error") is not None:
        return False
    response = record.get("response")
    return isinstance(response, dict) and response.get("status_code", 200) == 200


def _write_atomic(path: Path, lines: Iterable[str]) -> None:
    """Readers see the old file or the whole new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.rstrip("\n") + "\n")
    os.replace(tmp, path)


def _check_writable(output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = output.parent / f".telechat-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BatchError(EXIT_BAD_OUTPUT, f"cannot write the output {output}: {exc}") from None


def _read_input(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchError(EXIT_BAD_INPUT, f"input file {path} not found") from None
    except UnicodeDecodeError as exc:
        raise BatchError(EXIT_BAD_INPUT, f"input file {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise BatchError(EXIT_BAD_INPUT, f"cannot read the input file {path}: {exc}") from None


def _validate_with_vllm(lines: list[Line], work: Path) -> dict[int, str]:
    """Errors vLLM's own BatchRequestInput finds, by ordinal; run in a child so its imports free their memory.

    Empty when vLLM's model cannot be imported (then the structural check is all there is).
    """
    if not lines:
        return {}
    candidates = work / "candidates.jsonl"
    _write_atomic(candidates, (line.text for line in lines))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), _VALIDATE_FLAG, str(candidates)],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[int, str] = {}
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"[telechat-batch] request check with vLLM's model skipped: {proc.stderr[-500:]}", flush=True)
        return found
    for index, message in (result.get("errors") or {}).items():
        line = lines[int(index)]
        found[line.ordinal] = f"line {line.number}: {message}"
    return found


def _vllm_validator_main(path: str) -> int:
    """Child process: validate each candidate line with vLLM's BatchRequestInput; print the errors as JSON."""
    model = None
    for name in VLLM_VALIDATOR_MODULES:
        try:
            model = getattr(importlib.import_module(name), "BatchRequestInput", None)
        except Exception:  # any import problem only means this vLLM keeps the class elsewhere
            model = None
        if model is not None:
            break
    errors: dict[str, str] = {}
    if model is not None:
        for index, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
            try:
                model.model_validate_json(text)
            except Exception as exc:  # pydantic's ValidationError, or anything the body's validators raise
                errors[str(index)] = " ".join(str(exc).split())[:500]
    print(json.dumps({"validator": model is not None, "errors": errors}))
    return 0


def _run_vllm(command: list[str]) -> tuple[int, list[str]]:
    """Run vLLM, passing its output through to the pod log; return its exit code and last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
    code = proc.returncode
    return (128 - code if code < 0 else code), list(tail)


def failure_message(code: int, tail: list[str]) -> str:
    """vLLM's last log lines under a one-line header, cut from the front to fit a termination message."""
    header = f"vLLM run-batch exited with code {code}; its last log lines:"
    body = "\n".join(tail)
    budget = TERMINATION_MESSAGE_BYTES - len(header.encode()) - 64
    encoded = body.encode()
    if len(encoded) > budget:
        body = "..." + encoded[-budget:].decode(errors="ignore")
    return f"{header}\n{body}"


def _merge_responses(mine: list[Line], rejected: dict[int, str], responses: list[str]) -> list[str]:
    """The shard's output in input order: vLLM's lines for sent requests, error lines for the others."""
    records: list[Any] = []
    for text in responses:
        try:
            records.append(json.loads(text))
        except ValueError:
            records.append({"custom_id": None, "response": None, "error": f"unparseable vLLM output: {text}"})
    sent = [line for line in mine if line.ordinal not in rejected]
    # vLLM answers in request order; match by custom_id only if that ever stops being true.
    by_position = len(records) == len(sent) and all(
        isinstance(r, dict) and r.get("custom_id") == line.custom_id
        for r, line in zip(records, sent, strict=True)
    )
    by_id: dict[str | None, collections.deque[Any]] = collections.defaultdict(collections.deque)
    if not by_position:
        for record in records:
            by_id[record.get("custom_id") if isinstance(record, dict) else None].append(record)
    out: list[str] = []
    position = 0
    for line in mine:
        if line.ordinal in rejected:
            out.append(json.dumps(error_record(line, rejected[line.ordinal]), ensure_ascii=False))
            continue
        if by_position:
            record = records[position]
            position += 1
        elif by_id[line.custom_id]:
            record = by_id[line.custom_id].popleft()
        else:
            record = error_record(line, "vLLM returned no result for this request")
        out.append(json.dumps(record, ensure_ascii=False))
    return out


def _merge_parts(output: Path, parts_dir: Path, shards: int, total: int) -> bool:
    """When every shard's part exists, interleave them back into input order (request k: part k mod n)."""
    parts = [parts_dir / f"part-{i:05d}-of-{shards:05d}.jsonl" for i in range(shards)]
    if not all(p.exists() for p in parts):
        return False
    contents = [p.read_text(encoding="utf-8").splitlines() for p in parts]
    if sum(len(c) for c in contents) != total:
        return False
    # Every finishing shard may get here; each writes the same bytes with an atomic rename.
    _write_atomic(output, (contents[k % shards][k // shards] for k in range(total)))
    return True


def _write_summary(path: Path | None, text: str) -> None:
    print(text, flush=True)
    if path is None:
        return
    try:
        path.write_text(text[:TERMINATION_MESSAGE_BYTES], encoding="utf-8")
    except OSError as exc:
        print(f"[telechat-batch] cannot write {path}: {exc}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    shards: int = args.shards
    index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    run_id = os.environ.get("TELECHAT_BATCH_RUN_ID") or "local"
    output = Path(args.output)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    summary_file = Path(args.summary_file) if args.summary_file else None
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        found = scan(_read_input(Path(args.input)))
        reason = found.not_jsonl_reason()
        if reason is not None:
            raise BatchError(EXIT_BAD_INPUT, f"{args.input}: {reason}")
        _check_writable(output)
        mine = [line for line in found.lines if line.ordinal % shards == index]
        rejected = {line.ordinal: line.error for line in mine if line.error is not None}
        candidates = [line for line in mine if line.error is None]
        began = time.monotonic()
        rejected.update(_validate_with_vllm(candidates, work))
        print(f"[telechat-batch] requests checked in {time.monotonic() - began:.1f} s", flush=True)
        sent = [line for line in mine if line.ordinal not in rejected]
        print(
            f"[telechat-batch] shard {index + 1}/{shards}: {len(mine)} of {found.total} requests, "
            f"{len(sent)} sent to vLLM, {len(rejected)} rejected",
            flush=True,
        )
        responses: list[str] = []
        if sent:
            requests_file, responses_file = work / "requests.jsonl", work / "responses.jsonl"
            _write_atomic(requests_file, (line.text for line in sent))
            code, tail = _run_vllm([*command, "-i", str(requests_file), "-o", str(responses_file)])
            if code != 0:
                # Our own codes fail the Job without retries; a vLLM failure must stay retryable.
                raise BatchError(
                    code if code not in (EXIT_BAD_INPUT, EXIT_BAD_OUTPUT) else 1, failure_message(code, tail)
                )
            if not responses_file.exists():
                raise BatchError(
                    1, failure_message(code, [*tail, "(vLLM exited 0 but wrote no results file)"])
                )
            responses = responses_file.read_text(encoding="utf-8").splitlines()
        lines = _merge_responses(mine, rejected, responses)
        try:
            if shards == 1:
                _write_atomic(output, lines)
                merged = True
            else:
                parts_dir = output.parent / f"{output.name}.parts" / run_id
                _write_atomic(parts_dir / f"part-{index:05d}-of-{shards:05d}.jsonl", lines)
                merged = _merge_parts(output, parts_dir, shards, found.total)
        except OSError as exc:
            raise BatchError(EXIT_BAD_OUTPUT, f"cannot write the output {output}: {exc}") from None
    except BatchError as exc:
        _write_summary(summary_file, exc.message)
        return exc.code
    ok = sum(1 for text in lines if succeeded(json.loads(text)))
    summary = ShardSummary(
        shard=index,
        shards=shards,
        input_requests=found.total,
        requests=len(mine),
        succeeded=ok,
        failed=len(lines) - ok,
        invalid=len(rejected),
        output=str(output),
        merged=merged,
    )
    _write_summary(summary_file, summary.to_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run one shard of a TeleChatBatchJob with vLLM's batch mode."
    )
    parser.add_argument("--input", required=True, help="OpenAI batch JSONL file")
    parser.add_argument("--output", required=True, help="results JSONL file (replaced atomically)")
    parser.add_argument("--shards", type=int, default=1, help="pods sharing the input (Indexed Job)")
    parser.add_argument("--summary-file", default=None, help="where the summary goes (the termination log)")
    parser.add_argument("--work-dir", default="/tmp/telechat-batch", help="scratch space for this shard")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then vLLM's run_batch command")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_VALIDATE_FLAG]:
        return _vllm_validator_main(argv[1])
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
