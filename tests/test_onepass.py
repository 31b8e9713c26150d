"""One sequential pass: every file's SHA-256 and the image's, whatever the chunking."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from verification.onepass import EMPTY_SHA256, SECTOR, Extent, files_hit, hash_pass, ranges


def _image(sizes: list[int]) -> tuple[bytes, list[Extent]]:
    """An image with files laid out sector by sector after 20 sectors of 'structures'."""
    data = bytearray(os.urandom(20 * SECTOR))
    extents = []
    for n, size in enumerate(sizes):
        lba = len(data) // SECTOR
        body = os.urandom(size)
        extents.append(Extent(f"data/f{n}", lba if size else 0, size))
        data += body + b"\0" * (-size % SECTOR)
    return bytes(data), extents


def _chunks(data: bytes, sizes: list[int]):
    pos = 0
    for size in sizes:
        if pos >= len(data):
            return
        yield data[pos:pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


@pytest.mark.parametrize("chunk", [1, 7, 2048, 2049, 65536, 1 << 20])
def test_every_file_hash_whatever_the_chunking(chunk):
    data, extents = _image([0, 1, 2047, 2048, 2049, 100_000, 5])
    result = hash_pass((data[i:i + chunk] for i in range(0, len(data), chunk)), extents,
                       capture={"data/f6"})
    assert result.image_sha256 == hashlib.sha256(data).hexdigest()
    assert result.bytes_read == len(data) and result.missing == []
    for e in extents:
        want = hashlib.sha256(data[e.lba * SECTOR:e.lba * SECTOR + e.size]).hexdigest()
        assert result.sha256[e.path] == (EMPTY_SHA256 if e.size == 0 else want)
    f6 = extents[6]
    assert result.captured["data/f6"] == data[f6.lba * SECTOR:f6.lba * SECTOR + 5]


def test_irregular_chunks_and_unsorted_extents():
    data, extents = _image([3000, 10, 70_000, 4096])
    rnd = random.Random(7)
    sizes = [rnd.randint(1, 9000) for _ in range(200)]
    result = hash_pass(_chunks(data, sizes), list(reversed(extents)))
    for e in extents:
        assert result.sha256[e.path] == hashlib.sha256(
            data[e.lba * SECTOR:e.lba * SECTOR + e.size]).hexdigest()


def test_a_stream_that_ends_early_lists_the_files_not_read():
    data, extents = _image([3000, 3000, 3000])
    cut = extents[1].lba * SECTOR + 100
    result = hash_pass([data[:cut]], extents)
    assert result.bytes_read == cut
    assert "data/f0" in result.sha256 and result.missing == ["data/f1", "data/f2"]


def test_unreadable_sectors_map_to_files_or_structures():
    extents = [Extent("a", 20, 3 * SECTOR), Extent("b", 23, 1), Extent("c", 30, 0)]
    hit, elsewhere = files_hit([(5, 2), (21, 3), (29, 1)], extents)
    assert hit == {"a": [21, 22], "b": [23]}
    assert elsewhere == [5, 6, 29]
    assert files_hit([], extents) == ({}, [])


def test_ranges_are_compact():
    assert ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert ranges([]) == ""


def test_a_read_error_is_raised_in_the_callers_thread():
    data, extents = _image([3000, 70_000])

    def failing():
        yield data[:4096]
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        hash_pass(failing(), extents)


def test_the_reading_thread_stops_when_the_caller_gives_up():
    import threading

    data, extents = _image([100_000] * 8)
    read = []

    def chunks():
        for i in range(0, len(data), 4096):
            read.append(i)
            yield data[i:i + 4096]

    def progress(done, total):
        if done > 20_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hash_pass(chunks(), extents, progress=progress)
    assert not any(t.name == "image-sha256" for t in threading.enumerate())
    assert len(read) < len(data) // 4096


def test_files_by_index_in_any_order():
    from verification.onepass import hash_extents

    data, extents = _image([10, 0, 5000, 2048])
    order = [2, 0, 3, 1]
    m = hash_extents([data], [extents[k].lba * SECTOR for k in order],
                     [extents[k].size for k in order], capture={0})
    assert m.image_sha256 == hashlib.sha256(data).hexdigest() and m.bytes_read == len(data)
    for got, k in zip(m.digests, order):
        e = extents[k]
        assert got == hashlib.sha256(data[e.lba * SECTOR:e.lba * SECTOR + e.size]).hexdigest()
    assert m.captured == {0: data[extents[2].lba * SECTOR:extents[2].lba * SECTOR + 5000]}


def test_the_reading_thread_helps_a_slow_caller_and_every_hash_is_right():
    import time

    rnd = random.Random(11)
    data, extents = _image([rnd.randint(1, 3000) for _ in range(400)] + [0, 9000])
    helped = []
    import verification.onepass as op
    real = op._ImageReader

    class Watching(real):
        def __iter__(self):
            for chunk, done in super().__iter__():
                helped.append(done is not None)
                yield chunk, done

    def slow(done, total):
        time.sleep(0.002)

    try:
        op._ImageReader = Watching
        result = hash_pass(_chunks(data, [16384] * 200), extents, capture={"data/f5", "data/f401"},
                           progress=slow)
    finally:
        op._ImageReader = real
    assert any(helped) and not all(helped)
    assert result.image_sha256 == hashlib.sha256(data).hexdigest() and result.missing == []
    for e in extents:
        assert result.sha256[e.path] == hashlib.sha256(
            data[e.lba * SECTOR:e.lba * SECTOR + e.size]).hexdigest()
    f5 = extents[5]
    assert result.captured["data/f5"] == data[f5.lba * SECTOR:f5.lba * SECTOR + f5.size]
    assert result.captured["data/f401"] == data[extents[401].lba * SECTOR:][:9000]


def test_bytes_before_the_first_file_are_hashed_for_the_image_only():
    """Chunks that end before the first file reach the caller as lengths, not bytes."""
    import verification.onepass as op

    data, extents = _image([5000, 3000])        # 20 sectors of 'structures' first
    seen, progress = [], []
    real = op._ImageReader

    class Watching(real):
        def __iter__(self):
            for chunk, done in super().__iter__():
                seen.append(type(chunk).__name__)
                yield chunk, done

    try:
        op._ImageReader = Watching
        result = hash_pass(_chunks(data, [4096] * 40), extents,
                           progress=lambda done, total: progress.append(done))
    finally:
        op._ImageReader = real
    skipped = extents[0].lba * SECTOR // 4096        # chunks wholly before the first file
    assert seen[:skipped] == ["_Skipped"] * skipped and "_Skipped" not in seen[skipped:]
    assert progress[:skipped] == [4096 * (i + 1) for i in range(skipped)]
    assert result.image_sha256 == hashlib.sha256(data).hexdigest()
    for e in extents:
        assert result.sha256[e.path] == hashlib.sha256(
            data[e.lba * SECTOR:e.lba * SECTOR + e.size]).hexdigest()


def test_idle_work_runs_while_the_pass_waits_and_stops_when_done():
    import time

    from verification.onepass import hash_extents

    data, extents = _image([3000] * 20)
    steps = []

    def slow():
        for i in range(0, len(data), 8192):
            time.sleep(0.003)
            yield data[i:i + 8192]

    def idle():
        steps.append(1)
        return len(steps) < 5

    m = hash_extents(slow(), [e.lba * SECTOR for e in extents], [e.size for e in extents],
                     idle=idle)
    assert len(steps) == 5             # called until it said it had nothing more to do
    assert m.image_sha256 == hashlib.sha256(data).hexdigest()


def test_the_switch_interval_is_short_during_a_pass_and_restored_after():
    import sys

    data, extents = _image([100_000] * 4)
    before, during = sys.getswitchinterval(), []
    hash_pass(_chunks(data, [65536] * 10), extents,
              progress=lambda done, total: during.append(sys.getswitchinterval()))
    assert during and max(during) <= 0.0005 < before
    assert sys.getswitchinterval() == before
