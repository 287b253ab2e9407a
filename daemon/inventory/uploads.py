"""An upload's statuses, and the rule that decides how a file ends.

Every file, whatever its kind (a quantity feed, an order or a cancellation
file), moves ``received`` -> ``processing`` -> one final status. The rule for
the final status is one for all kinds, so the history reads the same way for
each of them.
"""

from __future__ import annotations

from enum import StrEnum


class UploadStatus(StrEnum):
    """Where an upload is; stored in ``uploads.status`` as its value."""

    RECEIVED = "received"  # recorded and claimed into the spool
    PROCESSING = "processing"  # a worker has it
    APPLIED = "applied"
    APPLIED_WITH_ERRORS = "applied_with_errors"  # applied, some rows refused
    REJECTED = "rejected"  # nothing applied
    HELD = "held"  # a full feed waiting for a person: approve or reject
    DUPLICATE = "duplicate"  # already applied: not applied again


UNFINISHED = frozenset({UploadStatus.RECEIVED, UploadStatus.PROCESSING})
FINAL = frozenset(UploadStatus) - UNFINISHED
APPLIED = frozenset({UploadStatus.APPLIED, UploadStatus.APPLIED_WITH_ERRORS})


def outcome(*, rows: int, errors: int, taken: int, reject_on_error: bool = False,
            hold: str | None = None, repeated: int = 0) -> tuple[UploadStatus, str | None]:
    """The final status of a file that was read, and the reason when nothing is applied.

    ``rows`` counts the file's rows, ``errors`` its row errors, ``taken`` the
    rows that were valid and used (applied, unchanged, skipped as stale or
    as already imported). ``hold`` is why a full feed must wait for a
    person; ``reject_on_error`` is a source's ``on_row_error = reject_file``.
    ``repeated`` counts the taken rows an idempotent file had applied before
    (order lines imported, cancellations made): a file of nothing else is a
    duplicate. The message of an applied file is the caller's (what it did).
    """
    if hold:
        return UploadStatus.HELD, hold
    if rows == 0:
        return UploadStatus.REJECTED, "the file has a header but no rows"
    if errors and reject_on_error:
        return UploadStatus.REJECTED, f"{errors} row error(s); nothing applied (on_row_error = reject_file)"
    if errors and taken == 0:
        return UploadStatus.REJECTED, f"no valid rows: {errors} row error(s)"
    if not errors and taken and repeated == taken:
        return UploadStatus.DUPLICATE, ("every line was applied before (order lines and cancellations "
                                        "are applied once by market, order and line)")
    return (UploadStatus.APPLIED_WITH_ERRORS if errors else UploadStatus.APPLIED), None
