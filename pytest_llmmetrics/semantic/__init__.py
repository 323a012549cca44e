"""Meaning: the embedding engine, its disk cache, the lean BERT encoder and the syrupy snapshot extension."""
