"""Finite State Agents: YAML-defined conversations in which rules decide and an LLM may propose."""
