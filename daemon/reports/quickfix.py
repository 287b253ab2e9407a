"""Placeholder: the quick-fix file of an upload (its failed rows, in the source's own format).

Another branch builds the real module with this signature; until it is
merged, no upload has a quick-fix file and the digest attaches none. The
digest calls it from ``reports.attachments.quick_fix_attachments``, for
every upload of the period that was rejected or applied with errors.
"""

from __future__ import annotations

from sqlalchemy.orm import Session


def quick_fix_file(session: Session, upload_id: int) -> tuple[str, bytes] | None:
    """(file name, bytes) of the upload's failed rows in its source's upload format, or None.

    A placeholder that always returns None (see the module's docstring).
    """
    return None
