"""Tools of the insurance first-notice-of-loss agent, over demonstration policies."""

from __future__ import annotations

import datetime
import hashlib

from opusagent.agent.tools import tool

_POLICIES = {
    "12345678": {"holder": "Jordan", "active": True},
    "87654321": {"holder": "Casey", "active": False},
}


@tool
async def find_policy(number: str) -> dict[str, object]:
    """The policy with this number, and whether it is in force."""
    policy = _POLICIES.get(number)
    if policy is None:
        return {"active": False, "holder": ""}
    return dict(policy)


@tool
async def open_claim(
    policy: str, kind: str, date: datetime.date, description: str
) -> dict[str, object]:
    """Open a claim; its number is derived from the policy, kind and date of loss."""
    digest = hashlib.sha256(f"{policy}/{kind}/{date.isoformat()}".encode()).hexdigest()
    return {"number": str(int(digest[:8], 16) % 900000 + 100000), "kind": kind}
