import asyncio
import re
import time

import pytest

from pipeline.preprocessing.media_check import MediaLimits
from pipeline.retrieval.searcher import QueryError, TextQuery
from pipeline.search_service.state import TextSearchBatcher, UnsupportedMedia, sniff_media, upload_name
from tests.helpers import tone, write_audio, write_image


class SlowEchoSearcher:
    """Answers each query with its own text; the first batch is slow, so the rest queue up."""

    def __init__(self):
        self.batches = []

    def search_texts(self, queries):
        self.batches.append([q.query for q in queries])
        if len(self.batches) == 1:
            time.sleep(0.2)
        return [QueryError(f"bad {q.query}") if q.query.startswith("bad") else f"answer to {q.query}" for q in queries]


def test_concurrent_text_searches_are_answered_together_and_each_gets_its_own_result():
    searcher = SlowEchoSearcher()
    batcher = TextSearchBatcher(lambda: searcher, max_batch=4)

    async def main():
        first = asyncio.ensure_future(batcher.search(TextQuery("q0")))
        await asyncio.sleep(0.05)  # q0 is being answered; the next ones wait for the next batches
        rest = [asyncio.ensure_future(batcher.search(TextQuery(q))) for q in ("q1", "bad2", "q3", "q4", "q5")]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert (
        results[0] == "answer to q0"
        and results[1] == "answer to q1"
        and results[3:] == ["answer to q3", "answer to q4", "answer to q5"]
    )
    assert isinstance(results[2], QueryError) and str(results[2]) == "bad bad2"  # only that request fails
    assert searcher.batches == [["q0"], ["q1", "bad2", "q3", "q4"], ["q5"]]  # at most max_batch together


def test_uploads_are_recognised_by_their_bytes_and_checked_before_decoding(tmp_path):
    png = write_image(tmp_path / "a.png").read_bytes()
    wav = write_audio(tmp_path / "a.wav", tone(0.2), 16000).read_bytes()
    assert sniff_media(png, "application/octet-stream").suffix == ".png"
    assert sniff_media(wav, "image/png").modality == "audio"  # the bytes win over the declared type
    assert sniff_media(write_audio(tmp_path / "a.flac", tone(0.2), 16000).read_bytes()).suffix == ".flac"
    with pytest.raises(QueryError, match="cannot be decoded as image: not a JPEG"):
        sniff_media(b"garbage", "image/png")  # declared as an image: a 422 that says why
    with pytest.raises(UnsupportedMedia, match="unsupported media type application/pdf"):
        sniff_media(b"%PDF-1.4", "application/pdf")
    with pytest.raises(UnsupportedMedia, match="WebP"):
        sniff_media(b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8), "image/webp")  # RIFF, but not a WAV
    with pytest.raises(QueryError, match="1,200 pixels, over the limit of 10"):
        sniff_media(png, "image/png", MediaLimits(max_pixels=10))


def test_upload_names_are_short_safe_and_distinct_whatever_the_id():
    names = {upload_name(i, ".png") for i in ("a/b", "a_b", "a?b", "x" * 300, "..", "été", "a b")}
    assert len(names) == 7
    for name in names:
        assert len(name) <= 60 and re.fullmatch(r"[A-Za-z0-9._-]+\.png", name) and not name.startswith(".")
