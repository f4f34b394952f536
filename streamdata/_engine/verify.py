"""Verifying copies before they are renamed into place: each against its source.

A file's XXH3-128 digest (computed as it streamed, or by reading the source when it was
copied in the kernel) is compared with the destination's; a tree's listing (paths,
types, sizes) with the copy's. A mismatch fails that destination.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import StreamDataError, TransferError
from .._integrity import HASH_NAME, digest_of, listing_of
from ..connectors._base import Entry, EntryKind
from .job import Job
from .transfer import Endpoint

__all__ = ["verify_copies"]


async def verify_copies(
    source: Endpoint,
    entry: Entry,
    jobs: Sequence[Job],
    results: list[BaseException | None],
    digest: str | None,
) -> str | None:
    """Compare each written destination with the source; mismatches become failures.

    Returns:
        The file's digest (computed here if nothing streamed), else ``digest``.
    """
    if entry.kind is EntryKind.FILE:
        if digest is None:  # copied in the kernel: nothing streamed through us
            digest = await digest_of(source.connector, source.location, source.path)
        expected: object = digest
    else:
        expected = await listing_of(source.connector, source.location, source.path)
    for index, job in enumerate(jobs):
        if results[index] is None:
            results[index] = await _verify_one(source, entry, job, expected)
    return digest


async def _verify_one(
    source: Endpoint, entry: Entry, job: Job, expected: object
) -> BaseException | None:
    assert job.tmp is not None
    try:
        if entry.kind is EntryKind.FILE:
            found: object = await digest_of(job.connector, job.location, job.tmp)
        else:
            found = await listing_of(job.connector, job.location, job.tmp)
    except StreamDataError as exc:
        return exc
    if found == expected:
        return None
    what = f"{HASH_NAME} digest" if entry.kind is EntryKind.FILE else "tree listing"
    return TransferError(
        f"integrity check failed for {job.final!r} on {job.location}: its {what} "
        f"differs from the source {source.path!r}"
    )
