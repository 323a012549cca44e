"""The ``llmmetrics`` command (``python -m pytest_llmmetrics``): ``calibrate`` thresholds on labelled replies."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_llmmetrics.calibrate import CalibrationError, run
from pytest_llmmetrics.errors import LLMMetricsError
from pytest_llmmetrics.options import RECORD_MODES
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.values import number_problem

USAGE_ERROR = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="llmmetrics", description="pytest-llmmetrics tools (the tests run in pytest)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cal = commands.add_parser(
        "calibrate", help="choose a metric's threshold from labelled replies",
        description="Measure a metric on human-labelled replies (JSON Lines: one {\"reply\", \"label\", ...} per "
                    "line) and print the threshold that best separates acceptable from unacceptable replies, with "
                    "accuracy, false pass and false fail rates, and Cohen's kappa. Settings come from the "
                    "project's pytest configuration file, then these flags.")
    cal.add_argument("labels", type=Path, metavar="LABELS.jsonl", help="the labelled replies")
    cal.add_argument("--metric", required=True,
                     help="similarity, judge, or the name of a built-in or @metric metric (from conftest.py)")
    cal.add_argument("--max-false-pass", type=float, metavar="RATE",
                     help="also give the best threshold that lets at most this share of unacceptable replies pass")
    cal.add_argument("--json", action="store_true", help="print the result as JSON")
    cal.add_argument("--direction", choices=("higher", "lower"),
                     help="which values are better, for a metric that does not say (no min= or max=)")
    for flag, what in (("--llm-judge-model", "the judge model (judge)"),
                       ("--llm-embedding-model", "the embedding model (similarity)"),
                       ("--llm-device", "where embeddings run"),
                       ("--llm-base-url", "the OpenAI-compatible server of openai: judges"),
                       ("--llm-timeout", "seconds to wait for one judge answer")):
        cal.add_argument(flag, metavar="VALUE", help=f"{what}; as the pytest option of that name")
    cal.add_argument("--llm-record-mode", choices=RECORD_MODES, metavar="MODE",
                     help="record and replay judge calls in __recordings__/ next to LABELS, as in pytest")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_false_pass is not None and number_problem(args.max_false_pass, 0, 1):
        print(f"llmmetrics calibrate: --max-false-pass {number_problem(args.max_false_pass, 0, 1)}, e.g. 0.05",
              file=sys.stderr)
        return USAGE_ERROR
    cli = {name: value for name, value in vars(args).items() if name.startswith("llm_") and value is not None}
    direction = None if args.direction is None else args.direction == "higher"
    try:
        report = run(args.labels, args.metric, max_false_pass=args.max_false_pass, cli=cli, direction=direction)
    except CalibrationError as exc:
        return _fail(str(exc), USAGE_ERROR)
    except LLMMetricsError as exc:
        return _fail(str(exc), 1)
    except Exception as exc:  # noqa: BLE001 -- a judge or metric of the user's raised: say what, not where
        return _fail(f"{type(exc).__name__}: {exc} (raised by the metric or its model)", 1)
    try:
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
        sys.stdout.flush()
    except BrokenPipeError:  # `llmmetrics calibrate ... | head`: the reader left, nothing to say
        sys.stdout = None  # no second error when Python flushes at exit
        return 0
    return 1 if args.max_false_pass is not None and report.strict is None else 0


def _fail(message: str, status: int) -> int:
    """An error on stderr, secrets redacted (an exception may quote a key), and the exit status."""
    print(f"llmmetrics calibrate: {scrub(message)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
