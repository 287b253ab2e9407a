"""listing_locations: the Shopify locations, handle and options a listing came with

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03

One row per listing and location of a Shopify inventory export, so the
export can write each row back; see ``models.ListingLocation``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listing_locations",
        sa.Column("listing_id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=255), nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("option1", sa.String(length=255), nullable=True),
        sa.Column("option2", sa.String(length=255), nullable=True),
        sa.Column("option3", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["listing_id"], ["listings.id"], name="fk_listing_locations_listing_id_listings",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("listing_id", "location", name="pk_listing_locations"),
    )


def downgrade() -> None:
    op.drop_table("listing_locations")
