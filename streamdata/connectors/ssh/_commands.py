"""Remote command lines.

Every argument built from a path goes through :func:`shlex.quote`, and every option list
ends with ``--``, so no file name (spaces, quotes, ``$()``, ``;``, newlines, a leading
``-``, any byte but NUL) is ever interpreted by the remote shell or taken for an option.
Listings use NUL separators, the only byte a path cannot hold.
"""

from __future__ import annotations

import posixpath
import uuid
from shlex import join, quote

from .._listing import find_command

__all__ = [
    "archive",
    "block_digests",
    "copy_tree",
    "extract",
    "prepare_destination",
    "read_file",
    "read_ranges",
    "remove_tree",
    "replace",
    "unless_filtered",
    "unpack",
    "walk",
    "write_blocks",
    "write_file",
    "write_ranges",
]


def archive(path: str) -> str:
    """Write a tar stream of the contents of directory ``path`` to standard output."""
    return f"tar -C {quote(path)} -cf - ."


def unpack(path: str) -> str:
    """Create directory ``path`` (which must not exist) and unpack standard input into it."""
    target = quote(path)
    return f"mkdir -m 700 -- {target} && tar -C {target} -xpf - --no-same-owner"


def extract(path: str, *, make: bool = False) -> str:
    """Unpack standard input into the directory ``path``.

    With ``make``, the directory is created (mode 700) unless it exists, so that several
    of these commands may start together.
    """
    target = quote(path)
    start = f"mkdir -p -m 700 -- {target} && " if make else ""
    return f"{start}tar -C {target} -xpf - --no-same-owner"


def prepare_destination(path: str) -> str:
    """Print ``directory`` if ``path`` is one (through a link); else make its parent
    (``mkdir -p``) and print ``file``."""
    parent = posixpath.dirname(path) or "."
    return (
        f"if [ -d {quote(path)} ]; then echo directory; "
        f"else mkdir -p -- {quote(parent)} && echo file; fi"
    )


def read_file(path: str) -> str:
    """Write the bytes of file ``path`` to standard output."""
    return f"cat -- {quote(path)}"


def write_file(path: str, mode: int | None, mtime: float | None) -> str:
    """Write standard input to the new file ``path``, then set its mode and mtime.

    ``set -C`` makes the redirection fail if ``path`` already exists.
    """
    target = quote(path)
    steps = [f"set -C && cat > {target}"]
    if mode is not None:
        steps.append(f"chmod {mode & 0o7777:04o} -- {target}")
    if mtime is not None:
        steps.append(f"touch -m -d @{mtime:.9f} -- {target}")
    return " && ".join(steps)


def write_blocks(path: str) -> str:
    """Write blocks of standard input into file ``path`` at their offsets, acknowledging each.

    The input is records: a line ``OFFSET LENGTH``, then exactly LENGTH bytes, which
    ``dd`` (GNU) writes at OFFSET, creating the file if needed; the line ``OFFSET`` is
    printed once they are written.
    """
    copy = (
        f'dd of={quote(path)} bs=1048576 seek="$o" count="$n" oflag=seek_bytes '
        "iflag=count_bytes,fullblock conv=notrunc status=none"
    )
    return f"while IFS=' ' read -r o n; do {copy} && echo \"$o\" || exit 1; done"


def write_ranges(
    path: str, mode: int | None = None, mtime: float | None = None, size: int | None = None
) -> str:
    """:func:`write_blocks`, then set the mode and mtime of ``path`` when the input ends.

    The file is created (empty) if no block came; with ``size``, it is first cut (or
    extended) to that many bytes.
    """
    target = quote(path)
    stamp = "" if mtime is None else f"-m -d @{mtime:.9f} "
    steps = [write_blocks(path), f"touch {stamp}-- {target}"]
    if size is not None:
        steps.insert(1, f"truncate -s {size:d} -- {target}")
    if mode is not None:
        steps.append(f"chmod {mode & 0o7777:04o} -- {target}")
    return " && ".join(steps)


def block_digests(path: str, size: int, block: int) -> str:
    """Print the SHA-256 of each ``block`` bytes of the first ``size`` bytes of ``path``.

    One line per block (GNU ``split --filter``), in order; nothing for a missing or
    empty file.
    """
    digest = "sha256sum -b"
    source = f"head -c {size:d} -- {quote(path)}"
    return f"{{ {source} 2>/dev/null || :; }} | split -b {block:d} --filter={quote(digest)} -"


def read_ranges(path: str) -> str:
    """Answer each line ``OFFSET LENGTH`` of standard input with those bytes of ``path``.

    Each block is read by ``dd`` (GNU); a block the file no longer holds entirely (it
    shrank) ends the command with status 3 and a message, so the reader, which counts
    on exactly LENGTH bytes, never waits for bytes that will not come.
    """
    source = quote(path)
    copy = (
        f'LC_ALL=C dd if={source} bs=1048576 skip="$o" count="$n" '
        "iflag=skip_bytes,count_bytes 2>&1 >&3"
    )
    short = 'echo "streamdata: the file ends before byte $((o + n))" >&2; exit 3'
    return (
        f"while IFS=' ' read -r o n; do "
        f"c=$({copy}) || {{ printf '%s\\n' \"$c\" >&2; exit 1; }}; "
        f'case "$c" in *"\n$n bytes "*) ;; *) {short};; esac; done 3>&1'
    )


def copy_tree(source: str, target: str) -> str:
    """Copy a file or tree to the new path ``target``, keeping everything ``cp -a`` keeps.

    A symbolic link at ``source`` itself is followed (``-H``), links inside are kept.
    """
    return f"cp -a -H -T -- {quote(source)} {quote(target)}"


#: ``find`` tests for what makes a tree need the tree filter: a special file, an absolute link.
_FILTERED = r"\( -type b -o -type c -o -type p -o -type s -o -type l -lname '/*' \)"


def unless_filtered(path: str, then: str) -> str:
    """Run ``then``, unless the tree ``path`` holds what the tree filter changes.

    If an entry below ``path`` is a special file or an absolute symbolic link, ``then`` is
    not run; instead standard output gets ``h``, then ``s`` for each special file and
    ``l`` and the target for each such link, each record NUL-terminated. ``then`` must
    write nothing on standard output. A link at ``path`` itself is followed.
    """
    tree = quote(path)
    found = f"find -H {tree} -mindepth 1 {_FILTERED}"
    listing = rf"{found} \( -type l -printf 'l%l\0' -o -printf 's\0' \)"
    return (
        f'if [ -z "$({found} -printf x -quit)" ]; then {then}; '
        rf"else printf 'h\0' && exec {listing}; fi"
    )


def remove_tree(path: str) -> str:
    """Remove ``path`` recursively; a missing path is not an error."""
    return f"rm -rf -- {quote(path)}"


def replace(source: str, target: str) -> str:
    """Move ``source`` over ``target`` when ``rename(2)`` cannot (e.g. a non-empty dir).

    The old ``target`` is first renamed aside, then removed once ``source`` is in place.
    """
    aside = quote(posixpath.join(posixpath.dirname(target), f".streamdata-old-{uuid.uuid4().hex}"))
    src, dst = quote(source), quote(target)
    return f"mv -T -- {dst} {aside} && mv -T -- {src} {dst} && rm -rf -- {aside}"


def walk(path: str) -> str:
    """List ``path`` and everything below it, one NUL-separated record per entry.

    The same ``find`` as a local listing (:func:`._listing.find_command`), if ``path`` exists.

    Raises:
        ValueError: If ``path`` is relative.
    """
    target = quote(path)
    return f"if [ -e {target} ] || [ -h {target} ]; then exec {join(find_command(path))}; fi"
