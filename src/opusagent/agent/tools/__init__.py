"""Tools an agent can run: Python functions registered by name, with JSON Schemas for LLMs."""

from opusagent.agent.tools.registry import Tool, ToolContext, ToolError, ToolRegistry, tool

__all__ = ["Tool", "ToolContext", "ToolError", "ToolRegistry", "tool"]
