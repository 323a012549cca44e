"""Every example in README.md runs, and prints what the README shows.

A scenario starts at ``<!-- scenario: NAME -->`` and ends with its ``##`` section; each ``<!-- file: PATH -->``
names the code block after it; a ``console`` block starting with ``$ pytest``
is run, and its other lines must appear in order in the output (``*`` is a
wildcard, as in ``fnmatch_lines``); a ``console`` block starting with
``$ cat PATH`` must show that file exactly.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)


def scenarios() -> dict[str, tuple[dict[str, str], list[tuple[list[str], list[str]]]]]:
    found = {}
    parts = re.split(r"<!-- scenario: (\S+) -->", README.read_text())
    for name, text in zip(parts[1::2], parts[2::2]):
        text = text.split("\n## ", 1)[0]  # a scenario ends with its section
        files, runs = {}, []
        for block in BLOCK.finditer(text):
            if block["file"]:
                files[block["file"]] = block["body"]
            elif block["lang"] == "console" and block["body"].startswith(("$ pytest", "$ cat ")):
                command, *expected = block["body"].rstrip("\n").split("\n")
                runs.append((shlex.split(command[2:]), expected))
        found[name] = (files, runs)
    return found


SCENARIOS = scenarios()


def test_readme_has_scenarios():
    assert {"quickstart", "override", "custom", "bad-marker", "snapshot", "snapshot-drift", "baseline",
            "baseline-regression", "recording", "pooled"} <= set(SCENARIOS)
    assert all(runs for _, runs in SCENARIOS.values())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_readme_scenario(pytester: pytest.Pytester, name: str) -> None:
    files, runs = SCENARIOS[name]
    for path, body in files.items():
        pytester.path.joinpath(path).parent.mkdir(parents=True, exist_ok=True)
        pytester.path.joinpath(path).write_text(body)
    for (program, *args), expected in runs:
        if program == "cat":
            assert pytester.path.joinpath(args[0]).read_text().splitlines() == expected
            continue
        result = pytester.runpytest(*args)
        result.stdout.fnmatch_lines([line.rstrip() for line in expected if line.strip()], consecutive=False)
