"""Taking a file out of a drop folder that other people can write.

A watched inbox is written by tools we do not control (the system's sshd,
rsync, a script), so the name we are handed may be a symlink to a secret, a
FIFO that blocks the first reader, a device, or a second name of a file that
lives elsewhere (a hard link), and the file may still be open in a writer
that pauses. The rules here:

- a name that is not one plain regular file (``lstat``: a regular file with
  one link) is refused and never opened; the check is made again on the open
  descriptor (``O_NOFOLLOW | O_NONBLOCK``), so swapping the name between the
  look and the open gains nothing;
- the spool copy is ours: the bytes are copied through one descriptor into a
  file only this daemon has open, and hashed as they are copied. A writer
  still holding its descriptor can append to the original after the claim,
  but never to what is parsed and archived, so the archive always hashes to
  the history's sha256. (Renaming the original into the spool, as a file we
  wrote ourselves is claimed, would move the writer's inode with it.)
- the original is kept beside the copy (``.NAME.claimed``) until the apply's
  commit: ``changed`` compares it then, so a writer that resumed after the
  claim is caught before anything is applied.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1024 * 1024


class FileChanged(Exception):
    """The file changed while it was being claimed: it is looked at again once it settles."""


class NotPlain(Exception):
    """The name is not one plain regular file; the message says what it is."""


def what_it_is(st: os.stat_result) -> str | None:
    """Why a file with this ``lstat`` is refused, or None for one plain regular file."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if st.st_nlink > 1:
        return f"a hard link (the file has {st.st_nlink} names)"
    return None


def refusal(path: Path) -> str | None:
    """What ``path`` is, if it is anything but one plain regular file; never follows or opens it."""
    try:
        return what_it_is(os.lstat(path))
    except FileNotFoundError:
        return None


def refusal_message(name: str, what: str) -> str:
    return (f"{name} is {what}, not a plain file: it was not opened. "
            "Upload the file itself (one name, not a link, pipe or device)")


def open_plain(path: Path) -> int:
    """A read descriptor on ``path``, which must be one plain regular file.

    ``O_NOFOLLOW`` refuses a symlink at the last component, ``O_NONBLOCK``
    keeps a FIFO that appeared after the ``lstat`` from blocking us; the
    descriptor is checked again with ``fstat``.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", 40) or os.path.islink(path):
            raise NotPlain("a symbolic link") from exc
        raise
    what = what_it_is(os.fstat(fd))
    if what is not None:
        os.close(fd)
        raise NotPlain(what)
    return fd


@dataclass(frozen=True)
class Seen:
    """What identifies a file's content without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Seen:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def hash_fd(fd: int, out: int | None = None) -> tuple[str, int]:
    """sha256 and length of the descriptor's bytes from offset 0; copied to ``out`` when given."""
    digest = hashlib.sha256()
    size = 0
    while chunk := os.pread(fd, _CHUNK, size):
        digest.update(chunk)
        if out is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
        size += len(chunk)
    return digest.hexdigest(), size


def copy_fd(fd: int, dst: Path, mtime_ns: int) -> tuple[str, int]:
    """Copy the descriptor's bytes into a new file ``dst`` (synced), hashing them.

    The copy gets the original's mtime, so ``changed`` can compare the two later.
    """
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        sha, size = hash_fd(fd, out)
        os.fsync(out)
    finally:
        os.close(out)
    os.utime(dst, ns=(mtime_ns, mtime_ns))
    return sha, size


def sha256_file(path: Path) -> tuple[str, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def claimed_original(spool_file: Path) -> Path:
    """Where the original of a copied claim waits until the commit (dot name: recovery skips it)."""
    return spool_file.with_name(f".{spool_file.name}.claimed")


def changed(spool_file: Path, before: Seen, sha256: str) -> str | None:
    """Why what was parsed is no longer what was claimed, or None; called just before the commit.

    ``before`` is the spool file as it was when the parse began. The spool
    copy must still be that file with the history's sha256, and the original
    kept beside it (for a watched file) must not have grown or been touched
    since the copy was taken: a writer that resumed after the claim.
    """
    try:
        now = Seen.of(os.lstat(spool_file))
    except FileNotFoundError:
        return "the claimed file disappeared from the spool before it was applied"
    if now != before:
        return (f"the claimed file changed while it was read ({before.size} -> {now.size} bytes)")
    digest, _ = sha256_file(spool_file)
    if digest != sha256:
        return "the claimed file's sha256 is no longer the one recorded when it was received"
    try:
        original = os.lstat(claimed_original(spool_file))
    except FileNotFoundError:
        return None
    if (original.st_size, original.st_mtime_ns) != (now.size, now.mtime_ns):
        return (f"the writer was still writing: the file grew from {now.size} to {original.st_size} "
                "bytes after it was taken. Nothing of it was applied; the whole file is taken again "
                "once the writer has closed it and it has settled")
    return None


def grown(spool_file: Path) -> bool:
    """Whether the original kept beside a copied claim differs from the copy."""
    try:
        original, copy = os.lstat(claimed_original(spool_file)), os.lstat(spool_file)
    except FileNotFoundError:
        return False
    return (original.st_size, original.st_mtime_ns) != (copy.st_size, copy.st_mtime_ns)


def put_back(aside: Path, path: Path) -> Path:
    """Return a claimed original to its inbox without replacing a file that took its name."""
    try:
        os.link(aside, path)  # fails rather than replace
    except FileExistsError:
        path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
        os.rename(aside, path)
        return path
    except OSError:  # a filesystem without hard links
        if os.path.lexists(path):
            path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
        os.rename(aside, path)
        return path
    os.unlink(aside)
    return path
