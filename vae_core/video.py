"""Video files from frames, streamed: H.264 MP4, VP9 WebM, GIF and animated WebP through PyAV.

Frames go to the encoder one by one as they arrive, so memory does not grow with the frame
count. The file appears under its name only when complete (written to a hidden temp file in the
same folder, then renamed), so a crash or a cancelled render never leaves half a video behind.

Encoder speed settings keep a render close to the cost of decoding its frames. Measured on 480
64x64 emoji frames, CPU time: x264 `veryfast` 2.4x faster than `medium` at the same size and
-0.6 dB PSNR; VP9 `realtime`/`cpu-used 6` 2.8x faster than `good`/4 at +8% size, same PSNR;
WebP `compression_level 2` 1.7x faster than the default 4 at +2% size, same PSNR.

What each container holds (PyAV 18 / FFmpeg 8.1):
- .mp4: libx264, yuv420p, CRF; odd sizes are padded by one edge pixel (4:2:0 needs even sizes);
  metadata as MP4 `mdta` tags (any key, read back by PyAV/ffprobe as container metadata).
- .webm: libvpx-vp9, yuv420p, CRF (odd sizes fine); metadata as Matroska tags (whose names
  Matroska upper-cases; `read_metadata` gives them back lower-case).
- .gif: a 256-colour palette per frame (Pillow's quantizer, dithered; PyAV's GIF encoder);
  frame delays are in 1/100 s, so FFmpeg alternates delays (40/50 ms for 24 fps) to average
  the frame rate; metadata as GIF comment extensions.
- .webp: libwebp_anim (lossy). libwebp merges identical consecutive frames into one longer
  frame (holds play for the right time, but the file counts fewer frames; all-identical frames
  make a still image). Metadata in an EXIF chunk, the way ComfyUI's SaveAnimatedWEBP
  stores it ("workflow:{...}" in tag 0x010F, "prompt:{...}" in 0x0110). FFmpeg 8.1 cannot
  decode animated WebP; Pillow can.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

from .files import chmod_like_new_file

VIDEO_FORMATS = (".mp4", ".webm", ".gif", ".webp")
DEFAULT_QUALITY = 80


class VideoError(ValueError):
    pass


def _crf(quality: float, top: int) -> int:
    """Map quality 0..100 (higher is better) onto a CRF scale 0..top (lower is better)."""
    return int(round(min(max((100 - quality) * top / 100 * 1.75, 1), top)))


class VideoWriter:
    """Write frames to `path`; the format follows its extension (.mp4, .webm, .gif, .webp).

    quality: 0..100, higher is better (MP4: CRF 1..51, default 80 -> CRF 18; WebM: CRF 0..63,
    default -> 22; WebP: libwebp quality; GIF: not used, always 256 colours per frame, dithered).
    loop: GIF/WebP repeat count, 0 = forever; n = n extra plays. MP4/WebM players decide.
    metadata: {key: text} embedded where the container allows (see the module docstring).
    threads: encoder threads, 0 = the encoder's choice (all cores); 1 when other threads already
    keep the cores busy (render_walk's decoders), where the encoder's own threads only contend.

        with VideoWriter("walk.mp4", fps=24) as w:
            for chunk in chunks:        # uint8 [N, H, W, 3] or [H, W, 3]
                w.write(chunk)
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 24,
        quality: float = DEFAULT_QUALITY,
        loop: int = 0,
        metadata: Mapping[str, str] | None = None,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_FORMATS:
            raise VideoError(f"{self.path}: unknown video format {self.path.suffix!r}; use one of {', '.join(VIDEO_FORMATS)}")
        if not fps or fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive, got {fps}")
        if not 0 <= quality <= 100:
            raise VideoError(f"{self.path}: quality must be 0..100, got {quality}")
        if loop < 0:
            raise VideoError(f"{self.path}: loop must be >= 0 (0 = forever), got {loop}")
        if threads < 0:
            raise VideoError(f"{self.path}: threads must be >= 0 (0 = the encoder's choice), got {threads}")
        self.threads = int(threads)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.quality = quality
        self.loop = int(loop)
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the input frames
        self._container = None
        self._stream = None
        self._pad: tuple[int, int] | None = None
        self._tmp: Path | None = None
        self._closed = False

    # -- context manager -----------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing -------------------------------------------------------------------------------
    def write(self, frames: np.ndarray | torch.Tensor) -> None:
        """Append uint8 RGB frames, [H, W, 3] or [N, H, W, 3]."""
        if self._closed:
            raise VideoError(f"{self.path}: writer is closed")
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoError(f"{self.path}: frames must be uint8 [H, W, 3] or [N, H, W, 3], got shape {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise VideoError(f"{self.path}: frames must be uint8 (0..255), got {frames.dtype}; convert with images.to_uint8")
        if self.size is None:
            self._open(frames.shape[2], frames.shape[1])
        elif (frames.shape[2], frames.shape[1]) != self.size:
            raise VideoError(f"{self.path}: frame size changed from {self.size[0]}x{self.size[1]} to {frames.shape[2]}x{frames.shape[1]}")
        import av

        for frame in frames:
            if self._pad:
                frame = np.pad(frame, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
            if self.suffix == ".gif":
                vf = _pal8_frame(np.ascontiguousarray(frame))
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self.frames
            vf.time_base = 1 / self.fps
            self.frames += 1
            self._encode(vf)

    def close(self) -> Path:
        """Flush the encoder, embed metadata and move the finished file into place."""
        if self._closed:
            return self.path
        if self._container is None:
            self._closed = True
            raise VideoError(f"{self.path}: no frames were written")
        try:
            self._encode(None)
            self._container.close()
            self._container = None
            if self.metadata and self.suffix == ".gif":
                _append_gif_comments(self._tmp, self.metadata)
            elif self.metadata and self.suffix == ".webp":
                _append_webp_exif(self._tmp, self.metadata, (self._stream.width, self._stream.height))
            chmod_like_new_file(self._tmp)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial file (the target path is left as it was)."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the encoder may be mid-error; the temp file goes anyway
                pass
            self._container = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------------------
    def _open(self, width: int, height: int) -> None:
        import av

        self.size = (width, height)
        even = self.suffix == ".mp4"
        self._pad = (width % 2, height % 2) if even and (width % 2 or height % 2) else None
        w, h = width + (self._pad[0] if self._pad else 0), height + (self._pad[1] if self._pad else 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        fmt, codec, pix_fmt, copts, fopts = {
            ".mp4": ("mp4", "libx264", "yuv420p", {"crf": str(_crf(self.quality, 51)), "preset": "veryfast"},
                     {"movflags": "+faststart+use_metadata_tags"}),
            ".webm": ("webm", "libvpx-vp9", "yuv420p",
                      {"crf": str(_crf(self.quality, 63)), "b": "0", "row-mt": "1", "deadline": "realtime", "cpu-used": "6"}, {}),
            ".gif": ("gif", "gif", "pal8", {}, {"loop": str(self.loop)}),
            # The WebP muxer counts plays in all (0 = forever); ours counts repeats like GIF.
            ".webp": ("webp", "libwebp_anim", "yuv420p", {"quality": str(int(self.quality)), "lossless": "0", "compression_level": "2"},
                      {"loop": str(self.loop + 1 if self.loop else 0)}),
        }[self.suffix]
        try:
            self._container = av.open(str(self._tmp), mode="w", format=fmt, options=fopts)
            stream = self._container.add_stream(codec, rate=self.fps, options=copts)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.time_base = 1 / self.fps
            stream.codec_context.thread_count = self.threads
            if self.suffix in (".mp4", ".webm"):
                for k, v in self.metadata.items():
                    self._container.metadata[k] = v
            self._stream = stream
        except BaseException:
            self.abort()
            raise

    def _encode(self, frame) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray | torch.Tensor],
    fps: float = 24,
    quality: float = DEFAULT_QUALITY,
    loop: int = 0,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write an iterable (e.g. a generator) of uint8 frames or frame batches; returns the path."""
    with VideoWriter(path, fps=fps, quality=quality, loop=loop, metadata=metadata) as writer:
        for chunk in frames:
            writer.write(chunk)
    return writer.path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata a VideoWriter embedded (container tags, GIF comments, WebP EXIF)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return _read_gif_comments(path)
    if suffix == ".webp":
        return _read_webp_exif(path)
    import av

    skip = ("encoder", "major_brand", "minor_version", "compatible_brands")
    with av.open(str(path)) as c:
        # Matroska stores tag names upper-case; we write lower-case keys, so read them back so.
        fold = str.lower if suffix == ".webm" else str
        return {fold(k): v for k, v in c.metadata.items() if k.lower() not in skip}


# -- GIF: a palette per frame, plus comment extensions ---------------------------------------------
def _pal8_frame(frame: np.ndarray):
    """An RGB frame as PyAV pal8: Pillow's fast octree picks 256 colours for this frame alone
    (so it streams) with Floyd-Steinberg dithering. FFmpeg's palettegen/paletteuse in per-frame
    mode does the same job ~30x slower (measured: 66 ms vs 2 ms per 64x48 frame)."""
    import av
    from PIL import Image

    q = Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
    rgb = np.asarray(q.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(rgb), 1:] = rgb
    return av.VideoFrame.from_ndarray((np.asarray(q), argb), format="pal8")


def _gif_comment(text: bytes) -> bytes:
    blocks = b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, len(text), 255))
    return b"\x21\xfe" + blocks + b"\x00"


def _append_gif_comments(path: Path, metadata: Mapping[str, str]) -> None:
    """Insert one comment extension per key ("key:value") before the GIF trailer."""
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\x3b":
            raise VideoError(f"{path}: GIF has no trailer; cannot embed metadata")
        f.seek(-1, os.SEEK_END)
        f.write(b"".join(_gif_comment(f"{k}:{v}".encode()) for k, v in metadata.items()) + b"\x3b")


def _read_gif_comments(path: Path) -> dict[str, str]:
    data = Path(path).read_bytes()
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise VideoError(f"{path}: not a GIF file")
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 * (2 << (data[10] & 7))

    def skip_blocks(p: int) -> tuple[int, bytes]:
        chunks = []
        while data[p]:
            chunks.append(data[p + 1:p + 1 + data[p]])
            p += 1 + data[p]
        return p + 1, b"".join(chunks)

    out: dict[str, str] = {}
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            label = data[pos + 1]
            pos, body = skip_blocks(pos + 2)
            if label == 0xFE:
                key, _, value = body.decode("utf-8", "replace").partition(":")
                out[key] = value
        elif data[pos] == 0x2C:  # image descriptor, optional local table, LZW data
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:
                pos += 3 * (2 << (flags & 7))
            pos, _ = skip_blocks(pos + 1)
        else:
            raise VideoError(f"{path}: malformed GIF block at byte {pos}")
    return out


# -- WebP: an EXIF chunk in ComfyUI's layout --------------------------------------------------------
_EXIF_FLAG = 0x08
# ComfyUI's SaveAnimatedWEBP: the prompt in Model (0x0110), other keys from Make (0x010F) down.
_PROMPT_TAG, _FIRST_TAG = 0x0110, 0x010F


def _append_webp_exif(path: Path, metadata: Mapping[str, str], size: tuple[int, int]) -> None:
    """Append an EXIF chunk (after the frames, where the WebP container puts it) and flag it.

    libwebp writes a still (simple VP8/VP8L file) when every frame is the same; that file gets
    the VP8X header an EXIF chunk needs.
    """
    from PIL import Image

    exif = Image.Exif()
    tag = _FIRST_TAG
    for k, v in metadata.items():
        if k == "prompt":
            exif[_PROMPT_TAG] = f"prompt:{v}"
        else:
            exif[tag] = f"{k}:{v}"
            tag -= 1
    payload = exif.tobytes()
    if payload.startswith(b"Exif\x00\x00"):  # WebP's EXIF chunk holds the bare TIFF structure
        payload = payload[6:]
    chunk = b"EXIF" + len(payload).to_bytes(4, "little") + payload + (b"\x00" if len(payload) % 2 else b"")
    with open(path, "r+b") as f:
        head = f.read(21)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            raise VideoError(f"{path}: not a WebP file; cannot embed metadata")
        if head[12:16] in (b"VP8 ", b"VP8L"):
            f.seek(12)
            body = f.read()
            w, h = size
            vp8x = b"VP8X" + (10).to_bytes(4, "little") + bytes([_EXIF_FLAG, 0, 0, 0])
            vp8x += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
            f.seek(12)
            f.write(vp8x + body)
        elif head[12:16] == b"VP8X":
            f.seek(20)
            f.write(bytes([head[20] | _EXIF_FLAG]))
        else:
            raise VideoError(f"{path}: unexpected WebP chunk {head[12:16]!r}; cannot embed metadata")
        f.seek(0, os.SEEK_END)
        f.write(chunk)
        riff_size = f.tell() - 8
        f.seek(4)
        f.write(riff_size.to_bytes(4, "little"))


def _read_webp_exif(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as im:
        exif = im.getexif()
        out = {}
        for tag in sorted(exif, reverse=True):
            key, sep, value = str(exif[tag]).partition(":")
            if sep:
                out[key] = value
        return out
