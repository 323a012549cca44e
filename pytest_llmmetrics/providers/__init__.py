"""The models the ``llm`` fixture calls: spec strings, the per-process cache, and one module per provider."""
