"""imprag-bench: ImpRAG (implicit-query RAG) against explicit-query RAG on the paper's eight tasks.

Subpackages, in the order data flows through them: `harness` (shared machinery: assets, LM loading, corpus,
index, metrics, registry, runner, report, training), `tasks` (what is asked), `baselines` (explicit-query
systems) and `imprag` (the method). `baselines` and `imprag` stand side by side on `harness` and never
import each other.
"""
