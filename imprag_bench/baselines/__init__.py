"""Explicit-query RAG baselines: the prompt text (or a hand-designed query) is the retrieval query."""
