"""``memkit ingest`` reads within limits (--max-line-bytes, --max-doc-bytes, --max-input-bytes), each refusal
naming its flag, and refuses FIFOs and devices unless --allow-special is given, never hanging on one."""

from __future__ import annotations

import io
import json
import os
import threading

import pytest

from streamhelpers import Endless


@pytest.fixture
def stream_stdin(monkeypatch):
    """Lets ``memkit(..., input=stream)`` hand the command a binary stream as stdin, not only bytes (the test
    runner copies bytes into memory, which an endless stream cannot be)."""
    import typer.testing

    plain = typer.testing.make_input_stream
    monkeypatch.setattr(typer.testing, "make_input_stream",
                        lambda given, charset: given if isinstance(given, io.BufferedIOBase) else plain(given, charset))


def texts(memkit):
    return [memkit.json("show", d["id"])["text"] for d in memkit.json("ls")]


def test_over_long_line_is_refused_naming_the_flag_and_the_next_line_kept(rag_store, tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"text": "long " * 100}) + "\n" + json.dumps({"text": "short and good"}) + "\n")
    result = rag_store("ingest", path, "--max-line-bytes", "200")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert f"refused: {path}:1: line longer than the 200 bytes limit (--max-line-bytes); skipped" in result.stderr
    assert texts(rag_store) == ["short and good"]


def test_too_large_text_file_is_refused_naming_the_flag_until_it_is_raised(rag_store, tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("a fine sentence about ships. " * 100)               # 2,900 bytes
    result = rag_store("ingest", path, "--max-doc-bytes", "1K")
    assert result.exit_code == 1
    assert (f"refused: {path}: larger than the 1 KiB limit (--max-doc-bytes); it has 2,900 bytes; "
            "raise the limit to ingest it") in result.stderr
    assert texts(rag_store) == []
    assert rag_store("ingest", path, "--max-doc-bytes", "4K").exit_code == 0
    assert len(texts(rag_store)) == 1


@pytest.mark.timeout(20)
def test_stdin_larger_than_the_limit_is_refused_without_reading_it_all(rag_store, stream_stdin):
    raw = Endless(b"a")                                   # as `yes | memkit ingest -`
    result = rag_store("ingest", "-", "--max-doc-bytes", "64K", input=io.BufferedReader(raw))
    assert result.exit_code == 1
    assert "refused: <stdin>: larger than the 64 KiB limit (--max-doc-bytes)" in result.stderr
    assert raw.consumed <= 64 * 1024 + 1 + io.DEFAULT_BUFFER_SIZE


@pytest.mark.timeout(20)
def test_endless_jsonl_stdin_stops_at_the_input_limit_keeping_what_came_before(rag_store, stream_stdin):
    class Feed(Endless):                                  # one good line, then NUL bytes (as from /dev/zero)
        def __init__(self):
            super().__init__(b"\x00")
            self.head = json.dumps({"text": "the only good line"}).encode() + b"\n"

        def readinto(self, buffer):
            if self.head:
                n = min(len(buffer), len(self.head))
                buffer[:n], self.head = self.head[:n], self.head[n:]
                self.consumed += n
                return n
            return super().readinto(buffer)

    raw = Feed()
    result = rag_store("ingest", "-", "--format", "jsonl", "--max-line-bytes", "1K", "--max-input-bytes", "1M",
                       input=io.BufferedReader(raw))
    assert result.exit_code == 1
    assert ("refused: <stdin>:2: more than 1 MiB read in this ingest, the limit (--max-input-bytes); "
            "reading stopped here, what was read before is kept") in result.stderr
    assert raw.consumed <= (1 << 20) + 1 + io.DEFAULT_BUFFER_SIZE
    assert texts(rag_store) == ["the only good line"]


@pytest.mark.timeout(20)
def test_fifo_and_device_are_refused_without_hanging(rag_store, tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)                                       # no writer: opening it would block forever
    (tmp_path / "good.txt").write_text("a good document")
    result = rag_store("ingest", fifo, "/dev/null", tmp_path / "good.txt")     # /dev/zero: see tests/memkit
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert (f"refused: {fifo}: a FIFO (named pipe), not a regular file; "
            "memkit reads special files only with --allow-special") in result.stderr
    assert "refused: /dev/null: a character device, not a regular file" in result.stderr
    assert texts(rag_store) == ["a good document"]


@pytest.mark.timeout(20)
def test_allow_special_reads_a_fifo(rag_store, tmp_path):
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as fh:                      # blocks until memkit opens the FIFO
            fh.write(b'{"text": "came through a pipe"}\n')

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        result = rag_store("ingest", fifo, "--allow-special")
    finally:
        if writer.is_alive():                             # memkit never opened it: let the writer finish
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(5)
            os.close(fd)
    assert result.exit_code == 0, result.stderr
    assert texts(rag_store) == ["came through a pipe"]


def test_bad_size_is_a_usage_error_naming_the_flag(rag_store, tmp_path):
    (tmp_path / "a.txt").write_text("text")
    for value in ("lots", "0", "1.5M"):
        result = rag_store("ingest", tmp_path / "a.txt", "--max-doc-bytes", value)
        assert result.exit_code == 2 and "--max-doc-bytes" in result.stderr, value
    assert texts(rag_store) == []
