"""What the jobs call: the LLM, its limits and batching, the store, the notifier."""
