"""ImpRAG (arXiv 2506.02279): one decoder LM retrieves with its bottom layers and reads with its middle layers."""
