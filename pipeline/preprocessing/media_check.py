"""Media headers checked in plain Python before any TensorFlow op sees the bytes.

TensorFlow's and tensorflow-io's decoders trust a file's header: they allocate what it
declares (a 23000×23000 PNG, a FLAC that claims 68 billion samples) and some abort the whole
process on a negative size. So every image and sound is read here first, by one parser per
format, against ``MediaLimits``; only what passes reaches a decoder. The service, the CLI, the
training pipeline's file check and ``data describe`` all call ``check_media``.

What a parser accepts is what the pipeline's decoders read: JPEG, PNG, GIF (every frame is
decoded, so frames count towards the pixel limit) and BMP images; 16-bit PCM WAV (the
``fmt `` chunk first), 16-bit FLAC and Ogg Vorbis sounds.

Example:
    >>> info = check_media(Path("photo.png").read_bytes(), IMAGE)
    >>> info.format, info.width, info.height
    ('png', 640, 480)
"""

from __future__ import annotations

import dataclasses
import io
import struct

from pipeline.modalities.names import AUDIO, IMAGE


@dataclasses.dataclass(frozen=True)
class MediaLimits:
    """What one image or sound may cost to decode.

    Args:
        max_pixels: width × height (× frames, for an animated GIF) of an image.
        max_audio_seconds: a sound's duration.
        max_audio_samples: samples × channels of a sound, what its decoding allocates.
        min_sample_rate, max_sample_rate: the sample rates read, in Hz.
        max_channels: the most channels a sound may have.
    """

    max_pixels: int = 40_000_000
    max_audio_seconds: float = 600.0
    max_audio_samples: int = 30_000_000
    min_sample_rate: int = 4_000
    max_sample_rate: int = 192_000
    max_channels: int = 8

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"media limit {field.name} must be positive, not {getattr(self, field.name)!r}")
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError("media limit min_sample_rate is above max_sample_rate")


class MediaRejected(ValueError):
    """Bytes that are not a file the pipeline may decode; the message says why and what to do.

    ``unsupported`` is True when the format itself is not one the pipeline reads (as opposed to
    a file of a known format whose header is damaged or over a limit)."""

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What a header says: for an image its size and frames, for a sound its rate, channels
    and length."""

    modality: str  # image | audio
    format: str  # jpeg | png | gif | bmp | wav | flac | ogg
    suffix: str  # the file suffix of that format
    width: int = 0
    height: int = 0
    frames: int = 1  # images: frames decoded; sounds: samples per channel
    sample_rate: int = 0
    channels: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


IMAGE_KINDS = "JPEG, PNG, GIF or BMP"
AUDIO_KINDS = "16-bit WAV, 16-bit FLAC or Ogg Vorbis"


def identify(data: bytes) -> tuple[str, str] | None:
    """(modality, format) from the first bytes, or None for a format the pipeline does not know."""
    for magic, modality, name in _MAGIC:
        if data.startswith(magic):
            if name == "riff":
                return (AUDIO, "wav") if data[8:12] == b"WAVE" else (IMAGE, "webp") if data[8:12] == b"WEBP" else None
            return modality, name
    return None


def check_media(data: bytes, modality: str | None = None, limits: MediaLimits = MediaLimits()) -> MediaInfo:
    """The header of ``data`` read and checked against ``limits``; raises ``MediaRejected``.

    ``modality`` (``IMAGE`` or ``AUDIO``), when given, is what the caller needs the file to be."""
    data = bytes(data)
    if not data:
        raise MediaRejected("the file is empty")
    found = identify(data)
    if found is None:
        wanted = {IMAGE: IMAGE_KINDS, AUDIO: AUDIO_KINDS}.get(
            modality, f"{IMAGE_KINDS} image, or a {AUDIO_KINDS} sound"
        )
        raise MediaRejected(f"not a {wanted} file (unknown first bytes {data[:8]!r})", unsupported=True)
    kind, name = found
    if modality is not None and kind != modality:
        noun = {IMAGE: "an image", AUDIO: "a sound"}
        raise MediaRejected(
            f"a {name.upper()} file is {noun[kind]}, where {noun.get(modality, modality)} is needed", unsupported=True
        )
    try:
        return _PARSERS[name](data, limits)
    except (struct.error, IndexError):
        raise MediaRejected(f"the {name.upper()} header is cut short: the file is truncated or damaged") from None


# ---------------------------------------------------------------- images


def _image_limit(info: MediaInfo, limits: MediaLimits) -> MediaInfo:
    if info.width <= 0 or info.height <= 0:
        raise MediaRejected(f"the {info.format.upper()} header declares {info.width}×{info.height} pixels")
    if info.pixels > limits.max_pixels:
        frames = f" × {info.frames} frames" if info.frames > 1 else ""
        raise MediaRejected(
            f"the {info.format.upper()} image is {info.width}×{info.height}{frames} = {info.pixels:,} pixels, over the "
            f"limit of {limits.max_pixels:,}; scale it down first"
        )
    return info


def _png(data: bytes, limits: MediaLimits) -> MediaInfo:
    length, chunk = struct.unpack(">I4s", data[8:16])
    if chunk != b"IHDR" or length != 13:
        raise MediaRejected("the PNG does not start with its IHDR header chunk")
    width, height = struct.unpack(">II", data[16:24])
    return _image_limit(MediaInfo(IMAGE, "png", ".png", width, height), limits)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes, limits: MediaLimits) -> MediaInfo:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise MediaRejected(f"the JPEG has no marker at byte {at}: the file is damaged")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            if height == 0:
                raise MediaRejected("the JPEG leaves its height to a later marker (DNL), which is not read")
            return _image_limit(MediaInfo(IMAGE, "jpeg", ".jpg", width, height), limits)
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, start of scan: no frame header came first
            break
        at += 2 + length
    raise MediaRejected("the JPEG has no frame header (SOF) before its image data")


def _gif(data: bytes, limits: MediaLimits) -> MediaInfo:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise MediaRejected("the GIF has an unknown version")
    width, height, packed = struct.unpack("<HHB", data[6:11])
    at = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    frames = 0
    while at < len(data):
        block = data[at]
        if block == 0x3B:  # trailer
            break
        if block == 0x2C:  # an image: its placement may widen the canvas the decoder fills
            left, top, w, h, packed = struct.unpack("<HHHHB", data[at + 1 : at + 10])
            width, height = max(width, left + w), max(height, top + h)
            frames += 1
            if frames * width * height > limits.max_pixels:  # stop walking a bomb early
                break
            at += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0) + 1  # colour table, LZW code size
        elif block == 0x21:  # an extension: label, then sub-blocks
            at += 2
        else:
            raise MediaRejected(f"the GIF has an unknown block 0x{block:02x} at byte {at}: the file is damaged")
        while at < len(data) and data[at]:  # data sub-blocks up to the empty one
            at += data[at] + 1
        at += 1
    if frames == 0:
        raise MediaRejected("the GIF holds no image")
    return _image_limit(MediaInfo(IMAGE, "gif", ".gif", width, height, frames), limits)


def _bmp(data: bytes, limits: MediaLimits) -> MediaInfo:
    offset, header = struct.unpack("<II", data[10:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    else:
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
    if compression not in (0, 3):
        raise MediaRejected(f"the BMP is compressed (method {compression}); only uncompressed BMPs are read")
    height = abs(height)  # negative: stored top-down
    info = _image_limit(MediaInfo(IMAGE, "bmp", ".bmp", width, height), limits)
    if compression in (0, 3):  # uncompressed rows: the pixels must all be there
        needed = offset + ((bits * width + 31) // 32) * 4 * height
        if needed > len(data):
            raise MediaRejected(
                f"the BMP declares {width}×{height} pixels at {bits} bits, {needed:,} bytes, but the file has "
                f"{len(data):,}: it is truncated or its header is damaged"
            )
    return info


def _webp(data: bytes, limits: MediaLimits) -> MediaInfo:
    raise MediaRejected(f"WebP images are not read here; convert it to a {IMAGE_KINDS} file", unsupported=True)


# ---------------------------------------------------------------- sounds


def _audio_limit(info: MediaInfo, limits: MediaLimits) -> MediaInfo:
    name = info.format.upper()
    if not limits.min_sample_rate <= info.sample_rate <= limits.max_sample_rate:
        raise MediaRejected(
            f"the {name} header declares a sample rate of {info.sample_rate:,} Hz; rates from "
            f"{limits.min_sample_rate:,} to {limits.max_sample_rate:,} Hz are read"
        )
    if not 1 <= info.channels <= limits.max_channels:
        raise MediaRejected(f"the {name} header declares {info.channels} channels; 1 to {limits.max_channels} are read")
    if info.frames <= 0:
        raise MediaRejected(f"the {name} file holds no samples (or does not say how many)")
    if info.seconds > limits.max_audio_seconds:
        raise MediaRejected(
            f"the {name} sound lasts {info.seconds:,.1f} s, over the limit of {limits.max_audio_seconds:,.0f} s; trim it first"
        )
    if info.frames * info.channels > limits.max_audio_samples:
        raise MediaRejected(
            f"the {name} sound holds {info.frames * info.channels / 1e6:,.1f} M samples ({info.channels} channels at "
            f"{info.sample_rate:,} Hz), over the limit of {limits.max_audio_samples / 1e6:,.1f} M; downmix or trim it first"
        )
    return info


def _sixteen_bits(name: str, bits: int) -> None:
    if bits != 16:
        raise MediaRejected(
            f"the {name} has {bits}-bit samples; only 16-bit ones are read (convert it, e.g. sox in.{name.lower()} -b 16 out.wav)"
        )


def _wav(data: bytes, limits: MediaLimits) -> MediaInfo:
    # The decoders read the 'fmt ' chunk right after the RIFF header, then walk to 'data'.
    if data[12:16] != b"fmt ":
        raise MediaRejected("the WAV does not start with its 'fmt ' chunk (the decoders read no other layout)")
    (fmt_size,) = struct.unpack("<I", data[16:20])
    if fmt_size < 16:
        raise MediaRejected(f"the WAV's 'fmt ' chunk is {fmt_size} bytes long; a valid one has at least 16")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", data[20:36])
    if tag == 0xFFFE and fmt_size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        (tag,) = struct.unpack("<H", data[44:46])
    if tag != 1:
        raise MediaRejected(f"the WAV holds format {tag} samples; only PCM is read (convert it to 16-bit PCM)")
    _sixteen_bits("WAV", bits)
    if channels and block_align != 2 * channels:
        raise MediaRejected(
            f"the WAV header is inconsistent: {channels} channels of 16 bits but a block of {block_align} bytes"
        )
    at = 20 + fmt_size + fmt_size % 2
    for _ in range(64):
        if at + 8 > len(data):
            break
        chunk, size = struct.unpack("<4sI", data[at : at + 8])
        if chunk == b"data":
            available = len(data) - at - 8
            if size > available:
                raise MediaRejected(
                    f"the WAV's data chunk declares {size:,} bytes but {available:,} follow: the file is truncated "
                    f"or its header is damaged"
                )
            return _audio_limit(
                MediaInfo(
                    AUDIO,
                    "wav",
                    ".wav",
                    sample_rate=rate,
                    channels=channels,
                    frames=size // block_align if block_align else 0,
                ),
                limits,
            )
        at += 8 + size + size % 2
    raise MediaRejected("the WAV has no data chunk among its first chunks: the file is truncated or damaged")


def _flac(data: bytes, limits: MediaLimits) -> MediaInfo:
    block, length = data[4] & 0x7F, int.from_bytes(data[5:8], "big")
    if block != 0 or length != 34:
        raise MediaRejected("the FLAC does not start with its STREAMINFO block")
    (packed,) = struct.unpack(">Q", data[18:26])
    rate, channels, bits, frames = (
        packed >> 44,
        ((packed >> 41) & 7) + 1,
        ((packed >> 36) & 31) + 1,
        packed & ((1 << 36) - 1),
    )
    _sixteen_bits("FLAC", bits)
    return _stream_matches(
        data,
        _audio_limit(MediaInfo(AUDIO, "flac", ".flac", sample_rate=rate, channels=channels, frames=frames), limits),
    )


def _ogg(data: bytes, limits: MediaLimits) -> MediaInfo:
    serial, segments = struct.unpack("<IB", data[14:18] + data[26:27])
    packet = 27 + segments
    if data[packet : packet + 7] != b"\x01vorbis":
        codec = "Opus" if data[packet : packet + 8] == b"OpusHead" else "an unknown codec"
        raise MediaRejected(f"the Ogg file holds {codec}; only Ogg Vorbis is read", unsupported=True)
    channels, rate = struct.unpack("<BI", data[packet + 11 : packet + 16])
    # The decoder sizes its output by the last page's granule position: the stream's length.
    last = len(data)
    while True:
        last = data.rfind(b"OggS", 0, last)
        if last < 0:
            raise MediaRejected("the Ogg file has no final page: it is truncated")
        granule, page_serial = struct.unpack("<qI", data[last + 6 : last + 18])
        if page_serial == serial and granule >= 0:
            break
    return _stream_matches(
        data,
        _audio_limit(MediaInfo(AUDIO, "ogg", ".ogg", sample_rate=rate, channels=channels, frames=granule), limits),
    )


def _stream_matches(data: bytes, info: MediaInfo) -> MediaInfo:
    """A compressed sound's header is only a claim: tensorflow-io's decoders size their output
    by it and loop for ever when the stream holds fewer samples than it says. So the stream is
    decoded here first, by libsndfile, in bounded blocks (at most one past the claim), and its
    sample count must equal the header's."""
    import soundfile

    counted = 0
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            for block in sound.blocks(blocksize=1 << 16, dtype="int16", frames=info.frames + 1):
                counted += len(block)
    except (RuntimeError, ValueError, TypeError, soundfile.LibsndfileError) as error:
        raise MediaRejected(
            f"the {info.format.upper()} stream cannot be decoded ({str(error).strip()[:120]}): the file is damaged"
        ) from None
    if counted != info.frames:
        raise MediaRejected(
            f"the {info.format.upper()} header declares {info.frames:,} samples but the stream holds "
            f"{counted:,}{' or more' if counted > info.frames else ''}: the file is damaged"
        )
    return info


_MAGIC = (
    (b"\xff\xd8\xff", IMAGE, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", IMAGE, "png"),
    (b"GIF8", IMAGE, "gif"),
    (b"BM", IMAGE, "bmp"),
    (b"RIFF", "", "riff"),
    (b"fLaC", AUDIO, "flac"),
    (b"OggS", AUDIO, "ogg"),
)
_PARSERS = {
    "jpeg": _jpeg,
    "png": _png,
    "gif": _gif,
    "bmp": _bmp,
    "webp": _webp,
    "wav": _wav,
    "flac": _flac,
    "ogg": _ogg,
}
