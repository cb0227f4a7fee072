"""What the image and audio modalities share: files whose header ``media_check`` reads."""

from __future__ import annotations

from pipeline.modalities.base import Modality
from pipeline.preprocessing import media_check


class MediaModality(Modality):
    """A modality whose formats ``media_check`` knows: found by magic bytes, its header (size,
    length, bit depth) checked against the limits before any decoder sees the file."""

    def sniff(self, header):
        found = media_check.identify(bytes(header[:16]))
        return found[1] if found and found[0] == self.name else None

    def check(self, data, limits):
        return media_check.check_media(data, self.name, limits)
