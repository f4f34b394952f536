"""Register a data tree on one site and copy it to two others, then print the catalog.

Run it with no arguments: it works in a fresh temporary directory, with three "sites"
that share this machine's filesystem (each a LocalConnector deployment), so nothing has to
be set up by hand::

    python examples/multisite_copy.py [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from streamdata import DataManager, DataType, ExecutionLocation, LocalConnector

SITES = ("origin", "cluster", "cloud")


def make_dataset(root: Path) -> Path:
    """Create a small tree: nested files, an executable, an empty dir and a link."""
    data = root / "origin" / "dataset"
    (data / "raw" / "2026").mkdir(parents=True)
    (data / "empty").mkdir()
    for index in range(5):
        (data / "raw" / "2026" / f"sample-{index}.csv").write_text(
            f"id,value\n{index},{index**2}\n"
        )
    script = data / "analyse.sh"
    script.write_text("#!/bin/sh\necho analysing\n")
    script.chmod(0o755)
    (data / "latest.csv").symlink_to("raw/2026/sample-4.csv")
    return data


def print_catalog(manager: DataManager, path: str) -> None:
    """Print every replica of ``path`` known to the manager."""
    print(f"replicas of {path}:")
    for replica in manager.get_data_locations(path):
        state = "available" if replica.is_available else "pending"
        print(f"  {replica.deployment:8} {replica.data_type.name:13} {state:9} {replica.path}")


async def main(workdir: Path) -> int:
    """Copy the dataset from the origin site to the two others and show the catalog."""
    locations = {site: ExecutionLocation(site, site) for site in SITES}
    dataset = make_dataset(workdir)
    async with DataManager({site: LocalConnector() for site in SITES}) as manager:
        manager.register_path(locations["origin"], str(dataset))
        targets = [locations["cluster"], locations["cloud"]]
        for target in targets:
            (workdir / target.name).mkdir()
        await asyncio.gather(
            *(
                manager.transfer_data(locations["origin"], str(dataset), [t], str(workdir / t.name))
                for t in targets
            )
        )
        print_catalog(manager, str(dataset))
        copies = manager.get_data_locations(str(dataset), location_type=DataType.PRIMARY)
        assert len(copies) == 3, copies
        for copy in copies:
            assert os.access(Path(copy.path) / "analyse.sh", os.X_OK)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if args.keep:
        kept = Path(tempfile.mkdtemp(prefix="streamdata-example-"))
        print(f"working in {kept}")
        raise SystemExit(asyncio.run(main(kept)))
    with tempfile.TemporaryDirectory(prefix="streamdata-example-") as directory:
        raise SystemExit(asyncio.run(main(Path(directory))))
