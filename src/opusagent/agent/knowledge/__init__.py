"""A small knowledge base an agent's `lookup` tool answers questions from."""

from opusagent.agent.knowledge.base import Answer, KnowledgeBase, KnowledgeError

__all__ = ["Answer", "KnowledgeBase", "KnowledgeError"]
