"""The embedding cache is only a cache: a place it cannot use is a warning, never a failed run."""

from __future__ import annotations

import warnings

import pytest

from pytest_llmmetrics.errors import LLMMetricsWarning
from pytest_llmmetrics.semantic.cache import EmbeddingCache

np = pytest.importorskip("numpy")


@pytest.mark.parametrize("obstacle", ["folder-at-the-file", "file-at-the-folder"])
def test_an_unusable_path_warns_once_and_the_cache_is_off(tmp_path, obstacle):
    if obstacle == "folder-at-the-file":
        path = tmp_path / "cache" / "embeddings.sqlite3"
        path.mkdir(parents=True)
    else:
        (tmp_path / "cache").write_text("in the way")
        path = tmp_path / "cache" / "embeddings.sqlite3"
    cache = EmbeddingCache(path)
    with pytest.warns(LLMMetricsWarning, match=r"embeddings\.sqlite3 cannot be used \(.*\); this run goes on"):
        assert cache.get_embeddings("m", ["a"]) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the rest of the run is quiet
        cache.put_embeddings("m", {"a": np.ones(3, dtype=np.float32)})
        cache.put_similarities("m", {("a", "b"): 0.5})
        assert cache.get_similarities("m", [("a", "b")]) == {}
        assert cache.has_embeddings("m", ["a"]) == set()
    assert path.is_dir() if obstacle == "folder-at-the-file" else (tmp_path / "cache").read_text() == "in the way"


def test_a_usable_path_still_caches(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put_embeddings("m", {"a": np.ones(3, dtype=np.float32)})
        assert list(cache.get_embeddings("m", ["a", "b"])) == ["a"]
