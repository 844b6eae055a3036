"""Easings, schedules, keyframe paths and condition sweeps."""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cvae_art.vae_core.conditions import make_condition
from cvae_art.vae_core.model import CVAE, ModelConfig
from cvae_art.vae_core.schedule import EASINGS, condition_path, ease, keyframe_path, schedule, sweep_condition

FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True)  # the same examples in every CI run
REQUIRED = {"linear", "ease-in", "ease-out", "ease-in-out", "smoothstep", "sine"}


def test_required_easings_exist():
    assert REQUIRED <= set(EASINGS)
    with pytest.raises(ValueError, match="unknown easing 'bouncy'.*linear"):
        ease(0.5, "bouncy")


@pytest.mark.parametrize("name", sorted(EASINGS))
def test_easing_ends_are_exact(name):
    assert float(ease(0.0, name)) == 0.0
    assert float(ease(1.0, name)) == 1.0


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.sampled_from(sorted(EASINGS)), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=50))
def test_easings_are_monotone_within_0_1(name, ts):
    t = torch.tensor(sorted(ts), dtype=torch.float64)
    y = ease(t, name)
    assert (y[1:] >= y[:-1]).all()
    assert (y >= 0).all() and (y <= 1).all()


def test_ease_in_out_is_not_linear():
    t = torch.tensor([0.25, 0.75])
    assert float(ease(t, "ease-in")[0]) < 0.25 and float(ease(t, "ease-out")[0]) > 0.25
    assert torch.allclose(ease(t, "ease-in-out"), 1 - ease(1 - t, "ease-in-out"), atol=1e-6)


def positions(seg: torch.Tensor, t: torch.Tensor, n_keys: int) -> list[tuple[int, int, float]]:
    """(from key, to key, t) per frame, normalised so a keyframe reads (k, k, 0)."""
    out = []
    for s, x in zip(seg.tolist(), t.tolist()):
        j = (s + 1) % n_keys
        if x == 0.0:
            out.append((s, s, 0.0))
        elif x == 1.0:
            out.append((j, j, 0.0))
        else:
            out.append((s, j, round(x, 6)))
    return out


def minimum_frames(k: int, loop: bool, pingpong: bool, hold: int) -> int:
    """Frames a walk needs to show every keyframe: its holds, or one frame per segment without."""
    stops = (2 * k - 2 if pingpong else k) if loop else (2 * k - 1 if pingpong else k)
    moving = n_segments(k, loop, pingpong) if hold == 0 else 0
    return stops * hold + moving + (0 if loop else 1)


def n_segments(k: int, loop: bool, pingpong: bool) -> int:
    return 2 * (k - 1) if pingpong else k if loop else k - 1


def keyframe_runs(pos: list[tuple[int, int, float]]) -> list[tuple[int, int]]:
    """(key, run length) for each run of consecutive frames showing one keyframe."""
    runs: list[tuple[int, int]] = []
    prev = None
    for p in pos:
        if p[2] == 0.0 and p[0] == p[1]:
            if p == prev:
                runs[-1] = (p[0], runs[-1][1] + 1)
            else:
                runs.append((p[0], 1))
        prev = p
    return runs


SCHEDULES = dict(
    k=st.integers(1, 6), frames=st.integers(1, 200), loop=st.booleans(), pingpong=st.booleans(),
    hold=st.integers(0, 4), easing=st.sampled_from(sorted(EASINGS)),
)


@FAST
@given(**SCHEDULES)
@example(k=2, frames=2, loop=False, pingpong=True, hold=0, easing="ease-in")  # once started on key 1
def test_schedule_gives_exactly_the_frames_asked_for(k, frames, loop, pingpong, hold, easing):
    need = minimum_frames(k, loop, pingpong, hold) if k > 1 else 1
    if frames < need and not (frames == 1 and hold == 0):
        with pytest.raises(ValueError, match="too few"):
            schedule(k, frames, easing, loop, pingpong, hold)
        return
    seg, t = schedule(k, frames, easing, loop, pingpong, hold)
    assert seg.shape == (frames,) and t.shape == (frames,)
    assert seg.dtype == torch.long and t.dtype == torch.float32
    assert (t >= 0).all() and (t <= 1).all()
    assert (seg >= 0).all() and (seg < k).all()
    pos = positions(seg, t, k)
    assert pos[0] == (0, 0, 0.0)  # always starts on the first keyframe
    if k == 1 or frames == 1:
        return
    if not loop:  # an open path ends on its last stop
        assert pos[-1] == ((0, 0, 0.0) if pingpong else (k - 1, k - 1, 0.0))
    else:  # no duplicated frame at the seam: the last frame is not the first keyframe again
        assert pos[-1] != pos[0]


@FAST
@given(**SCHEDULES)
def test_each_keyframe_is_held_for_1_plus_hold_frames(k, frames, loop, pingpong, hold, easing):
    if k == 1:
        return
    room = minimum_frames(k, loop, pingpong, hold) + n_segments(k, loop, pingpong)
    if frames < room:  # not every segment gets a frame; covered by the exact-count test
        return
    seg, t = schedule(k, frames, easing, loop, pingpong, hold)
    runs = keyframe_runs(positions(seg, t, k))
    if pingpong:
        stops = list(range(k)) + list(range(k - 2, 0 if loop else -1, -1))
    else:
        stops = list(range(k))
    assert runs == [(s, 1 + hold) for s in stops]


@FAST
@given(k=st.integers(2, 6), frames=st.integers(2, 150), loop=st.booleans(), hold=st.integers(0, 3),
       easing=st.sampled_from(sorted(EASINGS)))
def test_pingpong_plays_the_same_frames_back(k, frames, loop, hold, easing):
    need = minimum_frames(k, loop, True, hold)
    # with room for every segment; an odd number of in-between frames cannot mirror
    if frames < need + n_segments(k, loop, True) or (frames - need) % 2:
        return
    seg, t = schedule(k, frames, easing, loop, True, hold)
    pos = [(a, b, round(x, 5)) for a, b, x in positions(seg, t, k)]
    # open: a palindrome; loop: a palindrome after the first keyframe's frames (it is the seam)
    body = pos[hold + 1:] if loop else pos
    assert body == body[::-1]
    # the turn-around is shown once, with its hold
    assert [p for p in pos if p == (k - 1, k - 1, 0.0)] == [(k - 1, k - 1, 0.0)] * (1 + hold)


def test_pingpong_sequence_by_hand():
    seg, t = schedule(3, 9, pingpong=True)
    assert positions(seg, t, 3) == [
        (0, 0, 0.0), (0, 1, 0.5), (1, 1, 0.0), (1, 2, 0.5), (2, 2, 0.0), (1, 2, 0.5), (1, 1, 0.0), (0, 1, 0.5), (0, 0, 0.0)
    ]
    seg, t = schedule(3, 8, pingpong=True, loop=True)
    assert positions(seg, t, 3)[-1] == (0, 1, 0.5)  # flows into frame 0 without repeating it


def test_loop_flows_from_last_keyframe_back_to_first():
    seg, t = schedule(3, 9, loop=True)
    third, two_thirds = round(1 / 3, 6), round(2 / 3, 6)
    assert positions(seg, t, 3) == [
        (0, 0, 0.0), (0, 1, third), (0, 1, two_thirds),
        (1, 1, 0.0), (1, 2, third), (1, 2, two_thirds),
        (2, 2, 0.0), (2, 0, third), (2, 0, two_thirds),
    ]


def test_segment_frames_set_each_segment_and_must_add_up():
    seg, t = schedule(3, None, segment_frames=[2, 4])
    assert seg.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert t.tolist() == [0.0, 0.5, 0.0, 0.25, 0.5, 0.75, 1.0]
    seg, t = schedule(3, 10, segment_frames=[2, 4], hold=1)  # 6 + 3 holds + final frame
    assert len(seg) == 10
    with pytest.raises(ValueError, match="make 7 frames, but frames=8"):
        schedule(3, 8, segment_frames=[2, 4])
    with pytest.raises(ValueError, match="needs 3"):
        schedule(3, None, segment_frames=[2, 4], loop=True)
    seg, t = schedule(3, None, segment_frames=[2, 4, 3], loop=True)
    assert len(seg) == 9
    seg, t = schedule(3, None, segment_frames=[2, 4], pingpong=True)
    assert len(seg) == 2 * 6 + 1


def test_keyframe_path_hits_every_keyframe_exactly():
    keys = torch.randn(4, 16)
    for method in ("slerp", "lerp"):
        for kw in ({}, {"loop": True}, {"pingpong": True}, {"hold": 2}):
            path = keyframe_path(keys, 40, method=method, easing="ease-in-out", **kw)
            assert path.shape == (40, 16)
            assert torch.isfinite(path).all()
            for key in keys:
                assert (path == key).all(dim=1).any(), (method, kw)
    path = keyframe_path(keys, 31)
    assert torch.equal(path[0], keys[0]) and torch.equal(path[-1], keys[-1])
    assert torch.equal(path[10], keys[1])  # 30 moving frames over 3 segments: a key every 10


def test_keyframe_path_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[K, D\]"):
        keyframe_path(torch.randn(16), 10)
    with pytest.raises(ValueError, match="method"):
        keyframe_path(torch.randn(2, 16), 10, method="cubic")


@pytest.fixture(scope="module")
def styled_model():
    torch.manual_seed(0)
    return CVAE(ModelConfig(resolution=32, latent_dim=8, base_channels=8, max_channels=16,
                            conditions={"style": ["noto", "openmoji", "twemoji"], "group": ["a", "b"]}))


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_blend_weights_give_the_weighted_mix_of_embeddings(styled_model, w1, w2):
    if w1 + w2 < 1e-3:
        return
    m = styled_model
    blend = m.condition({"style": {"noto": w1, "openmoji": w2}, "group": "b"})
    a, b, g = m.condition("style=noto;group=b"), m.condition("style=openmoji;group=b"), m.condition("group=b")
    mixed = (w1 * m.embed(a) + w2 * m.embed(b)) / (w1 + w2)
    with torch.no_grad():
        assert torch.allclose(m.embed(blend), mixed, atol=1e-5)
        # the unmentioned factor keeps its own embedding
        gdim = m.config.embed_dim
        assert torch.allclose(m.embed(blend)[:, gdim:], m.embed(g)[:, gdim:])


def test_condition_path_sweeps_linearly_in_weights(styled_model):
    m = styled_model
    a, b, c = m.condition("style=noto"), m.condition("style=openmoji"), m.condition("style=twemoji;group=a")
    sweep = condition_path([a, b, c], 21, easing="smoothstep", loop=True)
    assert set(sweep) == {"style", "group"}
    assert sweep["style"].shape == (21, 4) and sweep["group"].shape == (21, 3)
    seg, t = schedule(3, 21, "smoothstep", loop=True)
    keys = {f: torch.cat([x[f] for x in (a, b, c)]) for f in sweep}
    for f, w in sweep.items():
        expected = (1 - t)[:, None] * keys[f][seg] + t[:, None] * keys[f][(seg + 1) % 3]
        assert torch.allclose(w, expected, atol=1e-6)
        assert torch.allclose(w.sum(1), torch.ones(21))  # still a distribution over labels
    with torch.no_grad():  # and the embedding of each frame is the same mix of the key embeddings
        e = m.embed(sweep)
        ek = torch.cat([m.embed(x) for x in (a, b, c)])
        assert torch.allclose(e, (1 - t)[:, None] * ek[seg] + t[:, None] * ek[(seg + 1) % 3], atol=1e-5)
    with pytest.raises(ValueError, match="batch 1"):
        condition_path([make_condition(m.vocab, "style=noto", batch=2), b], 5)


def test_a_style_sweep_sits_on_its_keyframes_with_two_and_spans_the_walk_otherwise():
    vocab = {"style": ["a", "b"]}
    a, b = make_condition(vocab, "style=a"), make_condition(vocab, "style=b")
    two = sweep_condition(a, b, 10, 2, hold=2)["style"][:, 1]  # weight of b per frame
    assert two[:3].tolist() == [0, 0, 0] and two[-3:].tolist() == [1, 1, 1]  # held on each keyframe
    many = sweep_condition(a, b, 10, 4, hold=2)["style"][:, 1]
    assert many[0] == 0 and many[-1] == 1 and (many[1:] > many[:-1]).all()  # over the whole walk, no holds
    looped = sweep_condition(a, b, 12, 4, loop=True)["style"][:, 1]
    assert looped[0] == 0 and looped.max() == 1 and looped[-1] < 0.5  # there and back again
