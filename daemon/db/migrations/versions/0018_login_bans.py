"""login_bans: addresses the hosted endpoints refuse, kept across restarts and shared by every daemon

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03

See ``models.LoginBan``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_bans",
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("banned_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bans", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=True),
        sa.Column("banned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_login_bans"),
    )
    op.create_index("ix_login_bans_banned_until", "login_bans", ["banned_until"])


def downgrade() -> None:
    op.drop_index("ix_login_bans_banned_until", table_name="login_bans")
    op.drop_table("login_bans")
