"""The embedding engine with the real packaged all-MiniLM-L6-v2: equal to sentence-transformers, batched, cached."""

from __future__ import annotations

import shutil

import pytest

from pytest_llmmetrics import ConfigError
from pytest_llmmetrics.semantic.engine import (
    DEFAULT_EMBEDDING_MODEL,
    EmbeddingEngine,
    resolve_device,
    resolve_model,
)

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

TEXTS = [
    "The capital of France is Paris.",
    "Rückgaben sind innerhalb von 30 Tagen möglich.",
    "ok",
    "word " * 400,  # longer than the model's 256 word pieces
    "Returns are accepted within thirty days of delivery, provided the item is unused and in its box.",
]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def reference_vectors():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(None).source, device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


def test_default_model_is_the_packaged_minilm():
    ref = resolve_model(None)
    assert ref.identity == DEFAULT_EMBEDDING_MODEL and ref.path is not None and (ref.path / "model.safetensors").is_file()
    assert resolve_model(DEFAULT_EMBEDDING_MODEL) == ref  # the hub id resolves to the packaged copy, offline


def test_local_folder_is_identified_by_its_name(tmp_path):
    copy = tmp_path / "my-embedder"
    shutil.copytree(resolve_model(None).path, copy)
    ref = resolve_model(str(copy))
    assert (ref.identity, ref.path) == ("my-embedder", copy.resolve())


def test_lean_encoder_equals_sentence_transformers(reference_vectors):
    engine = EmbeddingEngine(device="cpu")
    with pytest.warns(UserWarning, match="reads only the first 256 word pieces"):
        vectors = engine.embed(TEXTS)
    for text, expected in zip(TEXTS, reference_vectors):
        assert float(vectors[text] @ expected) == pytest.approx(1.0, abs=1e-5)
        assert abs(vectors[text] - expected).max() < 1e-4


def test_sentence_transformers_fallback_for_other_layouts(tmp_path):
    from sentence_transformers import SentenceTransformer

    copy = tmp_path / "max-pooled"
    shutil.copytree(resolve_model(None).path, copy)
    pooling = copy / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false')
                       .replace('"pooling_mode_max_tokens": false', '"pooling_mode_max_tokens": true'))
    engine = EmbeddingEngine(model=str(copy), device="cpu")
    assert type(engine.encoder()).__name__ == "_SentenceTransformersEncoder"
    expected = SentenceTransformer(str(copy), device="cpu").encode(TEXTS[:2], normalize_embeddings=True)
    vectors = engine.embed(TEXTS[:2])
    assert float(vectors[TEXTS[0]] @ expected[0]) == pytest.approx(1.0, abs=1e-5)


def test_unloadable_model_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(resolve_model(None).path, broken)
    (broken / "modules.json").write_text((broken / "modules.json").read_text().replace(
        "sentence_transformers.models.Normalize", "evil.Module"))
    with pytest.raises(ConfigError, match="cannot load the embedding model .*broken"):
        EmbeddingEngine(model=str(broken), device="cpu").encoder()


def test_similarities_encode_each_text_once_in_one_batch():
    engine = EmbeddingEngine(device="cpu")
    reference = "Returns are accepted within 30 days."
    replies = ["You can return items within 30 days.", "Our kettles are red.", reference,
               "You can return items within 30 days."]
    sims = engine.similarities([(reference, r) for r in replies])
    assert sims[2] == 1.0 and sims[0] == sims[3]
    assert sims[0] > 0.7 > 0.3 > sims[1]
    assert engine.encoded == 3  # reference + two distinct replies; the identical pair needs nothing


def test_disk_cache_serves_a_second_engine(tmp_path):
    path = tmp_path / "embeddings.sqlite3"
    first = EmbeddingEngine(device="cpu", cache_path=path)
    value = first.similarity("a kettle", "a teapot")
    second = EmbeddingEngine(device="cpu", cache_path=path)
    assert second.similarity("a kettle", "a teapot") == pytest.approx(value)
    assert second.embed(["a kettle"])["a kettle"].shape == (384,)
    assert second.encoded == 0


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cuda", "mps", "cpu")
    with pytest.raises(ConfigError, match="not one of auto, cpu, cuda, cuda:N or mps"):
        EmbeddingEngine(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            resolve_device("cuda")


@needs_cuda
def test_cuda_fp16_matches_cpu(reference_vectors):
    engine = EmbeddingEngine(device="cuda")
    encoder = engine.encoder()
    assert encoder.dtype == torch.float16 and encoder.device.type == "cuda"
    with pytest.warns(UserWarning):
        vectors = engine.embed(TEXTS)
    for text, expected in zip(TEXTS, reference_vectors):
        assert float(vectors[text] @ expected) == pytest.approx(1.0, abs=2e-3)


@needs_cuda
def test_auto_device_picks_cuda():
    assert resolve_device("auto") == "cuda"
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@needs_cuda
def test_snapshot_flow_on_cuda(pytester):
    pytester.makepyfile(test_gpu="""
def test_gpu(llm_snapshot):
    assert "Items can be returned within 30 days." == llm_snapshot
""")
    pytester.runpytest_subprocess("--llm-device", "cuda", "--snapshot-update").assert_outcomes(passed=1)
    path = pytester.path / "test_gpu.py"
    path.write_text(path.read_text().replace("Items can be returned", "You may return items"))
    pytester.runpytest_subprocess("--llm-device", "cuda").assert_outcomes(passed=1)
