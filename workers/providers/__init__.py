"""What the jobs call: the LLM provider (OpenAI through the ``openai`` SDK) with its rate limits,
micro-batcher, embedding cache and batch lane; the store (SQLAlchemy); and the notifier (signed
webhooks)."""
