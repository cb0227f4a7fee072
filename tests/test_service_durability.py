"""The live service (``python -m pipeline serve``, real uvicorn) under a mixed load of searches,
feedback and new items; stopped with SIGTERM and with SIGKILL, then restarted: every write it
acknowledged is still there. And a batch of hostile uploads leaves its memory as it was."""

from __future__ import annotations

import collections
import shutil
import signal
import threading
import time
import urllib.parse

import numpy as np
import pytest

from benchmarks.hostile_media import hostile_uploads, image_bytes, png_of_zeros, sound_bytes
from benchmarks.service_client import ServiceClient
from benchmarks.service_runner import ServiceProcess
from pipeline.retrieval.index_store import SearchIndex

pytestmark = pytest.mark.slow
TOKEN = "durable-t0ken"
QUERIES = ["a red circle", "a blue square above a green star", "two yellow crosses", "a small triangle"]


class MixedLoad:
    """``clients`` threads, each sending searches (words, an image, a sound), feedback and new
    items (text only, or with a picture) in a seeded random mix until ``stop``. What the
    service acknowledged (201 for an item, 200 for feedback) is recorded."""

    def __init__(self, base: str, item_ids: list[str], clients: int, tag: str):
        self.base, self.item_ids, self.clients, self.tag = base, item_ids, clients, tag
        self.statuses: collections.Counter = collections.Counter()
        self.added: list[str] = []
        self.feedback = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self.picture, self.sound = image_bytes("PNG", (32, 32)), sound_bytes("WAV", 0.5)

    def run(self, seconds: float, kill_after: float | None = None, service: ServiceProcess | None = None) -> None:
        stop = time.time() + seconds
        threads = [threading.Thread(target=self._client, args=(i, stop)) for i in range(self.clients)]
        for t in threads:
            t.start()
        if kill_after is not None:
            time.sleep(kill_after)
            service.stop(signal.SIGKILL)
        for t in threads:
            t.join()

    def _client(self, worker: int, stop: float) -> None:
        rng = np.random.default_rng(worker)
        client = ServiceClient(self.base, TOKEN, timeout=60)
        n = 0
        while time.time() < stop:
            n += 1
            action = rng.choice(["text", "text", "image", "audio", "feedback", "feedback", "add", "add_file"])
            try:
                if action == "text":
                    status, _ = client.post_json("/search", {"query": QUERIES[n % 4], "k": 5, "ranking": "weighted"})
                elif action in ("image", "audio"):
                    file = (
                        ("q.png", self.picture, "image/png")
                        if action == "image"
                        else ("q.wav", self.sound, "audio/wav")
                    )
                    status, _ = client.post_form("/search", {"k": "5"}, file)
                elif action == "feedback":
                    status, _ = client.post_json(
                        "/feedback",
                        {"query": QUERIES[n % 4], "item_id": self.item_ids[int(rng.integers(len(self.item_ids)))]},
                    )
                else:
                    item_id = f"{self.tag}-{worker}-{n}"
                    file = ("z.png", self.picture, "image/png") if action == "add_file" else None
                    status, _ = client.post_form(
                        "/items", {"item_id": item_id, "caption": f"a durable zebra {worker} {n}"}, file
                    )
            except OSError as error:  # the service was killed under us: not acknowledged
                with self._lock:
                    self.failures.append(f"{action}: {error!r}")
                continue
            with self._lock:
                self.statuses[status] += 1
                if status == 201:
                    self.added.append(item_id)
                elif action == "feedback" and status == 200:
                    self.feedback += 1
        client.close()


def class_count_total(folder) -> float:
    # The index as it opens: its base's lexical.npz and the change files since (issue 33: a
    # feedback writes one change file, not the whole Naive Bayes state).
    return float(SearchIndex.open(folder).naive_bayes.state()[1].sum())


def test_mixed_load_then_sigterm_and_sigkill_restarts_keep_every_acknowledged_write(
    smoke_index, tmp_path, isolated_models_dir
):
    folder = tmp_path / "durable"
    shutil.copytree(smoke_index, folder)
    base_items = SearchIndex.open(folder).metadata["item_id"].tolist()
    base_counts = class_count_total(folder)  # every item starts with a class count of 1; each feedback adds 1
    service = ServiceProcess(folder, isolated_models_dir, TOKEN).start()
    try:
        load = MixedLoad(service.base, base_items, clients=6, tag="term")
        load.run(seconds=30)
        assert not load.failures, load.failures[:5]
        assert all(status < 500 for status in load.statuses), load.statuses
        assert load.statuses[200] > 50 and len(load.added) > 5 and load.feedback > 5, load.statuses
        assert service.stop(signal.SIGTERM) in (
            0,
            -signal.SIGTERM,
        )  # uvicorn re-raises the signal after a graceful stop
        service.start()
        client = ServiceClient(service.base, TOKEN)
        for item_id in load.added:
            assert client.get(f"/items/{urllib.parse.quote(item_id, safe='')}")[0] == 200, item_id
        index = SearchIndex.open(folder)
        assert len(index) == len(base_items) + len(load.added)
        assert class_count_total(folder) == base_counts + len(load.added) + load.feedback

        # Killed in the middle of writes: what was acknowledged before stays; the index opens.
        killed = MixedLoad(service.base, base_items, clients=6, tag="kill")
        killed.run(seconds=8, kill_after=5, service=service)
        assert all(status < 500 for status in killed.statuses), killed.statuses
        assert killed.added, "no write was acknowledged before the kill"
        service.start()
        client = ServiceClient(service.base, TOKEN)
        present = set(SearchIndex.open(folder).metadata["item_id"])
        assert set(load.added) | set(killed.added) <= present
        assert (
            class_count_total(folder)
            >= base_counts + len(load.added) + load.feedback + len(killed.added) + killed.feedback
        )
        assert client.post_form("/items", {"item_id": "after-kill", "caption": "still writable"})[0] == 201
    finally:
        service.close()


def test_hostile_uploads_and_bombs_leave_the_service_memory_as_it_was(smoke_index, isolated_models_dir):
    service = ServiceProcess(smoke_index, isolated_models_dir).start()
    try:
        client = ServiceClient(service.base, timeout=30)  # a decoder loop would show as a timeout here
        for file in (
            ("q.png", image_bytes("PNG", (64, 64)), "image/png"),
            ("q.wav", sound_bytes("WAV", 1.0), "audio/wav"),
        ):
            for _ in range(3):  # warm-up: the decoders' first use allocates for good
                assert client.post_form("/search", {"k": "3"}, file)[0] == 200
        before = service.rss_bytes()
        for _ in range(2):
            for name, (data, content_type) in hostile_uploads().items():
                status, body = client.post_form("/search", {"k": "3"}, ("upload", data, content_type))
                assert status in (415, 422), (name, status, body)
        # A bomb just under the pixel limit (36 megapixels of zeros in 100 KB) is decoded and answered.
        under_limit = png_of_zeros(6000, 6000)
        for _ in range(2):
            assert client.post_form("/search", {"k": "3"}, ("bomb.png", under_limit, "image/png"))[0] == 200
        grown = service.rss_bytes() - before
        assert grown < 300 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB"
        assert client.post_json("/search", {"query": "a red circle", "k": 1})[0] == 200
    finally:
        service.close()
