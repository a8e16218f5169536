"""Reading within limits: a line, a document and a whole ingest are bounded, refusals name their flag, and
special files (FIFOs, devices) are refused unless asked for, never waited on."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import threading

import pytest

from memkit.documents import DEFAULT_MAX_DOC_BYTES, MiB, ReadLimits, SourceDocument, format_size, parse_size
from memkit.errors import ConfigError, InputError
from memkit.sources import iter_sources
from streamhelpers import Endless


def split(items):
    return ([i for i in items if isinstance(i, SourceDocument)], [i for i in items if isinstance(i, InputError)])


def test_limits_are_checked_once_and_name_their_flag():
    assert ReadLimits().max_doc_bytes == DEFAULT_MAX_DOC_BYTES
    assert ReadLimits(max_doc_bytes=10).line_bytes == 40
    assert ReadLimits(max_doc_bytes=10, max_line_bytes=7).line_bytes == 7
    for field, flag in (("max_doc_bytes", "--max-doc-bytes"), ("max_line_bytes", "--max-line-bytes"),
                        ("max_input_bytes", "--max-input-bytes")):
        for bad in (0, -5, 1.5, True, "8M", 1 << 51):
            with pytest.raises(ConfigError, match=flag):
                ReadLimits(**{field: bad})


def test_sizes_read_and_written():
    assert parse_size("123") == 123
    assert parse_size("8M") == parse_size("8MiB") == parse_size("8 mib") == 8 * MiB
    assert parse_size("2G") == 2 << 30 and parse_size("64MB") == 64_000_000 and parse_size("1k") == 1024
    for bad in ("", "8X", "1.5M", "-1", "MiB", "8iB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    assert format_size(8 * MiB) == "8 MiB" and format_size(1000) == "1000 bytes" and format_size(1536) == "1.5 KiB"


def test_over_long_jsonl_line_is_skipped_and_reading_goes_on(tmp_path):
    path = tmp_path / "long.jsonl"
    exactly = json.dumps({"text": "x" * 88})                   # 100 bytes: at the limit, kept
    path.write_text("\n".join([json.dumps({"text": "before"}), json.dumps({"text": "y" * 5000}), exactly,
                               json.dumps({"text": "after"})]) + "\n")
    assert len(exactly) == 100
    docs, errors = split(list(iter_sources([str(path)], limits=ReadLimits(max_line_bytes=100))))
    assert [d.text for d in docs] == ["before", "x" * 88, "after"]
    assert [d.position for d in docs] == [0, 1, 2]
    assert [str(e) for e in errors] == [f"{path}:2: line longer than the 100 bytes limit (--max-line-bytes); skipped"]


def test_over_long_last_line_without_newline(tmp_path):
    path = tmp_path / "tail.jsonl"
    path.write_bytes(json.dumps({"text": "kept"}).encode() + b"\n" + b"z" * 101)
    docs, errors = split(list(iter_sources([str(path)], limits=ReadLimits(max_line_bytes=100))))
    assert [d.text for d in docs] == ["kept"] and errors[0].line == 2 and "--max-line-bytes" in str(errors[0])


def test_jsonl_document_over_the_document_limit(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "b" * 200}) + "\n" + json.dumps({"text": "small"}) + "\n")
    docs, errors = split(list(iter_sources([str(path)], limits=ReadLimits(max_doc_bytes=100))))
    assert [d.text for d in docs] == ["small"]
    assert str(errors[0]) == (f"{path}:1: larger than the 100 bytes limit (--max-doc-bytes); it has 200 "
                              "characters; raise the limit to ingest it")


def test_text_file_over_the_default_limit_is_refused_unread(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as fh:                              # sparse: nothing is written, nothing is read
        fh.truncate(DEFAULT_MAX_DOC_BYTES + 1)
    docs, errors = split(list(iter_sources([str(path)])))
    assert not docs
    assert str(errors[0]) == (f"{path}: larger than the 8 MiB limit (--max-doc-bytes); it has 8,388,609 bytes; "
                              "raise the limit to ingest it")
    path.write_text("w" * 150)
    docs, errors = split(list(iter_sources([str(path)], limits=ReadLimits(max_doc_bytes=150))))
    assert docs[0].text == "w" * 150 and not errors


@pytest.mark.timeout(10)
def test_stdin_larger_than_the_limit_is_refused_without_reading_it_all():
    raw = Endless(b"a")
    docs, errors = split(list(iter_sources(["-"], stdin=io.BufferedReader(raw),
                                           limits=ReadLimits(max_doc_bytes=1000))))
    assert not docs and "<stdin>: larger than the 1000 bytes limit (--max-doc-bytes)" in str(errors[0])
    assert raw.consumed <= 1001 + io.DEFAULT_BUFFER_SIZE


@pytest.mark.timeout(10)
def test_endless_jsonl_stdin_stops_at_the_input_limit():
    raw = Endless(b"\x00")                                     # `memkit ingest --format jsonl - < /dev/zero`
    docs, errors = split(list(iter_sources(["-"], fmt="jsonl", stdin=io.BufferedReader(raw),
                                           limits=ReadLimits(max_line_bytes=1000, max_input_bytes=5 * MiB))))
    assert not docs
    assert str(errors[-1]) == ("<stdin>:1: more than 5 MiB read in this ingest, the limit (--max-input-bytes); "
                               "reading stopped here, what was read before is kept")
    assert raw.consumed <= 5 * MiB + 1 + io.DEFAULT_BUFFER_SIZE


def test_input_limit_counts_every_source_and_keeps_what_came_before(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.txt").write_text(f"document {i} " + "p" * 80)      # 91 bytes each
    items = list(iter_sources([str(tmp_path)], limits=ReadLimits(max_input_bytes=200)))
    docs, errors = split(items)
    assert [d.text[:10] for d in docs] == ["document 0", "document 1"]
    assert len(errors) == 1 and str(errors[0]).startswith(f"{tmp_path / '2.txt'}: more than 200 bytes read")
    assert "--max-input-bytes" in str(errors[0])


@pytest.mark.timeout(10)
def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)                                            # no writer: opening it would block forever
    (tmp_path / "good.txt").write_text("good")
    docs, errors = split(list(iter_sources([str(fifo), str(tmp_path / "good.txt")])))
    assert [d.text for d in docs] == ["good"]
    assert str(errors[0]) == (f"{fifo}: a FIFO (named pipe), not a regular file; "
                              "memkit reads special files only with --allow-special")


@pytest.mark.timeout(10)
def test_directory_walk_skips_fifos(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "good.txt").write_text("good")
    docs, errors = split(list(iter_sources([str(tmp_path)], limits=ReadLimits(allow_special=True))))
    assert [d.text for d in docs] == ["good"] and not errors


def refusals_in_a_bounded_process(paths, fmt="auto", **limits) -> list[str]:
    """What iter_sources yields for ``paths``, read in a child process limited to 1 GiB of memory and 20 s, so
    that code reading a device without bound fails this test instead of exhausting the machine's memory."""
    code = ("import json, sys; from memkit.documents import ReadLimits; from memkit.sources import iter_sources; "
            "a = json.loads(sys.argv[1]); "
            "print(json.dumps([str(i) for i in iter_sources(a['paths'], fmt=a['fmt'], "
            "limits=ReadLimits(**a['limits']))]))")

    def bound():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run([sys.executable, "-c", code, json.dumps({"paths": paths, "fmt": fmt, "limits": limits})],
                          capture_output=True, text=True, timeout=20, preexec_fn=bound,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_dev_zero_is_refused_as_a_device():
    assert refusals_in_a_bounded_process(["/dev/zero"]) == [
        "/dev/zero: a character device, not a regular file; memkit reads special files only with --allow-special"]


def test_dev_zero_allowed_is_still_bounded():
    assert refusals_in_a_bounded_process(["/dev/zero"], allow_special=True, max_doc_bytes=1000) == [
        "/dev/zero: binary file (it contains NUL bytes); memkit ingests UTF-8 text"]
    found = refusals_in_a_bounded_process(["/dev/zero"], fmt="jsonl", allow_special=True, max_line_bytes=100,
                                          max_input_bytes=MiB)
    assert found[-1].startswith("/dev/zero:") and "--max-input-bytes" in found[-1]
    assert all("--max-line-bytes" in line for line in found[:-1])


def write_later(fifo, data: bytes) -> threading.Thread:
    def write():
        with open(fifo, "wb") as fh:                           # blocks until the reader opens the FIFO
            fh.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def unblock(fifo, thread):
    """If the reader never opened the FIFO, open it here so the writer thread ends."""
    if thread.is_alive():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(5)
        os.close(fd)


@pytest.mark.timeout(10)
def test_allow_special_reads_a_fifo(tmp_path):
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    writer = write_later(fifo, b'{"text": "through a pipe"}\n{"text": "second"}\n')
    try:
        docs, errors = split(list(iter_sources([str(fifo)], limits=ReadLimits(allow_special=True))))
    finally:
        unblock(fifo, writer)
    assert [d.text for d in docs] == ["through a pipe", "second"] and not errors


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("no")
    path.chmod(0)
    docs, errors = split(list(iter_sources([str(path)])))
    assert not docs and str(errors[0]) == f"{path}: cannot read it (Permission denied)"
