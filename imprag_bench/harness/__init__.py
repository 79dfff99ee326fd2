"""imprag-bench harness: the machinery every task and system shares."""
