"""The web chat channel: a conversation with an agent by text over a WebSocket (`/chat`), or the
continuation of a call by its resume code.

Our own protocol (JSON text frames, each with a `type`):
- page → server: `{"type":"start","agent":"bank_card"}` (optional `agent`: the server's default
  otherwise), `{"type":"resume","code":"123456"}`, `{"type":"text","text":"…"}`.
- server → page: `{"type":"reply","callId":…,"text":…,"state":…,"ended":bool,"actions":[…]}`
  after each of those, `{"type":"error","message":…}` for a message it cannot take (the
  conversation goes on).
Like `/browser`, it has no authentication yet (local development).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from opusagent.agent.fsa.catalog import UnknownAgentError
from opusagent.sessions.store import SessionStoreUnavailable, StaleWriteError
from opusagent.sessions.text import TextConversations, TextReply, UnknownConversationError

log = logging.getLogger(__name__)

CHAT_PATH = "/chat"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Start(_Message):
    type: Literal["start"]
    agent: str | None = None


class Resume(_Message):
    type: Literal["resume"]
    code: str = Field(pattern=r"^[0-9]{6}$")


class Text(_Message):
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=2000)


PageMessage = Annotated[Start | Resume | Text, Field(discriminator="type")]
_PAGE: TypeAdapter[PageMessage] = TypeAdapter(PageMessage)


class ReplyMessage(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    type: Literal["reply"] = "reply"
    call_id: str = Field(alias="callId")
    text: str
    state: str
    ended: bool
    actions: list[str]

    @classmethod
    def of(cls, reply: TextReply) -> ReplyMessage:
        return cls(
            call_id=reply.call_id,
            text=reply.text,
            state=reply.state,
            ended=reply.ended,
            actions=reply.actions,
        )


class ReplyError(BaseModel):
    type: Literal["error"] = "error"
    message: str


def _error(message: str) -> str:
    return ReplyError(message=message).model_dump_json()


def mount_chat(app: FastAPI, texts: TextConversations) -> None:
    """Serve `WS /chat`."""

    @app.websocket(CHAT_PATH)
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        call_id: str | None = None
        try:
            while True:
                frame = await websocket.receive_text()
                try:
                    message = _PAGE.validate_json(frame)
                    reply = await _answer(texts, message, call_id)
                except ValidationError as exc:
                    await websocket.send_text(_error(f"invalid message: {exc.errors()[0]['msg']}"))
                    continue
                except (UnknownConversationError, UnknownAgentError, ValueError) as exc:
                    await websocket.send_text(_error(str(exc)))
                    continue
                except StaleWriteError:
                    await websocket.send_text(_error("this conversation carried on elsewhere"))
                    continue
                except SessionStoreUnavailable as exc:
                    log.error("chat message not answered: %s", exc)
                    await websocket.send_text(_error("the conversation store is unavailable"))
                    continue
                call_id = reply.call_id
                await websocket.send_text(ReplyMessage.of(reply).model_dump_json(by_alias=True))
        except WebSocketDisconnect:
            log.info("chat %s closed", call_id)


async def _answer(texts: TextConversations, message: PageMessage, call_id: str | None) -> TextReply:
    match message:
        case Start(agent=agent):
            return await texts.start(agent, channel="chat")
        case Resume(code=code):
            return await texts.resume(code)
        case Text(text=text):
            if call_id is None:
                raise ValueError("start or resume a conversation first")
            return await texts.say(call_id, text)
