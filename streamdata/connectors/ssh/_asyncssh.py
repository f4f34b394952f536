"""asyncssh, imported once for the whole package, without cryptography's deprecation noise.

Every module of streamdata that needs asyncssh imports it from here::

    from ._asyncssh import asyncssh

asyncssh (2.24.1 and older) names cryptography's DSA classes in type aliases and
signatures evaluated at import time, and cryptography 51 deprecated DSA: each of those
names emits a ``CryptographyDeprecationWarning`` (10 of them) at the first
``import asyncssh``. The warning is about asyncssh's source, not about anything a
streamdata user did or can change (streamdata never offers DSA keys). Left alone, it
prints on the ``streamdata`` command's standard error and, in every test suite that runs
with ``filterwarnings = ["error"]``, turns the first use of an SSH fixture into an error.

So exactly that is ignored: the category ``CryptographyDeprecationWarning``, raised from
asyncssh's own modules, while asyncssh is being imported. The process's warning filters
are restored afterwards, and any other warning of the import still shows.
``tests/test_warnings.py`` imports every module in a fresh interpreter with ``-W error``,
so a dependency release that brings a new warning fails the suite.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["asyncssh"]

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)"
    )
    import asyncssh as asyncssh
