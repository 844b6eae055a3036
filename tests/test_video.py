"""Video files written for real and decoded back (PyAV; Pillow for animated WebP, which FFmpeg
8.1 cannot decode)."""
from __future__ import annotations

import json
import threading
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cvae_art.vae_core.model import CVAE, ModelConfig
from cvae_art.vae_core.video import VideoError, VideoWriter, read_metadata, write_video
from cvae_art.vae_core.walk import decode_chunks, decode_workers, ordered_map, render_walk


def moving_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames that differ from each other (a bar sliding over a gradient) and compress sanely."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1).astype(np.uint8)
    out = np.repeat(base[None], n, 0)
    for i in range(n):
        c = (i * 3) % (w - 8)
        out[i, :, c:c + 8] = (250, 250, 30)
    return out


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames as RGB arrays, and the frame rate from the timestamps."""
    if path.suffix == ".webp":
        frames, durations = [], []
        with Image.open(path) as im:
            for i in range(im.n_frames):
                im.seek(i)
                im.load()
                durations.append(im.info["duration"])
                frames.append(np.array(im.convert("RGB")))
        return frames, 1000 * len(durations) / sum(durations)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(f.time)
    duration = (times[-1] - times[0]) * len(times) / (len(times) - 1)
    return frames, len(times) / duration


@pytest.mark.parametrize("ext", ["mp4", "webm", "gif", "webp"])
def test_written_video_decodes_back(tmp_path, ext):
    frames = moving_frames(30)
    meta = {"workflow": json.dumps({"nodes": [{"id": 1, "type": "CVAERenderWalk"}], "note": "é" * 400})}
    path = write_video(tmp_path / f"clip.{ext}", (frames[i:i + 7] for i in range(0, 30, 7)), fps=12, metadata=meta)
    assert path == tmp_path / f"clip.{ext}"
    decoded, fps = decode(path)
    assert len(decoded) == 30
    assert decoded[0].shape == (48, 64, 3)
    assert fps == pytest.approx(12, rel=0.02)
    err = np.abs(decoded[0].astype(int) - frames[0]).mean()
    assert err < 6, err  # lossy codecs: close, not equal
    # the last frame is the last input, not a duplicate of an earlier one
    assert np.abs(decoded[-1].astype(int) - frames[-1]).mean() < np.abs(decoded[-1].astype(int) - frames[0]).mean()
    assert read_metadata(path) == meta
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_mp4_is_h264_yuv420p_and_pads_odd_sizes(tmp_path):
    frames = moving_frames(10, h=31, w=45)
    path = write_video(tmp_path / "odd.mp4", frames, fps=24)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert s.average_rate == Fraction(24)
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == 10
    assert decoded[0].shape == (32, 46, 3)  # one edge pixel added on each odd side
    assert np.abs(decoded[0][:31, :45].astype(int) - frames[0]).mean() < 6
    # the padding repeats the edge, it is not a black bar
    assert np.abs(decoded[3][31].astype(int) - decoded[3][30].astype(int)).mean() < 8


def test_webm_is_vp9_and_gif_loops(tmp_path):
    webm = write_video(tmp_path / "a.webm", moving_frames(5), fps=30)
    with av.open(str(webm)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
    gif = write_video(tmp_path / "a.gif", moving_frames(5), loop=0)
    webp = write_video(tmp_path / "a.webp", moving_frames(5), loop=3)
    with Image.open(gif) as g, Image.open(webp) as w:
        assert g.info["loop"] == 0  # forever
        assert w.info["loop"] == 4  # WebP counts plays, ours counts repeats


def test_quality_changes_the_file(tmp_path):
    frames = moving_frames(20)
    hi = write_video(tmp_path / "hi.mp4", frames, quality=95)
    lo = write_video(tmp_path / "lo.mp4", frames, quality=40)
    assert hi.stat().st_size > lo.stat().st_size
    (dh, _), (dl, _) = decode(hi), decode(lo)
    assert np.abs(dh[5].astype(int) - frames[5]).mean() < np.abs(dl[5].astype(int) - frames[5]).mean()


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(VideoError, match=r"clip\.avi.*unknown video format '\.avi'.*\.mp4"):
        VideoWriter(tmp_path / "clip.avi")
    w = VideoWriter(tmp_path / "a.mp4")
    with pytest.raises(VideoError, match="uint8"):
        w.write(np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(VideoError, match=r"\[N, H, W, 3 or 4\]"):
        w.write(np.zeros((4, 8, 8), np.uint8))
    w.abort()
    with pytest.raises(VideoError, match="threads must be >= 0"):
        VideoWriter(tmp_path / "c.mp4", threads=-1)
    with pytest.raises(VideoError, match="no frames"):
        with VideoWriter(tmp_path / "empty.gif"):
            pass
    with pytest.raises(VideoError, match="size changed"):
        with VideoWriter(tmp_path / "b.webm") as w:
            w.write(np.zeros((8, 8, 3), np.uint8))
            w.write(np.zeros((8, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []  # failed writes leave nothing, not even temp files


def test_an_error_mid_write_leaves_the_old_file_alone(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous render")
    with pytest.raises(RuntimeError, match="cancelled"):
        with VideoWriter(target) as w:
            w.write(moving_frames(5))
            raise RuntimeError("cancelled")
    assert target.read_bytes() == b"previous render"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_writing_streams_without_holding_frames(tmp_path, ext):
    """Python-side memory while writing 400 frames from a generator stays a few frames' worth."""
    two = moving_frames(2)

    def gen():
        for i in range(400):
            yield two[i % 2].copy()  # a new array each time, as a decoder would give

    tracemalloc.start()
    try:
        path = write_video(tmp_path / f"long.{ext}", gen(), fps=24)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = 48 * 64 * 3
    assert peak < 40 * frame_bytes, peak  # 400 frames would be 3.7 MB
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 400


@pytest.fixture(scope="module")
def model64():
    torch.manual_seed(0)
    return CVAE(ModelConfig(resolution=32, latent_dim=8, base_channels=8, max_channels=16,
                            conditions={"style": ["a", "b"]})).eval()


def test_render_walk_writes_what_decode_chunks_gives(tmp_path, model64):
    z = torch.randn(37, 8, generator=torch.Generator().manual_seed(1)) * 3
    cond = model64.condition("style=a:0.5,b:0.5")
    expected = torch.cat(list(decode_chunks(model64, z, cond, chunk=10)))
    assert expected.shape == (37, 3, 32, 32)
    calls = []
    path = render_walk(model64, z, cond, tmp_path / "walk.gif", fps=10, chunk=10,
                       callback=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 37), (20, 37), (30, 37), (37, 37)]
    decoded, _ = decode(path)
    assert len(decoded) == 37
    ref = (expected.permute(0, 2, 3, 1).numpy() * 255).round()
    assert np.abs(decoded[20].astype(float) - ref[20]).mean() < 6
    # per-frame conditions (a sweep) are sliced per chunk, not broadcast
    sweep = {"style": torch.linspace(0, 1, 37)[:, None] * torch.tensor([[1.0, -1, 0]]) + torch.tensor([[0.0, 1, 0]])}
    chunks = torch.cat(list(decode_chunks(model64, z, sweep, chunk=8)))
    whole = model64.decode(z, sweep)
    assert torch.allclose(chunks, whole, atol=1e-5)


def test_render_walk_upscales_and_cancels_cleanly(tmp_path, model64):
    z = torch.randn(12, 8)
    path = render_walk(model64, z, None, tmp_path / "big.mp4", size=80, chunk=5)
    decoded, _ = decode(path)
    assert len(decoded) == 12 and decoded[0].shape == (80, 80, 3)

    def cancel(done, total):
        if done >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_walk(model64, z, None, tmp_path / "cancelled.webm", chunk=5, callback=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.mp4"]


@pytest.fixture
def two_torch_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def torch_threads_of_a_new_thread() -> int:
    """The intra-op threads a thread gets when it first runs torch (the process default)."""
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_ordered_map_yields_in_order_from_several_workers(two_torch_threads):
    # Later tasks finish first (shorter sleeps), so arrival order differs from task order.
    def task(i):
        def run():
            time.sleep(0.002 * (12 - i))
            return i, torch.get_num_threads(), threading.current_thread().name
        return run

    results = list(ordered_map([task(i) for i in range(12)], workers=3, threads=1))
    assert [r[0] for r in results] == list(range(12))
    assert {r[1] for r in results} == {1}  # each worker ran torch single-threaded
    assert len({r[2] for r in results}) == 3 and threading.current_thread().name not in {r[2] for r in results}
    assert torch.get_num_threads() == 2 and torch_threads_of_a_new_thread() == 2  # defaults put back


def test_ordered_map_raises_a_task_error_in_place_and_stops_early():
    ran = []

    def task(i):
        def run():
            ran.append(i)
            if i == 3:
                raise ValueError("task 3 failed")
            return i
        return run

    got = []
    with pytest.raises(ValueError, match="task 3 failed"):
        for x in ordered_map([task(i) for i in range(100)], workers=2, depth=2):
            got.append(x)
    assert got == [0, 1, 2]
    # Bounded look-ahead: the workers stopped instead of running all 100 tasks.
    assert len(ran) <= 3 + 2 * (2 + 1) + 1, ran
    assert not [t for t in threading.enumerate() if t.name.startswith("cvae-decode")]

    gen = ordered_map([task(i) for i in range(50, 100)], workers=2)
    assert next(gen) == 50
    gen.close()  # a consumer that stops (a cancelled render) releases the workers
    assert not [t for t in threading.enumerate() if t.name.startswith("cvae-decode")]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(ordered_map([], workers=0))


def test_render_walk_with_parallel_decoders_keeps_frame_order(tmp_path, tiny_model, two_torch_threads):
    assert decode_workers("cpu") == (2, 1)
    z = tiny_model.prior_sample(23, seed=2) * 1.5  # unrelated frames, not a smooth walk
    expected = torch.cat(list(decode_chunks(tiny_model, z, None, chunk=4))).permute(0, 2, 3, 1).numpy() * 255
    path = render_walk(tiny_model, z, None, tmp_path / "walk.mp4", quality=100, chunk=4)
    decoded = np.stack(decode(path)[0]).astype(float)
    assert len(decoded) == 23
    err = np.abs(decoded[:, None] - expected[None]).mean(axis=(2, 3, 4))  # [decoded, expected]
    apart = np.abs(expected[:, None] - expected[None]).mean(axis=(2, 3, 4)) + np.eye(23) * 255
    assert err.diagonal().max() < min(4, apart.min())  # frames differ more than the codec's error
    assert (err.argmin(axis=1) == np.arange(23)).all()  # each frame is its own, not a neighbour's
    assert torch.get_num_threads() == 2 and torch_threads_of_a_new_thread() == 2


def test_render_walk_refuses_a_condition_with_neither_one_row_nor_one_per_frame(tmp_path, model64):
    from cvae_art.vae_core.conditions import ConditionError

    cond = model64.condition(None, 3)
    with pytest.raises(ConditionError, match="the condition has 3 rows; a walk of 5 frames needs 1 or 5"):
        render_walk(model64, torch.zeros(5, model64.config.latent_dim), cond, tmp_path / "walk.gif")
    assert not (tmp_path / "walk.gif").exists()



# -- audio tracks ------------------------------------------------------------------------------------
def tone(seconds: float, rate: int = 44100, channels: int = 2, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None], channels, 0)


def decoded_audio(path: Path) -> tuple[str, int, np.ndarray, float]:
    """(codec, rate, samples [channels, n], where the last sample ends in seconds) of the first audio stream."""
    with av.open(str(path)) as c:
        (stream,) = c.streams.audio
        frames = list(c.decode(stream))
        samples = np.concatenate([f.to_ndarray().reshape(stream.codec_context.channels, -1) for f in frames], axis=1)
        rate = stream.codec_context.sample_rate
        end = float(frames[-1].pts * frames[-1].time_base) + frames[-1].samples / rate
        return stream.codec_context.name, rate, samples, end


@pytest.mark.parametrize("ext, codec", [(".mp4", "aac"), (".webm", "opus")])
def test_audio_track_is_cut_or_padded_to_the_video(tmp_path, ext, codec):
    from cvae_art.vae_core.video import Audio

    frames = moving_frames(48)  # 2 s at 24 fps
    long = write_video(tmp_path / f"long{ext}", iter([frames[:30], frames[30:]]), fps=24, audio=Audio(tone(3.5), 44100))
    short = write_video(tmp_path / f"short{ext}", iter([frames]), fps=24, audio=Audio(tone(1.0, channels=1), 44100))
    assert len(decode(long)[0]) == 48
    name, rate, samples, seconds = decoded_audio(long)
    assert name == codec and samples.shape[0] == 2
    assert abs(seconds - 2.0) < 0.05 and abs(samples.shape[1] / rate - 2.0) < 2100 / rate  # an AAC frame + priming
    assert 0.3 < np.sqrt((samples[:, rate // 4 : rate] ** 2).mean()) < 0.4  # the tone (RMS 0.354), not silence
    name, rate, samples, _ = decoded_audio(short)
    assert samples.shape[0] == 1 and abs(samples.shape[1] / rate - 2.0) < 2100 / rate
    assert np.sqrt((samples[:, int(1.2 * rate):] ** 2).mean()) < 0.01  # padded with silence after 1 s


def test_audio_is_refused_where_it_cannot_go_and_read_from_files(tmp_path):
    from cvae_art.vae_core.video import Audio, load_audio

    with pytest.raises(VideoError, match="hold no sound"):
        VideoWriter(tmp_path / "a.gif", audio=Audio(tone(1), 44100))
    with pytest.raises(VideoError, match="1 or 2 channels"):
        Audio(np.zeros((3, 10), np.float32), 44100)
    with pytest.raises(VideoError, match="NaN"):
        Audio(np.full((1, 10), np.nan, np.float32), 44100)
    comfy = {"waveform": torch.from_numpy(np.concatenate([tone(1), tone(1)]))[None], "sample_rate": 44100}
    assert Audio.from_comfy(comfy).waveform.shape == (2, 44100)  # 4 channels mixed down to stereo
    silent = write_video(tmp_path / "silent.mp4", iter([moving_frames(4)]), fps=24)
    with pytest.raises(VideoError, match="no audio stream"):
        load_audio(silent)
    (tmp_path / "junk.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(VideoError, match="junk.wav"):
        load_audio(tmp_path / "junk.wav")
    with_sound = write_video(tmp_path / "s.webm", iter([moving_frames(24)]), fps=24, audio=Audio(tone(1), 44100))
    back = load_audio(with_sound)
    assert back.sample_rate == 48000 and back.waveform.shape[0] == 2 and abs(back.seconds - 1.0) < 0.05


# -- more formats, and transparency -----------------------------------------------------------------
def half_clear(n: int = 6) -> np.ndarray:
    """RGBA frames whose left half is fully transparent."""
    f = np.concatenate([moving_frames(n), np.full((n, 48, 64, 1), 255, np.uint8)], axis=3)
    f[:, :, :32, 3] = 0
    return f


def test_available_formats_are_the_encoders_this_pyav_has():
    from cvae_art.vae_core.video import FORMATS, available_formats

    names = available_formats()
    assert names[0] == "mp4" and set(names) <= set(FORMATS)
    for name, f in FORMATS.items():
        try:
            av.codec.Codec(f.codec, "w")
            assert name in names
        except Exception:
            assert name not in names


def test_prores_4444_and_h265_decode_back_and_keep_or_flatten_alpha(tmp_path):
    from cvae_art.vae_core.video import available_formats

    if not {"mov-prores", "mp4-h265"} <= set(available_formats()):
        pytest.skip("this PyAV build lacks prores_ks or libx265")
    mov = write_video(tmp_path / "a.mov", iter([half_clear()]), fps=24, codec="mov-prores", metadata={"k": "v"})
    with av.open(str(mov)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        assert s.codec_context.name == "prores" and len(frames) == 6 and frames[0].format.name.startswith("yuva444p")
        alpha = frames[0].to_ndarray(format="rgba")[..., 3]
        assert alpha[:, :32].max() <= 2 and alpha[:, 32:].min() >= 253
    assert read_metadata(mov)["k"] == "v"
    hevc = write_video(tmp_path / "a.mp4", iter([half_clear()]), fps=24, codec="mp4-h265")
    with av.open(str(hevc)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "hevc" and s.codec_tag == "hvc1"
        first = next(c.decode(s)).to_ndarray(format="rgb24")
    assert first[:, :28].mean() > 245  # no alpha in H.265 / yuv420p: the clear half is drawn on white
    for name, ext in (("mov-prores", "mov"), ("mp4-h265", "mp4")):  # --quality reaches both encoders
        sizes = [write_video(tmp_path / f"q{q}.{ext}", iter([moving_frames(6)]), fps=24, quality=q, codec=name).stat().st_size
                 for q in (20, 95)]
        assert sizes[1] > 1.2 * sizes[0], (name, sizes)
    with pytest.raises(VideoError, match="writes .mov files"):
        VideoWriter(tmp_path / "b.mp4", codec="mov-prores")
    with pytest.raises(VideoError, match="unknown video codec"):
        VideoWriter(tmp_path / "b.mp4", codec="h266")


def test_webm_and_gif_keep_transparency(tmp_path):
    webm = write_video(tmp_path / "a.webm", iter([half_clear()]), fps=24)
    with av.open(str(webm)) as c:
        s = c.streams.video[0]
        assert s.metadata.get("alpha_mode") == "1"
        dec = av.CodecContext.create("libvpx-vp9", "r")  # FFmpeg's own VP9 decoder skips the alpha plane
        frame = next(f for p in c.demux(s) for f in dec.decode(p))
        alpha = frame.to_ndarray(format="rgba")[..., 3]
        assert alpha[:, :30].max() < 16 and alpha[:, 34:].min() > 240
    gif = write_video(tmp_path / "a.gif", iter([half_clear()]), fps=24)
    with Image.open(gif) as im:
        im.seek(2)
        rgba = np.asarray(im.convert("RGBA"))
    assert (rgba[:, :32, 3] == 0).all() and (rgba[:, 32:, 3] == 255).all()
    opaque = write_video(tmp_path / "b.webm", iter([moving_frames(4)]), fps=24)  # RGB in: no alpha plane
    with av.open(str(opaque)) as c:
        assert "alpha_mode" not in c.streams.video[0].metadata
