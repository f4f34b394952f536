"""What a failed tool said: a short summary for the message, the whole text in details."""

from __future__ import annotations

import pickle

from streamdata import ConnectorError
from streamdata.connectors._stderr import KEEP_BYTES, SUMMARY_CHARS, StderrBuffer, summarize


def test_summary_prefers_the_line_naming_an_os_error() -> None:
    """tar's short-write lines and closing remark give way to the line with the OS error."""
    text = (
        "tar: ./a: Wrote only 512 of 10240 bytes\n"
        "tar: ./b: Cannot write: No space left on device\n"
        "tar: Exiting with failure status due to previous errors\n"
    )
    assert summarize(text) == "tar: ./b: Cannot write: No space left on device (+2 more lines)"
    assert summarize("tar: Exiting with failure status due to previous errors\n").startswith("tar")
    assert summarize(" \n\n") == ""


def test_summary_is_cut_and_quotes_streamdatas_own_verdict_first() -> None:
    """A long line is cut to SUMMARY_CHARS; a `streamdata:` verdict line comes first."""
    assert len(summarize("x" * 5000)) == SUMMARY_CHARS
    text = "ssh: connect to host b port 22: Connection refused\nstreamdata: the route failed\n"
    assert summarize(text) == "the route failed: ssh: connect to host b port 22: Connection refused"


def test_buffer_keeps_the_start_and_the_end() -> None:
    """A flood keeps its first and last KEEP_BYTES bytes, the gap marked."""
    buffer = StderrBuffer()
    for index in range(10_000):
        buffer.feed(b"line %d\n" % index)
    text = buffer.text()
    assert text.startswith("line 0\n") and text.endswith("line 9999")
    assert "bytes left out" in text and len(text) < 2 * KEEP_BYTES + 100


def test_connector_error_details_survive_pickling() -> None:
    """details travels with the error across processes, like host and transient."""
    error = ConnectorError("cannot copy", host="h", transient=True, details="cp: a\ncp: b")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.host, copy.transient, copy.details) == (
        "cannot copy",
        "h",
        True,
        "cp: a\ncp: b",
    )
