"""A lean BERT sentence encoder for the common sentence-transformers layout (Transformer, Pooling, Normalize).

Why not just ``SentenceTransformer.encode``: importing sentence-transformers
costs about 3 s on a small CPU, and its per-call overhead dominates when a
test encodes one reply at a time. This module runs the same computation with
torch, ``tokenizers`` and ``safetensors`` only, and gives the same embeddings
(tests compare it with sentence-transformers). Models of any other shape fall
back to sentence-transformers in `pytest_llmmetrics.semantic.engine`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

POOLING_MODES = ("pooling_mode_mean_tokens", "pooling_mode_cls_token")


def supports(path: Path) -> bool:
    """True when ``path`` is a sentence-transformers BERT model this encoder reproduces exactly."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        return False
    if modules[0].get("path") not in ("", None):
        return False
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        return False
    if config.get("position_embedding_type", "absolute") != "absolute":
        return False
    if not (path / "tokenizer.json").is_file() or not (path / "model.safetensors").is_file():
        return False
    pooling = _pooling_config(path, modules)
    active = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    return len(active) == 1 and active[0] in POOLING_MODES


def _pooling_config(path: Path, modules: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((path / modules[1]["path"] / "config.json").read_text())
        return config
    except (OSError, ValueError, KeyError):
        return {}


class BertSentenceEncoder:
    """Token embeddings from a BERT encoder, pooled (mean or CLS) and L2-normalised."""

    def __init__(self, path: Path, device: str, half: bool) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float16 if half else torch.float32
        config = json.loads((path / "config.json").read_text())
        modules = json.loads((path / "modules.json").read_text())
        st_config = json.loads((path / "sentence_bert_config.json").read_text()) if (
            path / "sentence_bert_config.json").is_file() else {}
        self.max_length = int(st_config.get("max_seq_length") or config["max_position_embeddings"])
        self.mean_pooling = bool(_pooling_config(path, modules).get("pooling_mode_mean_tokens", True))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        weights = load_file(str(path / "model.safetensors"))
        prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
        self.w = {k[len(prefix):]: v.to(self.device, self.dtype) for k, v in weights.items() if k.startswith(prefix)}
        self.pad_id = int(config.get("pad_token_id", 0))

    def encode(self, texts: list[str]) -> tuple[Any, list[bool]]:
        """A float32 CPU tensor of shape (len(texts), hidden), rows of unit length, and which texts were cut."""
        torch = self.torch
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        types = torch.zeros((len(texts), width), dtype=torch.long)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = torch.tensor(enc.ids)
            mask[row, :n] = 1
            types[row, :n] = torch.tensor(enc.type_ids)
        with torch.inference_mode():
            ids, mask, types = ids.to(self.device), mask.to(self.device), types.to(self.device)
            hidden = self._forward(ids, mask, types)
            if self.mean_pooling:
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            else:
                pooled = hidden[:, 0]
            pooled = pooled.float()
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu(), [bool(e.overflowing) for e in encodings]

    def _forward(self, ids: Any, mask: Any, types: Any) -> Any:
        torch = self.torch
        F = torch.nn.functional
        w = self.w
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = (
            F.embedding(ids, w["embeddings.word_embeddings.weight"])
            + F.embedding(positions, w["embeddings.position_embeddings.weight"])
            + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
        )
        x = self._norm(x, "embeddings.LayerNorm")
        batch, seq, hidden = x.shape
        head_dim = hidden // self.heads
        # Additive mask: padded keys get a large negative score.
        attn_mask = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def heads(name: str) -> Any:  # called right here, in this iteration: the loop variables are current
                y = F.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])  # noqa: B023
                return y.view(batch, seq, self.heads, head_dim).transpose(1, 2)

            q, k, v = heads("attention.self.query"), heads("attention.self.key"), heads("attention.self.value")
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0 / math.sqrt(head_dim))
            ctx = ctx.transpose(1, 2).reshape(batch, seq, hidden)
            x = self._norm(x + self._linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = F.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def _linear(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _norm(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.layer_norm(
            x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"], self.eps
        )
