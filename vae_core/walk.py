"""Render latent walks: decode in batches and stream the frames into a video file.

Decoding runs in background threads, chunks in order, while the calling thread encodes (torch and
PyAV release the GIL in their kernels). On a CPU two decoder threads with half the intra-op
threads each decode at least as fast as one with all of them (small convolutions scale poorly over
threads; measured on 2 cores: as fast at 64 px, 15% faster at 128 px, 35% at 256 px), and two
independent decoders keep going while the encoder takes its share of a core, where one decoder's
threads would wait for each other at every layer. Rendering at 64 px went from 474 to about 570
frames/s (BENCHMARKS.md).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .conditions import Cond, ConditionError, common_rows
from .images import fit, to_uint8
from .video import DEFAULT_QUALITY, Audio, VideoWriter

T = TypeVar("T")


def _cond_rows(cond: Cond | None, start: int, stop: int, total: int) -> Cond | None:
    """Frames start..stop of a condition given for every frame, or for all of them (one row)."""
    if cond is None:
        return None
    rows = common_rows(cond)
    if rows not in (1, total):
        raise ConditionError(f"the condition has {rows} rows; a walk of {total} frames needs 1 or {total}")
    return {k: w if w.shape[0] == 1 else w[start:stop] for k, w in cond.items()}


def _check_latents(latents: torch.Tensor, cond: Cond | None, chunk: int) -> None:
    if latents.dim() != 2:
        raise ValueError(f"latents must be [F, D], got shape {list(latents.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    _cond_rows(cond, 0, latents.shape[0], latents.shape[0])  # fail before decoding anything


def decode_workers(device: torch.device | str) -> tuple[int, int | None]:
    """(worker threads, intra-op threads per worker) for decoding on `device`.

    Two workers on a CPU with at least two intra-op threads (see the module docstring); one
    elsewhere (a GPU queues kernels asynchronously, so one thread already keeps it busy).
    """
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu" and threads >= 2:
        return 2, threads // 2
    return 1, None


def decode_chunks(model, latents: torch.Tensor, cond: Cond | None = None, chunk: int = 32) -> Iterator[torch.Tensor]:
    """Decoded images [n, 3, H, W] (on the model's device), in order, at most `chunk` latents at a time.

    `cond` has batch 1 (the same condition for every frame) or one row per latent (a sweep).
    """
    return _decoded(model, latents, cond, chunk, lambda images: images)


def _decoded(model, latents: torch.Tensor, cond: Cond | None, chunk: int,
             finish: Callable[[torch.Tensor], T]) -> Iterator[T]:
    """finish(decoded chunk) for each chunk, in order, computed by `decode_workers` threads."""
    _check_latents(latents, cond, chunk)
    total = latents.shape[0]
    workers, threads = decode_workers(model.device)
    if workers > 1:
        # At least 4 chunks per worker, so the last chunks (which leave a worker idle) are a
        # small part of a short walk: 96 frames at 256 px in chunks of 32 rendered at 0.81x
        # decode-only, in chunks of 12 at 1.2x.
        chunk = min(chunk, -(-total // (4 * workers)))

    def task(start: int) -> Callable[[], T]:
        @torch.inference_mode()
        def run() -> T:
            stop = min(start + chunk, total)
            z = latents[start:stop].to(model.device, torch.float32)
            return finish(model.decode(z, _cond_rows(cond, start, stop, total)))
        return run

    return ordered_map([task(start) for start in range(0, total, chunk)], workers, threads)


def ordered_map(tasks: Sequence[Callable[[], T]], workers: int = 1, threads: int | None = None,
                depth: int = 2) -> Iterator[T]:
    """Run `tasks` in `workers` background threads and yield their results in order.

    Worker w runs tasks w, w + workers, ...; each runs at most `depth` results ahead of the
    consumer, so memory is bounded. threads: torch intra-op threads inside each worker (None
    leaves them). An error in a task is raised in the consumer at that task's place; when the
    consumer stops early (an error, a cancel), the workers stop at their next task.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    queues: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(workers)]
    stop = threading.Event()
    # torch.set_num_threads is per thread for the thread pool but also sets the process default
    # that threads starting torch later inherit; put that default back when a worker ends.
    default_threads = torch.get_num_threads()

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(w: int) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for i in range(w, len(tasks), workers):
                try:
                    result = (tasks[i](), None)
                except BaseException as err:  # re-raised in the consumer's thread
                    put(queues[w], (None, err))
                    return
                if not put(queues[w], result):
                    return
        finally:
            if threads is not None:
                torch.set_num_threads(default_threads)

    pool = [threading.Thread(target=work, args=(w,), name=f"cvae-decode-{w}", daemon=True) for w in range(workers)]
    for t in pool:
        t.start()
    try:
        for i in range(len(tasks)):
            result, err = queues[i % workers].get()
            if err is not None:
                raise err
            yield result
    finally:
        stop.set()
        for t, q in zip(pool, queues):
            while t.is_alive():  # unblock a worker waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                t.join(timeout=0.05)


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
    audio: Audio | None = None,
    codec: str | None = None,
) -> Path:
    """Decode latents [F, D] and write them as a video (format from the extension; `codec` picks
    among the extension's, video.FORMATS).

    size: output pixel size (square); the model's resolution when None, resampled otherwise.
    chunk: frames decoded at once (at most; short walks use smaller chunks to keep every decoder busy).
    callback(done, total) runs after each chunk; raising from it cancels the render and leaves
    no file behind. audio: a sound track (MP4 / WebM), cut or padded to the video's length.
    """
    total = latents.shape[0]
    if total < 1:
        raise ValueError("a walk needs at least one frame")
    if size is not None and size < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")

    def frames(images: torch.Tensor) -> np.ndarray:
        if size is not None and size != images.shape[-1]:
            images = fit(images, size)
        return to_uint8(images)

    # With the CPU decoders on every core, one encoder thread is faster than x264's frame threads
    # fighting them (measured: 3% more frames/s at 64 px, 7% for 256 px video).
    encoder_threads = 1 if decode_workers(model.device)[0] > 1 else 0
    done = 0
    with VideoWriter(path, fps=fps, quality=quality, loop=loop, metadata=metadata, threads=encoder_threads,
                     audio=audio, codec=codec) as writer:
        for batch in _decoded(model, latents, cond, chunk, frames):
            writer.write(batch)
            done += len(batch)
            if callback is not None:
                callback(done, total)
    return writer.path
