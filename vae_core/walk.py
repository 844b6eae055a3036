"""Render latent walks: decode in batches and stream the frames into a video file.

Decoding runs one chunk ahead in a background thread (torch releases the GIL in its kernels), so
the encoder works on chunk i while the model decodes chunk i + 1 and a render costs little more
than decoding its frames.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .conditions import Cond, ConditionError
from .images import fit, to_uint8
from .video import DEFAULT_QUALITY, VideoWriter

T = TypeVar("T")


def _cond_rows(cond: Cond | None, start: int, stop: int, total: int) -> Cond | None:
    if cond is None:
        return None
    out: Cond = {}
    for k, w in cond.items():
        if w.shape[0] == 1:
            out[k] = w
        elif w.shape[0] == total:
            out[k] = w[start:stop]
        else:
            raise ConditionError(f"condition {k!r} has batch {w.shape[0]}; a walk of {total} frames needs 1 or {total}")
    return out


@torch.inference_mode()
def decode_chunks(model, latents: torch.Tensor, cond: Cond | None = None, chunk: int = 32) -> Iterator[torch.Tensor]:
    """Decoded images [n, 3, H, W] (on the model's device), `chunk` latents at a time.

    `cond` has batch 1 (the same condition for every frame) or one row per latent (a sweep).
    """
    if latents.dim() != 2:
        raise ValueError(f"latents must be [F, D], got shape {list(latents.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    total = latents.shape[0]
    _cond_rows(cond, 0, total, total)  # fail before decoding anything
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        z = latents[start:stop].to(model.device, torch.float32)
        yield model.decode(z, _cond_rows(cond, start, stop, total))


def _ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `depth` items ahead of the consumer.

    When the consumer stops early (an error, a cancel), the producer stops at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as err:  # re-raised in the consumer's thread
            q.put((done, err))

    worker = threading.Thread(target=produce, name="cvae-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def render_walk(
    model,
    latents: torch.Tensor,
    cond: Cond | None,
    path: str | Path,
    fps: float = 24,
    quality: float = DEFAULT_QUALITY,
    chunk: int = 32,
    size: int | None = None,
    metadata: dict[str, str] | None = None,
    callback: Callable[[int, int], None] | None = None,
    loop: int = 0,
) -> Path:
    """Decode latents [F, D] and write them as a video (format from the extension).

    size: output pixel size (square); the model's resolution when None, resampled otherwise.
    callback(done, total) runs after each chunk; raising from it cancels the render and leaves
    no file behind.
    """
    total = latents.shape[0]
    if total < 1:
        raise ValueError("a walk needs at least one frame")
    if size is not None and size < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")

    def frames() -> Iterator[np.ndarray]:
        for images in decode_chunks(model, latents, cond, chunk):
            if size is not None and size != images.shape[-1]:
                images = fit(images, size)
            yield to_uint8(images)

    done = 0
    with VideoWriter(path, fps=fps, quality=quality, loop=loop, metadata=metadata) as writer:
        for batch in _ahead(frames()):
            writer.write(batch)
            done += len(batch)
            if callback is not None:
                callback(done, total)
    return writer.path
