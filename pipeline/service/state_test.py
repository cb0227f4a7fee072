import asyncio
import time

import pytest

from pipeline.retrieval.searcher import QueryError, TextQuery
from pipeline.service.state import TextSearchBatcher, UnsupportedMedia, sniff_media


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
    assert results[0] == "answer to q0" and results[1] == "answer to q1" and results[3:] == ["answer to q3", "answer to q4", "answer to q5"]
    assert isinstance(results[2], QueryError) and str(results[2]) == "bad bad2"  # only that request fails
    assert searcher.batches == [["q0"], ["q1", "bad2", "q3", "q4"], ["q5"]]  # at most max_batch together


def test_uploads_are_recognised_by_their_bytes():
    assert sniff_media(b"\x89PNG\r\n...", "application/octet-stream") == ("image", ".png")
    assert sniff_media(b"\xff\xd8\xff\xe0...", "") == ("image", ".jpg")
    assert sniff_media(b"RIFF....WAVE", "image/png") == ("audio", ".wav")  # the bytes win over the declared type
    assert sniff_media(b"fLaC...", "") == ("audio", ".flac")
    assert sniff_media(b"garbage", "image/png") == ("image", ".jpg")  # declared media: decoding will say what is wrong
    with pytest.raises(UnsupportedMedia, match="unsupported media type application/pdf"):
        sniff_media(b"%PDF-1.4", "application/pdf")
