"""``python -m streamdata``: the ``streamdata`` command."""

from .cli._main import main

if __name__ == "__main__":
    raise SystemExit(main())
