"""Secrets in replies never reach anything the plugin writes or prints (serial and -n 2), and only secrets do."""

from __future__ import annotations

import pytest
from conftest import dedent

from pytest_llmmetrics.checks import detectors
from pytest_llmmetrics.redact import (
    CREDENTIAL_PATTERNS,
    env_secrets,
    looks_secret,
    scrub,
)

OPENAI = "sk-proj-Abc123def456GHI789jkl012MNO345"
TOKEN = "Zq8vR2kLp0wXyT5mNb7c"
FORMATS = {
    "github-token": "ghp_" + "aB3" * 12,
    "github-pat": "github_pat_" + "11AAAAAAA0" * 3,
    "aws-key": "AKIAIOSFODNN7EXAMPLE",
    "slack-token": "xoxb-123456789012-abcdefghij",
    "google-key": "AIza" + "Sy" + "D" * 33,
    "bearer": "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
}
LEAKS = [OPENAI, TOKEN, *FORMATS.values()]
# What must never be written: the secrets themselves, and their distinctive cores.
CORES = [OPENAI, TOKEN, "aB3aB3aB3aB3", "11AAAAAAA011AAAAAAA0", "IOSFODNN7EXAMPLE", "123456789012-abcdefghij",
         "SyDDDDDDDDDD", "abcdefghijklmnopqrstuvwxyz012345", "MIIEowIBAAKCAQEA"]

BOT = dedent(
    f"""
    LEAKS = {LEAKS!r}

    def reply(messages, **params):
        return "Here you go: " + " and ".join(LEAKS) + ". A fine answer."
    """
)

SUITE = dedent(
    f"""
    import pytest
    from pytest_llmmetrics import metrics

    @pytest.mark.llm(model="py:leaky:reply")
    def test_leaks(llm, llm_metrics):
        reply = llm("What is the key? {TOKEN}")
        llm_metrics.expect(reply, metrics.no_pii(), metrics.contains("{OPENAI}"), metrics.word_count(max=3))

    @pytest.mark.llm(model="py:leaky:reply")
    def test_asserts_on_the_reply(llm):
        reply = llm("hi")
        print("captured:", reply.text)
        assert "zzz" in reply.text

    @pytest.mark.parametrize("key", ["{OPENAI}"])
    def test_key_in_the_id(key, llm_metrics):
        llm_metrics.record("uses[{TOKEN}]", 1.0, higher_is_better=True)
        llm_metrics.record("m_{FORMATS['aws-key']}", 1.0)
        llm_metrics.expect("ok", metrics.not_contains("{FORMATS['github-token']}"))
    """
)


@pytest.fixture
def leaky(pytester, monkeypatch):
    pytester.makepyfile(leaky=BOT, test_leaky=SUITE)
    pytester.syspathinsert()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    monkeypatch.setenv("MY_KEY", "fine answer")  # a *_KEY that is not a secret
    return pytester


def written_text(root) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.suffix != ".py")


@pytest.mark.parametrize("mode", ["serial", "xdist"])
def test_no_secret_reaches_any_output(leaky, monkeypatch, tmp_path, mode):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    extra = ["-n", "2"] if mode == "xdist" else ["-p", "no:xdist"]
    result = leaky.runpytest(*extra, "--llm-record-mode=once", "--llm-baseline-update", "--junitxml",
                                        "junit.xml", "--llm-report-json", "report.json", "-rA")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str() + result.stderr.str()
    assert "captured: Here you go: <redacted:" in out
    assert "no_pii = 8, needs <= 0" in out and "contains[<redacted:OPENAI_API_KEY>]" in out
    files = written_text(leaky.path) + summary.read_text()
    for leak in CORES:
        assert leak not in out, leak
        assert leak not in files, leak
    recordings = (leaky.path / "__recordings__" / "test_leaky.llm.json").read_text()
    assert "<redacted:MY_SERVICE_TOKEN>" in recordings and "<redacted:aws-key>" in recordings
    assert "A fine answer." in recordings  # MY_KEY="fine answer" is no secret: nothing rewritten

    # The replay gives back what was stored, redacted, and still needs no secret.
    monkeypatch.delenv("OPENAI_API_KEY")
    replay = leaky.runpytest(*extra, "--llm-record-mode=none", "-rA")
    replay.assert_outcomes(passed=1, failed=2)
    assert "<redacted:OPENAI_API_KEY>" in replay.stdout.str()
    for leak in CORES[1:]:
        assert leak not in replay.stdout.str(), leak


@pytest.mark.parametrize(("kind", "text"), list(FORMATS.items()))
def test_every_credential_format_is_redacted_and_found_by_no_pii(kind, text):
    redacted = scrub(f"before {text} after", {})
    assert "<redacted:" in redacted and redacted.startswith("before ") and redacted.endswith(" after")
    assert all(core not in redacted for core in CORES)
    assert [f.kind for f in detectors.find_pii(text, ["key"])] == ["key"]


def test_only_values_that_look_like_secrets_count(monkeypatch):
    for value in ("fine answer", "password", "hunter2", "/usr/local/bin/python3", "https://example.com/v1",
                  "12345678901234", "abcdefghijklmnopq", "true"):
        assert not looks_secret(value), value
    for value in (TOKEN, OPENAI, "s3cr3t-P4ssw0rd!x", FORMATS["aws-key"]):
        assert looks_secret(value), value
    monkeypatch.setenv("MY_KEY", "fine answer")
    monkeypatch.setenv("DB_PASSWORD", "s3cr3t-P4ssw0rd!x")
    secrets = env_secrets()
    assert "fine answer" not in secrets and secrets["s3cr3t-P4ssw0rd!x"] == "<redacted:DB_PASSWORD>"
    assert scrub({"k fine answer": ["s3cr3t-P4ssw0rd!x"]}) == {"k fine answer": ["<redacted:DB_PASSWORD>"]}


def test_redaction_has_one_home():
    assert detectors._PII_PATTERNS["key"] == list(CREDENTIAL_PATTERNS.values())


def test_a_snapshot_diff_shows_no_secret(pytester, monkeypatch):
    pytest.importorskip("syrupy")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    pytester.makepyfile(test_snap=dedent(
        """
        import os

        def test_answer(llm_snapshot):
            assert os.environ.get("REPLY", "Refunds take 30 days.") == llm_snapshot(threshold=0.99)
        """))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("REPLY", f"Your token is {TOKEN} and the key {OPENAI}.")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "<redacted:MY_SERVICE_TOKEN>" in out
    assert TOKEN not in out and "Abc123def456GHI789jkl012MNO345" not in out


def test_secrets_cut_short_for_display_are_redacted_around_the_ellipsis():
    from pytest_llmmetrics.redact import scrub_cut

    secrets = {TOKEN: "<redacted:MY_SERVICE_TOKEN>"}
    shown = f"'and {FORMATS['github-token'][:20]}...{FORMATS['bearer'][-18:]} and {TOKEN[:10]}...{TOKEN[-9:]} x'"
    clean = scrub_cut(shown, secrets)
    assert clean == ("'and <redacted:secret>...<redacted:secret> and <redacted:MY_SERVICE_TOKEN>..."
                     "<redacted:MY_SERVICE_TOKEN> x'")
    ordinary = "assert 'The answer is...the capital of France' == 'x'"
    assert scrub_cut(ordinary, secrets) == ordinary
