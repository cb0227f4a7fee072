"""Media an attacker sends, made in memory: valid encodings of every format the pipeline reads,
and hostile variants of them (lying headers, decompression bombs, formats it does not read).
Used by the hostile-input tests and by ``make bench-hostile``."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile as sf
from PIL import Image


def image_bytes(fmt: str, size=(40, 30), frames: int = 1) -> bytes:
    out = io.BytesIO()
    pictures = [Image.new("RGB", size, (40 * i % 255, 90, 200)) for i in range(frames)]
    pictures[0].save(out, format=fmt, save_all=frames > 1, append_images=pictures[1:])
    return out.getvalue()


def sound_bytes(
    fmt: str, seconds: float = 0.5, rate: int = 16000, channels: int = 1, subtype: str | None = None
) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = io.BytesIO()
    sf.write(
        out,
        np.stack([x] * channels, 1) if channels > 1 else x,
        rate,
        format=fmt,
        subtype=subtype or ("VORBIS" if fmt == "OGG" else "PCM_16"),
    )
    return out.getvalue()


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def png_of_zeros(width: int, height: int) -> bytes:
    """A real decompression bomb: a valid PNG of black pixels, a few hundred KB per 100 megapixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row, parts = zlib.compressobj(9), bytes(1 + 3 * width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def gif_of_frames(width: int, height: int, frames: int) -> bytes:
    """A GIF whose every frame is one pixel of LZW data (15 bytes), each decoded onto the whole
    ``width`` × ``height`` screen: a bomb of frames."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)  # a 2-colour global table
    # LZW, minimum code size 2: clear (4), pixel 0, end (5) in 3-bit codes, least significant bit first.
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame * frames + b";"


def hostile_uploads() -> dict[str, tuple[bytes, str]]:
    """Uploads an attacker sends to the search service: name → (bytes, declared content type).
    Each must get a 4xx, quickly, and leave the process and its memory as they were."""
    wav, flac, ogg = sound_bytes("WAV", 0.5), sound_bytes("FLAC", 0.5), sound_bytes("OGG", 0.5)
    data_at = wav.index(b"data")
    (info,) = struct.unpack(">Q", flac[18:26])
    gif, jpeg, bmp = image_bytes("GIF"), image_bytes("JPEG"), image_bytes("BMP")
    slow = sound_bytes("WAV", 0.2)
    return {
        "wav data chunk size 0xFFFFFFF0 (row 1)": (
            patched(wav, data_at + 4, struct.pack("<I", 0xFFFFFFF0)),
            "audio/wav",
        ),
        "wav riff and data sizes negative as int32": (
            patched(patched(wav, 4, b"\xff\xff\xff\xff"), data_at + 4, b"\xfe\xff\xff\xff"),
            "audio/wav",
        ),
        "wav at 1 Hz (row 5)": (patched(slow, 24, struct.pack("<II", 1, 2)), "audio/wav"),
        "wav at 1 Hz, 2 MB (row 5)": (patched(sound_bytes("WAV", 62.5), 24, struct.pack("<II", 1, 2)), "audio/wav"),
        "wav with 0 channels": (patched(wav, 22, struct.pack("<H", 0)), "audio/wav"),
        "wav with 65535 channels": (patched(wav, 22, struct.pack("<H", 65535)), "audio/wav"),
        "wav of 24-bit samples": (sound_bytes("WAV", 0.2, subtype="PCM_24"), "audio/wav"),
        "wav of float samples": (sound_bytes("WAV", 0.2, subtype="FLOAT"), "audio/wav"),
        "wav cut in its header": (wav[:30], "audio/wav"),
        "flac claiming 68 billion samples": (
            patched(flac, 18, struct.pack(">Q", info | ((1 << 36) - 1))),
            "audio/flac",
        ),
        "flac claiming more samples than its stream (decoder loop)": (
            patched(flac, 18, struct.pack(">Q", (info & ~((1 << 36) - 1)) | 57536)),
            "audio/flac",
        ),
        "flac at 1 Hz": (patched(flac, 18, struct.pack(">Q", (info & ((1 << 44) - 1)) | (1 << 44))), "audio/flac"),
        "ogg claiming 10^11 samples": (patched(ogg, ogg.rfind(b"OggS") + 6, struct.pack("<q", 10**11)), "audio/ogg"),
        "png 23000x23000 header (row 3)": (
            png_of_zeros(64, 64)[:16] + struct.pack(">II", 23000, 23000) + png_of_zeros(64, 64)[24:],
            "image/png",
        ),
        "png bomb 10000x10000 of zeros": (png_of_zeros(10000, 10000), "image/png"),
        "jpeg declaring 60000x60000": (
            patched(jpeg, jpeg.index(b"\xff\xc0") + 5, struct.pack(">HH", 60000, 60000)),
            "image/jpeg",
        ),
        "gif screen 65535x65535": (patched(gif, 6, struct.pack("<HH", 65535, 65535)), "image/gif"),
        "gif frame placed at 60000,60000": (
            patched(gif, gif.index(b"\x2c", 13) + 1, struct.pack("<HH", 60000, 60000)),
            "image/gif",
        ),
        "gif of 5000 frames on a 100x100 screen": (gif_of_frames(100, 100, 5000), "image/gif"),
        "bmp declaring 23000x-23000": (patched(bmp, 18, struct.pack("<ii", 23000, -23000)), "image/bmp"),
        "bmp with its pixels cut": (bmp[:200], "image/bmp"),
        "webp": (
            b"RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x000\x01\x00\x9d\x01\x2a\x01\x00\x01\x00\x02\x00",
            "image/webp",
        ),
        "random bytes declared as an image": (
            bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
            "image/png",
        ),
    }
