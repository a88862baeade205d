"""Chat LLMs under the FSA's control: a client for any OpenAI-compatible endpoint (Azure, and
Anthropic optionally), a model router, and the roles an LLM plays (proposer, phraser)."""
