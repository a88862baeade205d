"""Ending an agent's part in a call: closing a reply early, and telling the agent the call ended.

Shared by every conductor of a conversation (the pipeline `Call`, the speech-to-speech
`RealtimeCall`, ConversationRelay's text session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from opusagent.call.stages import Agent, HistoryEntry, TurnKind, UserTurn

log = logging.getLogger(__name__)

HANGUP_REPLY_TIMEOUT_S = 2.0
"""How long the agent may take over the call's end (e.g. an FSA running on_drop tools)."""


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator early so its `finally` blocks run now, not at collection."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def tell_agent_hangup(
    agent: Agent,
    *,
    call_id: str,
    reason: str,
    history: Sequence[HistoryEntry],
    generation: int,
) -> None:
    """The agent learns the call ended (an FSA may record it); its reply is never delivered."""
    turn = UserTurn(TurnKind.HANGUP, text=reason, history=tuple(history), generation=generation)
    parts = agent.respond(turn)
    try:
        async with asyncio.timeout(HANGUP_REPLY_TIMEOUT_S):
            async for _part in parts:
                pass
    except Exception:
        log.exception("call %s: agent failed on hangup", call_id)
    finally:
        await aclose(parts)
