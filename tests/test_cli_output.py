"""What the command prints about names holding control characters or undecodable bytes.

Human-readable lines and tables escape them as ``ls -b`` does, so no terminal escape in a
file name reaches the operator's terminal; ``--json`` keeps every name exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from cli_env import Env, closed_port, one_line_error, sites_text
from test_cli_terminal import _ANSI, _run_in_pty

from streamdata.cli._output import printable
from streamdata.testing import AsyncSSHTestServer

#: A file name with an escape sequence, a newline, rich markup and a byte that is not UTF-8.
EVIL = os.fsdecode(b"ev\x1b[31mil\nna[red]me\xff.txt")
SHOWN = "ev\\033[31mil\\nna[red]me\\377.txt"


def _clean(text: str) -> None:
    assert "\x1b" not in text and "\udcff" not in text and "\xff" not in text, text


def test_printable_escapes_like_ls_b() -> None:
    """Control characters, DEL, C1, bidi overrides and surrogates become C or octal escapes."""
    assert printable("plain é name.txt") == "plain é name.txt"
    assert printable("a\x1bb\nc\td\x7fe") == "a\\033b\\nc\\td\\177e"
    assert printable(os.fsdecode(b"x\xff\x80")) == "x\\377\\200"
    assert printable("back\\slash") == "back\\\\slash"
    assert printable("rtl\u202eoverride\x85") == "rtl\\342\\200\\256override\\302\\205"
    assert printable("back\\slash\x1b", backslashes=False) == "back\\slash\\033"


async def test_human_output_escapes_names_and_json_keeps_them(env: Env) -> None:
    """cp, ls, check and an error line show escaped names; ls --json gives the exact name."""
    source = str(env.root / "src" / EVIL)
    env.file(f"src/{EVIL}", b"data")
    copied = await env.run("cp", source, f"remote:box:{env.root}/dst.txt")
    assert copied.code == 0, copied
    assert copied.out.count("\n") == 1 and SHOWN in copied.out
    _clean(copied.out)
    listing = await env.run("ls", source)
    assert listing.code == 0, listing
    assert SHOWN in listing.out and "\\033[31mil" in listing.out.splitlines()[0]
    _clean(listing.out)
    document = await env.run("ls", "--json", source)
    assert "\\udcff" in document.out and "\\u001b" in document.out
    replicas = json.loads(document.out)["replicas"]
    assert os.fsencode(source) in [os.fsencode(row["path"]) for row in replicas]
    env.file(f"src/orphan-{EVIL}")
    report = await env.run("check", "local", str(env.root / "src"))
    assert report.code == 0, report
    assert f"orphan-{SHOWN}" in report.out
    _clean(report.out)
    missing = await env.run("cp", str(env.root / EVIL), f"site:{env.root}/x")
    one_line_error(missing, 1)
    assert SHOWN in missing.err
    _clean(missing.err)


async def test_progress_bars_escape_names(ssh_server: AsyncSSHTestServer, tmp_path: Path) -> None:
    """In a terminal, the progress bar's description shows the escaped name, not the escape."""
    evil = os.fsdecode(b"x\x1b]0;pwned\x07\xfe.bin")
    (tmp_path / evil).write_bytes(os.urandom(1 << 20))
    sites = tmp_path / "sites.toml"
    sites.write_text(sites_text(ssh_server, closed_port()))
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "200"}
    for variable in ("NO_COLOR", "CI", "TERM_PROGRAM"):
        env.pop(variable, None)
    argv = [sys.executable, "-m", "streamdata", "--catalog", str(tmp_path / "catalog.sqlite")]
    argv += ["--sites", str(sites), "cp", str(tmp_path / evil), f"remote:box:{tmp_path}/copy"]
    status, raw = await asyncio.to_thread(_run_in_pty, argv, env, 60)
    assert status == 0, raw[-2000:]
    assert "\x1b]0;pwned" not in raw and "\ufffd" not in raw
    assert "x\\033]0;pwned\\a\\376.bin" in _ANSI.sub("", raw)
