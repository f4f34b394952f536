"""streamdata cp with several destinations and trailing slashes, run as a real command."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cli_env import Env, one_line_error


async def test_one_unreachable_destination_does_not_stop_the_others(env: Env) -> None:
    """remote and an unreachable deployment: remote gets the copy and is registered; exit 1
    and the error line names the unreachable one only."""
    source = env.file("src/f.txt", b"good")
    result = await env.run("cp", source, f"remote:box,down:{env.root}/out.txt")
    one_line_error(result, 1)
    assert "down:127.0.0.1" in result.err and "remote:box" not in result.err
    assert (env.root / "out.txt").read_bytes() == b"good"
    assert result.out.startswith("copied ") and "remote:box:" in result.out
    listing = (await env.run("ls", "--json", source)).json()
    assert isinstance(listing, dict)
    places = {(row["location"], row["path"]) for row in listing["replicas"]}
    assert ("remote:box", str(env.root / "out.txt")) in places


async def test_json_lists_the_outcome_of_every_destination(env: Env) -> None:
    """--json with two sources, one bad destination: one outcome per source and destination;
    the unreachable host is tried once, not once per source."""
    first, second = env.file("src/a.txt", b"a"), env.file("src/b.txt", b"b")
    (env.root / "out").mkdir()
    started = time.monotonic()
    result = await env.run("cp", "--json", first, second, f"remote:box,down:{env.root}/out")
    assert result.code == 1, result
    document = result.json()
    assert isinstance(document, dict)
    outcomes = {
        (copy["source"]["path"], d["location"]): d
        for copy in document["copies"]
        for d in copy["destinations"]
    }
    assert set(outcomes) == {
        (s, d) for s in (first, second) for d in ("remote:box", "down:127.0.0.1")
    }
    for source in (first, second):
        good = outcomes[(source, "remote:box")]
        assert good["ok"] and good["error"] is None and good["type"] == "PRIMARY"
        assert good["path"] == str(env.root / "out" / Path(source).name)
        bad = outcomes[(source, "down:127.0.0.1")]
        assert not bad["ok"] and "cannot connect" in bad["error"]
    assert (env.root / "out" / "a.txt").read_bytes() == b"a"
    assert (env.root / "out" / "b.txt").read_bytes() == b"b"
    assert "down:127.0.0.1" in result.err
    assert time.monotonic() - started < 30


async def test_replicate_serves_the_locations_that_answer(env: Env) -> None:
    """replicate to remote and an unreachable deployment: remote gets its replica, exit 1,
    and --json lists the replicas made and the failed location."""
    source = env.file("src/r.txt", b"r")
    assert (await env.run("cp", source, f"site:{env.root}/seed.txt")).code == 0
    target = str(env.root / "replica.txt")
    result = await env.run("replicate", "--json", source, "remote", "down", "--dst-path", target)
    assert result.code == 1, result
    assert "down:127.0.0.1" in result.err
    document = result.json()
    assert isinstance(document, dict)
    assert [(r["location"], r["path"]) for r in document["replicas"]] == [("remote:box", target)]
    assert [f["location"] for f in document["failures"]] == ["down:127.0.0.1"]
    assert Path(target).read_bytes() == b"r"


async def test_a_trailing_slash_means_into_that_directory(env: Env) -> None:
    """DST/ is a directory, made if missing, that receives the source, as with rsync and
    scp: over SSH, to another local site, as a link on the source's own location, for a
    tree, and for replicate --dst-path."""
    source = env.file("src/f.txt", b"f")
    result = await env.run("cp", source, f"remote:box,site:{env.root}/out/")
    assert result.code == 0, result
    assert (env.root / "out" / "f.txt").read_bytes() == b"f"
    assert not (env.root / "out" / "f.txt").is_symlink()
    linked = await env.run("cp", source, f"{env.root}/links/deeper/")
    assert linked.code == 0, linked
    assert linked.out.startswith("linked ")
    assert os.readlink(env.root / "links" / "deeper" / "f.txt") == source
    env.file("tree/sub/t.txt", b"t")
    tree = await env.run("cp", str(env.root / "tree"), f"remote:box:{env.root}/trees/")
    assert tree.code == 0, tree
    assert (env.root / "trees" / "tree" / "sub" / "t.txt").read_bytes() == b"t"
    placed = await env.run("replicate", source, "remote", "--dst-path", f"{env.root}/rep/")
    assert placed.code == 0, placed
    assert (env.root / "rep" / "f.txt").read_bytes() == b"f"
