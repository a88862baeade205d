"""Agents: Finite State Agents (fsa), their tools, and the offline language understanding (nlu)."""
