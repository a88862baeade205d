"""Tools of the bank card agent, over a small demonstration customer table.

A real deployment replaces the table with calls to the bank's systems; the signatures (and so
the JSON Schemas an LLM sees) stay the same.
"""

from __future__ import annotations

import datetime

from opusagent.agent.tools import tool

_CARDS = {
    "4217": {"first_name": "Alex", "birth_date": "1980-03-03", "status": "active"},
    "9051": {"first_name": "Sam", "birth_date": "1992-11-24", "status": "active"},
}
_DELIVERY_DAYS = 5


@tool
async def find_account(last4: str) -> dict[str, object]:
    """Find the card ending in `last4`."""
    return {"found": last4 in _CARDS}


@tool
async def verify_identity(last4: str, birth_date: datetime.date) -> dict[str, object]:
    """Check the caller's date of birth against the card holder's."""
    card = _CARDS.get(last4)
    verified = card is not None and card["birth_date"] == birth_date.isoformat()
    return {"verified": verified, "first_name": card["first_name"] if verified and card else ""}


@tool
async def block_card(last4: str) -> dict[str, object]:
    """Block the card ending in `last4` at once."""
    card = _CARDS.get(last4)
    if card is None:
        return {"blocked": False}
    card["status"] = "blocked"
    return {"blocked": True, "card": last4}


@tool
async def order_replacement(last4: str) -> dict[str, object]:
    """Order a replacement for the card ending in `last4`, sent to the address on file."""
    return {"ordered": last4 in _CARDS, "delivery_days": _DELIVERY_DAYS}
