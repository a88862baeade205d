"""The agent file: a Finite State Agent written in YAML and validated by these models.

An agent has typed `slots` (what it learns from the caller), `intents` (what the caller may want,
by example), `states` (what the agent says and collects in each) and `transitions` between them.
`global_transitions` apply in every non-final state (e.g. "agent/human", "goodbye"); `repeat`
is built in. `AgentSpec.model_json_schema()` is the JSON Schema editors use
(`opusagent agent schema`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opusagent.agent.nlu.slots import SlotKind, SlotRules
from opusagent.call.fallback import DEFAULT_FALLBACK_LIMIT, DEFAULT_FALLBACK_SAY

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
IntentName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_/.-]*$")]
Event = Literal["hangup", "voicemail", "transfer_failed", "tool_failed"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotSpec(_Spec):
    """One piece of information the agent collects."""

    type: SlotKind
    description: str = ""
    prompt: str | None = Field(
        None,
        description="Asked when the slot is still missing (a template); default: the state's say.",
    )
    length: int | None = Field(None, ge=1, description="digits/phone: exact number of digits.")
    min_length: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=1)
    minimum: float | None = None
    maximum: float | None = None
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    options: dict[str, list[str]] = Field(
        default_factory=dict, description="choice: each option and the words that mean it."
    )
    pattern: str | None = Field(None, description="A regex the value must fully match.")
    confirm: str | None = Field(
        None,
        description="Read back when the caller gives a value (a template; `value` and "
        "`spoken_value` are set), before whatever the turn says next.",
    )
    sensitive: bool = Field(False, description="Kept out of logs and spoken confirmations.")

    @model_validator(mode="after")
    def _choice_has_options(self) -> SlotSpec:
        if self.type == "choice" and not self.options:
            raise ValueError("a choice slot needs options")
        if self.type != "choice" and self.options:
            raise ValueError(f"options are only for choice slots, not {self.type}")
        return self

    def rules(self) -> SlotRules:
        least = self.length if self.length is not None else self.min_length
        most = self.length if self.length is not None else self.max_length
        return SlotRules(
            kind=self.type,
            min_length=least,
            max_length=most,
            options=self.options,
            minimum=self.minimum,
            maximum=self.maximum,
            currency=self.currency,
            pattern=self.pattern,
        )


class IntentSpec(_Spec):
    """Something the caller may want, learnt from examples."""

    examples: list[str] = Field(min_length=1)
    description: str = ""


class ToolCallSpec(_Spec):
    """A tool to run: `{tool: lookup_card, args: {last4: "{{ slots.card_last4 }}"}}`.

    Argument values are templates when they are strings. The result is kept as
    `tools.<name>` (or `tools.<save_as>`) for conditions and templates.
    """

    tool: Name
    args: dict[str, Any] = Field(default_factory=dict)
    save_as: Name | None = None

    @property
    def result_name(self) -> str:
        return self.save_as or self.tool


class Condition(_Spec):
    """When a transition may fire: every condition given must hold (an empty one always holds).

    `any` holds when at least one of its conditions holds.
    """

    intent: IntentName | list[IntentName] | None = Field(
        None, description="The caller's turn was classified as this intent (or one of these)."
    )
    filled: Name | list[Name] | None = Field(None, description="These slots hold valid values.")
    missing: Name | list[Name] | None = Field(None, description="These slots are still empty.")
    invalid: Name | None = Field(
        None, description="The caller gave this slot a value this turn that failed validation."
    )
    expr: str | None = Field(
        None,
        description="A Jinja expression over slots, tools, context and counters, e.g. "
        '"slots.amount.amount | float > 500" or "tools.verify.ok".',
    )
    dtmf: str | None = Field(
        None, description="The caller keyed exactly these digits (a regex when it starts with ^)."
    )
    no_input: bool | None = Field(None, description="The caller said nothing for the timeout.")
    retries_exhausted: bool | None = Field(
        None, description="The state's retries (no input or no progress) reached max_retries."
    )
    event: Event | None = None
    any: list[Condition] | None = None

    def intents(self) -> list[str]:
        return _listed(self.intent)

    def filled_slots(self) -> list[str]:
        return _listed(self.filled)

    def missing_slots(self) -> list[str]:
        return _listed(self.missing)

    @property
    def needs_input(self) -> bool:
        """True when the condition can only hold in answer to a caller turn or a call event
        (a tool failing is known on entering a state, like a tool's result)."""
        direct = (
            self.intent is not None
            or self.invalid is not None
            or self.dtmf is not None
            or bool(self.no_input)
            or bool(self.retries_exhausted)
            or self.event not in (None, "tool_failed")
        )
        return direct or any(c.needs_input for c in self.any or ())


class TransitionSpec(_Spec):
    """An edge: when `when` holds (and no transition of higher priority does), go `to`."""

    to: Name
    when: Condition = Field(default_factory=Condition)
    priority: int = Field(0, description="Higher is checked first; ties are not allowed.")
    say: str | None = Field(None, description="Spoken on the edge, before the next state's say.")
    do: list[ToolCallSpec] = Field(default_factory=list)
    clear: list[Name] = Field(
        default_factory=list, description="Slots emptied on the edge (to ask for them again)."
    )
    description: str = ""


LLMRole = Literal["propose", "phrase"]
"""What a model is asked for: a proposal (transition, slots, reason) or a state's reply."""


class ModelRoute(_Spec):
    """A per-turn choice of model: the first route of a state's `llm` that matches is taken."""

    model: str = Field(description="The model to use when this route matches.")
    role: LLMRole | None = Field(None, description="Only for this role (default: both).")
    when: str | None = Field(
        None,
        description="A Jinja expression over slots, tools, context and counters (as a "
        'condition\'s expr), e.g. "retries > 0"; default: always.',
    )


class LLMSpec(_Spec):
    """The model that may propose transitions, fill slots and phrase replies (optional).

    Model names are the agent's own: `default` is the server's `llm_model`; the server's
    `llm_models` maps other names to the endpoint's models (unmapped names are sent as they are).
    """

    model: str = Field("default", min_length=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(
        4.0, gt=0, description="Longest wait for a model to start answering (then: fallback)."
    )
    fallback: list[str] = Field(
        default_factory=list,
        description="Models tried in order when the chosen one times out or fails.",
    )
    routes: list[ModelRoute] = Field(
        default_factory=list, description="Per-turn choices of model; the first that matches wins."
    )
    max_tokens: int = Field(60, ge=16, le=4096, description="Longest phrased reply, in tokens.")
    propose: bool = Field(
        True,
        description="Ask for a proposal (transition, slot values, reason) on each caller turn "
        "in free speech; off: the model only phrases replies.",
    )


class StateSpec(_Spec):
    """A state: what the agent says on entry, what it collects and where it may go."""

    say: str | None = Field(None, description="Spoken on entry (a Jinja template).")
    instruction: str | None = Field(
        None, description="For an LLM: how to phrase this state's reply (say is the fallback)."
    )
    collect: list[Name] = Field(default_factory=list, description="Slots asked for here.")
    reprompt: str | None = Field(
        None, description="Said when a turn gets nowhere (default: the say again)."
    )
    no_input_say: str | None = Field(None, description="Said when the caller is silent.")
    max_retries: int | None = Field(None, ge=0, description="Default: the agent's max_retries.")
    tools: list[Name] = Field(default_factory=list, description="Tools an LLM may call here.")
    llm: LLMSpec | None = Field(None, description="This state's model, instead of the agent's.")
    on_enter: list[ToolCallSpec] = Field(default_factory=list)
    scratchpad: str | None = Field(
        None, description="LLM reasoning asked for in this state: logged, never spoken."
    )
    final: bool = Field(False, description="The call ends after this state's say.")
    transitions: list[TransitionSpec] = Field(default_factory=list)
    description: str = ""


class AgentSpec(_Spec):
    """A Finite State Agent."""

    name: Name
    description: str = ""
    language: str = "en-US"
    voice: str | None = Field(None, description="TTS voice; default: the server's.")
    initial: Name = Field(description="The state the call starts in.")
    greeting: str | None = Field(
        None, description="Said before the initial state's say when the call starts."
    )
    resume_say: str = Field(
        "Sorry, we got cut off. Let's carry on.",
        description="Said instead of the greeting when a dropped call resumes.",
    )
    max_retries: int = Field(2, ge=0)
    fallback_say: str = Field(
        DEFAULT_FALLBACK_SAY,
        min_length=1,
        description="Said when a stage fails (the recogniser, the agent or its LLM, the "
        "synthesiser raises, hangs or returns garbage), instead of silence. Rendered when the "
        "call starts, so a synthesiser that dies mid-call still says it.",
    )
    fallback_limit: int = Field(
        DEFAULT_FALLBACK_LIMIT,
        ge=0,
        description="Stage failures in a row after which the call is handed off: transferred "
        "to fallback_transfer, else ended politely; 0: never.",
    )
    fallback_transfer: str | None = Field(
        None,
        min_length=1,
        description="Where the hand-off transfers the caller (a number, SIP URI or queue, as "
        "the transfer tool's target); none: the call ends with a goodbye.",
    )
    fallback_handoff_say: str | None = Field(
        None,
        min_length=1,
        description="Said before the hand-off; default: a line saying the caller is put "
        "through (with fallback_transfer) or asked to call again.",
    )
    on_drop: list[ToolCallSpec] = Field(
        default_factory=list,
        description="Tools run when the caller's connection is lost mid-call (e.g. text them "
        "a resume code with resume_code and send_sms).",
    )
    llm: LLMSpec | None = None
    tools_module: str | None = Field(
        None, description="A Python file (relative to the agent file) registering tools."
    )
    knowledge: str | None = Field(
        None, description="A knowledge base file (YAML list of {question, answer}) for lookup."
    )
    slots: dict[Name, SlotSpec] = Field(default_factory=dict)
    intents: dict[IntentName, IntentSpec] = Field(default_factory=dict)
    global_transitions: list[TransitionSpec] = Field(default_factory=list)
    states: dict[Name, StateSpec] = Field(min_length=1)

    @field_validator("states")
    @classmethod
    def _some_final(cls, states: dict[str, StateSpec]) -> dict[str, StateSpec]:
        if not any(state.final for state in states.values()):
            raise ValueError("at least one state must be final")
        return states

    @model_validator(mode="after")
    def _references_exist(self) -> AgentSpec:
        """Names that must exist for the agent to run at all (lint checks the rest)."""
        if self.initial not in self.states:
            raise ValueError(f"initial state {self.initial!r} is not among the states")
        for where, transition in self.transitions():
            if transition.to not in self.states:
                raise ValueError(f"{where}: transition to unknown state {transition.to!r}")
        for name, state in self.states.items():
            for slot in state.collect:
                if slot not in self.slots:
                    raise ValueError(f"states.{name}.collect: unknown slot {slot!r}")
        return self

    def transitions(self) -> list[tuple[str, TransitionSpec]]:
        """Every transition with where it is written (`states.x.transitions[i]`)."""
        found = [
            (f"global_transitions[{i}]", transition)
            for i, transition in enumerate(self.global_transitions)
        ]
        for name, state in self.states.items():
            found.extend(
                (f"states.{name}.transitions[{i}]", transition)
                for i, transition in enumerate(state.transitions)
            )
        return found


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
