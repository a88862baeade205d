"""Call records: the calls table and the states each call entered.

Revision ID: 0001
Revises:
Created: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CALL_INDEXES = ("agent", "started_at", "outcome", "final_state")


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("bridge", sa.String(), nullable=False),
        sa.Column("caller", sa.String(), nullable=True),
        sa.Column("called", sa.String(), nullable=True),
        # Naive UTC: the models' UTCDateTime converts on the way in and out.
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("end_reason", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("final_state", sa.String(), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("audit", sa.JSON(), nullable=False),
        sa.Column("tool_calls", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("turn_latencies_s", sa.JSON(), nullable=False),
        sa.Column("recording_path", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("call_id", name=op.f("uq_calls_call_id")),
    )
    for column in CALL_INDEXES:
        op.create_index(op.f(f"ix_calls_{column}"), "calls", [column])
    op.create_table(
        "call_states",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.call_id"],
            name=op.f("fk_call_states_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", "position", name=op.f("pk_call_states")),
    )
    op.create_index(op.f("ix_call_states_state"), "call_states", ["state"])


def downgrade() -> None:
    op.drop_table("call_states")
    op.drop_table("calls")
