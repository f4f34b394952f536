"""The public surface: exactly the names in ``__all__``, each documented."""

from __future__ import annotations

import inspect
import types

import streamdata

CONTRACT_NAMES = {
    "ConfigurationError",
    "ConnectorError",
    "ConsistencyError",
    "DataLocation",
    "DataManager",
    "DataNotFoundError",
    "DataType",
    "ExecutionLocation",
    "LocalConnector",
    "SSHConnector",
    "SSHHost",
    "StreamDataError",
    "TransferError",
    "CheckReport",
}


def test_all_is_sorted_and_unique() -> None:
    """``__all__`` is sorted and has no duplicates."""
    assert list(streamdata.__all__) == sorted(set(streamdata.__all__))


def test_all_is_exactly_the_public_surface() -> None:
    """Every public attribute of the package is in ``__all__`` and vice versa."""
    for name in streamdata.__all__:  # the package imports each name on first use
        getattr(streamdata, name)
    public = {
        name
        for name, value in vars(streamdata).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("streamdata")
    }
    assert public | {"__version__"} == set(streamdata.__all__) == set(dir(streamdata))


def test_contract_names_are_exported() -> None:
    """Every name of CONTRACT.md is importable from the top-level package."""
    assert set(streamdata.__all__) >= CONTRACT_NAMES


def _documented(obj: object) -> bool:
    return bool(inspect.getdoc(obj) and inspect.getdoc(obj).strip())  # type: ignore[union-attr]


def test_every_public_name_is_documented() -> None:
    """Each exported name and each public method or property of exported classes is documented."""
    undocumented = []
    for name in streamdata.__all__:
        if name == "__version__":
            continue
        obj = getattr(streamdata, name)
        if not _documented(obj):
            undocumented.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or (
                    not callable(member) and not isinstance(member, property)
                ):
                    continue
                if not _documented(member):
                    undocumented.append(f"{name}.{attr}")
    assert undocumented == []


def test_errors_form_the_contract_hierarchy() -> None:
    """Every error is a StreamDataError, and the families are direct children of it."""
    for name in (
        "DataNotFoundError",
        "TransferError",
        "ConnectorError",
        "ConsistencyError",
        "ConfigurationError",
    ):
        error = getattr(streamdata, name)
        assert error.__bases__ == (streamdata.StreamDataError,)
    assert streamdata.StreamDataError.__bases__ == (Exception,)


def test_version_is_a_string() -> None:
    """The package exposes its version."""
    assert isinstance(streamdata.__version__, str)
    assert streamdata.__version__.count(".") >= 2


def test_every_public_name_has_an_api_page() -> None:
    """Each exported name is rendered by some page of the API reference (docs/api)."""
    from pathlib import Path

    pages = "".join(
        p.read_text() for p in (Path(__file__).parent.parent / "docs" / "api").glob("*.md")
    )
    missing = [
        name
        for name in streamdata.__all__
        if name != "__version__" and f"::: streamdata.{name}\n" not in pages
    ]
    assert missing == []


def test_the_testing_module_is_documented_name_by_name() -> None:
    """Every name in streamdata.testing.__all__ is listed on the plugin's API page."""
    from pathlib import Path

    import streamdata.testing

    page = (Path(__file__).parent.parent / "docs" / "api" / "testing.md").read_text()
    assert "::: streamdata.testing\n" in page
    listed = {line.strip().removeprefix("- ") for line in page.splitlines() if "        - " in line}
    assert listed == set(streamdata.testing.__all__)


def _public_objects(module: types.ModuleType) -> dict[str, object]:
    """The classes and functions (fixtures included) a module exports."""
    values = {name: getattr(module, name) for name in module.__all__}
    return {name: value for name, value in values.items() if callable(value)}


def test_public_names_live_where_users_import_them() -> None:
    """Every exported class and function says it is streamdata's (or streamdata.testing's),
    so repr, tracebacks, pickles and docs show no private module."""
    import streamdata.testing

    for module in (streamdata, streamdata.testing):
        homes = {name: value.__module__ for name, value in _public_objects(module).items()}
        assert homes == dict.fromkeys(homes, module.__name__)
    assert repr(streamdata.TransferError) == "<class 'streamdata.TransferError'>"


def test_errors_and_classes_pickle_by_their_public_names() -> None:
    """Each public class unpickles as itself; errors keep message and attributes, and their
    pickles name no private module."""
    import pickle

    for value in _public_objects(streamdata).values():
        assert pickle.loads(pickle.dumps(value)) is value
    where = streamdata.ExecutionLocation("node", "site")
    cause = streamdata.ConnectorError("refused", host="h", transient=True, details="log")
    errors = [
        streamdata.TransferError("failed", {where: cause}),
        cause,
        streamdata.DataNotFoundError("gone"),
    ]
    for error in errors:
        dumped = pickle.dumps(error)
        assert b"streamdata._" not in dumped
        clone = pickle.loads(dumped)
        assert type(clone) is type(error) and str(clone) == str(error)
        assert vars(clone).keys() == vars(error).keys()
    transfer, connector = pickle.loads(pickle.dumps(errors[0])), pickle.loads(pickle.dumps(cause))
    assert str(transfer.failures[where]) == "refused"
    assert (connector.host, connector.transient, connector.details) == ("h", True, "log")
