"""Easing curves and multi-keyframe schedules, shared by latent walks and condition sweeps.

A schedule says, for each output frame, which keyframe pair it sits between and how far:
frame i shows interp(key[seg[i]], key[(seg[i] + 1) % K], t[i]). Latents (lerp / slerp) and
conditions (linear blends of label weights) follow the same schedule, so a style morph stays in
step with the latent walk it accompanies.

Frame layout. The path visits "stops" (keyframes): 0, 1, ..., K-1 for an open path; with `loop`
it flows from K-1 back into 0; with `pingpong` it goes 0 .. K-1 .. 0 (with `loop`: 0 .. K-1 .. 1,
so the loop seam has no duplicate). Each stop is on screen for 1 + `hold` frames; between stops,
a segment of n frames starts on its stop and stops one step short of the next one. Without
`segment_frames`, the in-between frames are spread as evenly as `frames` allows, and the total
is always exactly `frames`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


from .conditions import Cond
from .latent import lerp, slerp
from .limits import check


def _linear(t: torch.Tensor) -> torch.Tensor:
    return t


def _ease_in(t: torch.Tensor) -> torch.Tensor:
    return t * t * t


def _ease_out(t: torch.Tensor) -> torch.Tensor:
    return 1 - (1 - t) ** 3


def _ease_in_out(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < 0.5, 4 * t * t * t, 1 - (2 - 2 * t) ** 3 / 2)


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    return t * t * (3 - 2 * t)


def _sine(t: torch.Tensor) -> torch.Tensor:
    return torch.sin(t * (math.pi / 2)) ** 2  # = (1 - cos(pi t)) / 2, but exactly 1 at t = 1


# Each maps [0, 1] onto [0, 1], monotone, with f(0) = 0 and f(1) = 1.
EASINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": _linear,
    "ease-in": _ease_in,
    "ease-out": _ease_out,
    "ease-in-out": _ease_in_out,
    "smoothstep": _smoothstep,
    "sine": _sine,
}


def ease(t: float | torch.Tensor, name: str = "linear") -> torch.Tensor:
    """Apply the easing `name` to t (clamped to 0..1)."""
    if name not in EASINGS:
        raise ValueError(f"unknown easing {name!r}; choose one of {', '.join(EASINGS)}")
    t = t if isinstance(t, torch.Tensor) else torch.tensor(float(t))
    if not t.is_floating_point():
        t = t.float()
    return EASINGS[name](t.clamp(0.0, 1.0))


def _stops(n_keys: int, loop: bool, pingpong: bool) -> tuple[list[tuple[int, bool]], bool]:
    """The segments of the expanded path as (original segment, forward?) and whether it is closed.

    Original segment j joins key j to key (j + 1) % K; a backward segment runs it from t = 1 to 0.
    """
    if pingpong:
        fwd = [(j, True) for j in range(n_keys - 1)]
        return fwd + [(j, False) for j in reversed(range(n_keys - 1))], loop
    if loop:
        return [(j, True) for j in range(n_keys)], True
    return [(j, True) for j in range(n_keys - 1)], False


def _spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal integers, the larger ones spread out (Bresenham),
    the first segment never short (so even very short paths start on the first keyframe)."""
    return [-(-(i + 1) * total // parts) + (-i * total // parts) for i in range(parts)]


def schedule(
    n_keys: int,
    frames: int | None,
    easing: str = "linear",
    loop: bool = False,
    pingpong: bool = False,
    hold: int = 0,
    segment_frames: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(seg LongTensor[frames], t FloatTensor[frames]) for a path through `n_keys` keyframes.

    hold: each keyframe stays on screen for 1 + hold frames.
    segment_frames: frames per keyframe segment (K - 1 of them; K with `loop` and no `pingpong`,
    whose last segment flows from the last keyframe back into the first); a ping-pong plays the
    same counts backwards. The total they give must equal `frames` (or pass frames=None).
    """
    if n_keys < 1:
        raise ValueError("a schedule needs at least one keyframe")
    if hold < 0:
        raise ValueError(f"hold must be >= 0, got {hold}")
    if easing not in EASINGS:
        raise ValueError(f"unknown easing {easing!r}; choose one of {', '.join(EASINGS)}")
    segments, closed = _stops(n_keys, loop, pingpong)
    n_stops = len(segments) + (0 if closed else 1)
    fixed = n_stops * hold + (0 if closed else 1)  # hold frames, plus the arrival on an open path's end

    if segment_frames is not None:
        counts = [int(n) for n in segment_frames]
        expected = n_keys if (loop and not pingpong) else n_keys - 1
        if len(counts) != expected or any(n < 0 for n in counts):
            raise ValueError(
                f"segment_frames needs {expected} non-negative count(s) for {n_keys} keyframes"
                f"{' with loop' if loop and not pingpong else ''}, got {list(segment_frames)}"
            )
        if pingpong:
            counts = counts + counts[::-1]
        total = sum(counts) + fixed if n_keys > 1 else 1 + hold
        if frames is None:
            frames = total
        elif frames != total:
            raise ValueError(
                f"segment_frames {list(segment_frames)} with hold={hold}"
                f"{', loop' if loop else ''}{', pingpong' if pingpong else ''} make {total} frames, "
                f"but frames={frames}; pass frames={total} or change the counts"
            )
    if frames is None:
        raise ValueError("frames must be at least 1, got None")
    check("frames", frames)  # also the total that segments and holds add up to
    if n_keys == 1 or (frames == 1 and hold == 0):  # a still, or one frame: the first keyframe
        return torch.zeros(frames, dtype=torch.long), torch.zeros(frames)

    if segment_frames is None:
        moving = frames - fixed
        if moving < 0:
            raise ValueError(
                f"frames={frames} is too few for {n_keys} keyframes with hold={hold}: "
                f"the holds alone take {fixed} frames"
            )
        if pingpong:  # the way back mirrors the way out, so a ping-pong is a palindrome
            half = _spread(moving // 2, n_keys - 1)
            out, back = list(half), half[::-1]
            out[0] += moving % 2  # an odd frame goes out, so the path starts on keyframe 0
            counts = out + back
        else:
            counts = _spread(moving, len(segments))
        if hold == 0 and 0 in counts:  # a segment of no frames would skip its keyframe unseen
            need = len(counts) + (0 if closed else 1)
            raise ValueError(f"frames={frames} is too few to show all {n_keys} keyframes: this walk needs at least "
                             f"{need} frames (or fewer keyframes, or frames=1 for a still of the first)")

    seg: list[int] = []
    t: list[float] = []
    n_orig = n_keys if (loop and not pingpong) else n_keys - 1  # segments of the keyframes themselves

    def stop(key: int) -> tuple[int, float]:
        return (key, 0.0) if key < n_orig else (key - 1, 1.0)

    eased: dict[int, torch.Tensor] = {}
    for (j, forward), n in zip(segments, counts):
        start = j if forward else (j + 1) % n_keys
        s, ts = stop(start)
        seg += [s] * hold
        t += [ts] * hold
        if n:
            if n not in eased:
                eased[n] = ease(torch.arange(n, dtype=torch.float64) / n, easing)
            u = eased[n] if forward else ease(1 - torch.arange(n, dtype=torch.float64) / n, easing)
            seg += [j] * n
            t += u.tolist()
    if not closed:
        end = segments[-1][0] + 1 if segments[-1][1] else segments[-1][0]
        s, ts = stop(end)
        seg += [s] * (1 + hold)
        t += [ts] * (1 + hold)
    assert len(seg) == frames, (len(seg), frames)
    return torch.tensor(seg, dtype=torch.long), torch.tensor(t, dtype=torch.float32)


def keyframe_pairs(seg: torch.Tensor, n_keys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the keyframes each frame sits between."""
    return seg, (seg + 1) % n_keys


def keyframe_path(
    keyframes: torch.Tensor,
    frames: int | None,
    method: str = "slerp",
    easing: str = "linear",
    loop: bool = False,
    pingpong: bool = False,
    hold: int = 0,
    segment_frames: Sequence[int] | None = None,
) -> torch.Tensor:
    """Latents [frames, D] along keyframes [K, D]; every keyframe is hit exactly."""
    if keyframes.dim() != 2:
        raise ValueError(f"keyframes must be [K, D], got shape {list(keyframes.shape)}")
    if method not in ("slerp", "lerp"):
        raise ValueError(f"method must be 'slerp' or 'lerp', got {method!r}")
    seg, t = schedule(keyframes.shape[0], frames, easing, loop, pingpong, hold, segment_frames)
    i, j = keyframe_pairs(seg.to(keyframes.device), keyframes.shape[0])
    interp = slerp if method == "slerp" else lerp
    return interp(keyframes[i], keyframes[j], t.to(keyframes.device))


def condition_path(
    conds: Sequence[Cond],
    frames: int | None,
    easing: str = "linear",
    loop: bool = False,
    pingpong: bool = False,
    hold: int = 0,
    segment_frames: Sequence[int] | None = None,
) -> Cond:
    """A condition with one row per frame, blending label weights linearly between keyframes.

    Each keyframe condition has batch 1 (e.g. from `model.condition("style=noto")`).
    """
    if not conds:
        raise ValueError("condition_path needs at least one condition")
    factors = list(conds[0])
    for k, c in enumerate(conds):
        if list(c) != factors:
            raise ValueError(f"condition {k} has factors {list(c)}, expected {factors}")
        for f, w in c.items():
            if w.shape[0] != 1:
                raise ValueError(f"condition {k}, factor {f!r}: expected batch 1, got {w.shape[0]}")
    seg, t = schedule(len(conds), frames, easing, loop, pingpong, hold, segment_frames)
    i, j = keyframe_pairs(seg, len(conds))
    out: Cond = {}
    for f in factors:
        keys = torch.cat([c[f] for c in conds])  # [K, n_labels + 1]
        w = lerp(keys[i.to(keys.device)], keys[j.to(keys.device)], t.to(keys.device))
        out[f] = w.to(keys.dtype)
    return out


def sweep_condition(
    start: Cond,
    end: Cond,
    frames: int,
    n_keys: int,
    easing: str = "linear",
    loop: bool = False,
    pingpong: bool = False,
    hold: int = 0,
    segment_frames: Sequence[int] | None = None,
) -> Cond:
    """The condition of every frame of a walk through `n_keys` keyframes that sweeps from `start`
    to `end` (the CLI's --cond-from/--cond-to and Render Walk's cond/cond_end). With two
    keyframes the sweep follows the walk's own schedule (its holds and segments), so each end
    condition sits on its keyframe; otherwise it spans the whole walk. Easing, loop and ping-pong
    apply in both cases: a looping walk sweeps there and back."""
    same = n_keys == 2
    return condition_path([start, end], frames, easing, loop, pingpong, hold if same else 0,
                          segment_frames if same else None)

