"""Temporal reuse: the decision (threshold, blocks, max age), the classify tracker's references and
resets, and the stitch stage filling reused tiles from the previous output frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr_stream import messages as m
from vsr_stream.config import PipelineConfig, ReuseConfig, load_config
from vsr_stream.errors import ConfigError, ModelInputError, ProtocolError
from vsr_stream.geometry import plan_tiles
from vsr_stream.ops.blend import accumulate_tiles, normalize, stitch_cores
from vsr_stream.ops.reuse import (block_rows, core_change, core_rows, decide_reuse, first_ages, lr_change,
                                  scaled_rows)
from vsr_stream.stages.classify import ReuseTracker, cut_windows
from vsr_stream.models.interp import bicubic_upsample
from vsr_stream.stages.stitch import (StitchStage, corrected_previous, feather_ramp_px, fill_reused, hr_canvas,
                                     reused_behind)

GEOM = plan_tiles(40, 52, 16, 4, 2)  # 3 x 4 tiles, cores 16 x 16 overlapping by 4 (x0 = 0, 12, 24, 36)


def frame(seed: int = 0, h: int = 40, w: int = 52, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (h, w, 3)).astype(dtype)


def tracker(**cfg) -> ReuseTracker:
    return ReuseTracker(ReuseConfig(**cfg))


# --- the decision ---

def test_threshold_is_inclusive_and_zero_reuses_only_identical_cores():
    age = np.zeros(3, np.int64)
    reused, _ = decide_reuse(np.array([0.0, 1.0, 1.01]), age, 1.0, 30)
    assert reused.tolist() == [True, True, False]
    reused, _ = decide_reuse(np.array([0.0, 0.01]), age[:2], 0.0, 30)
    assert reused.tolist() == [True, False]


def test_a_tile_reused_max_age_times_in_a_row_is_upscaled_again():
    age, pattern = np.zeros(1, np.int64), []
    for _ in range(7):
        reused, age = decide_reuse(np.zeros(1), age, 1.0, 2)
        pattern.append(bool(reused[0]))
    assert pattern == [True, True, False, True, True, False, True]


def test_a_frame_reusing_fewer_than_min_fraction_of_its_tiles_reuses_none():
    change, age = np.array([0.0, 0.0, 5.0, 5.0, 5.0]), np.array([3, 0, 2, 0, 0])
    reused, new_age = decide_reuse(change, age, 1.0, 30, min_fraction=0.5)  # 2 of 5 < 2.5
    assert not reused.any() and new_age.tolist() == [0, 6, 12, 18, 24]  # upscaled whole: a staggered restart
    reused, new_age = decide_reuse(change, age, 1.0, 30, min_fraction=0.4)  # 2 of 5 >= 2
    assert reused.tolist() == [True, True, False, False, False] and new_age.tolist() == [4, 1, 0, 0, 0]
    # a tile due for its forced refresh is still unchanged: it counts towards min_fraction
    reused, new_age = decide_reuse(change, np.array([30, 0, 0, 0, 0]), 1.0, 30, min_fraction=0.4)
    assert reused.tolist() == [False, True, False, False, False] and new_age.tolist() == [0, 1, 0, 0, 0]


def test_block_rows_partition_every_core_into_even_blocks():
    rows = block_rows(3, 37, 20, 16)  # 37 -> 13,12,12 rows; 20 -> 10,10 columns
    assert rows.shape == (3 * 3 * 2, 9)
    cover = np.zeros((3 * 37, 20), int)
    for _, y0, x0, h, w, *_ in rows:
        cover[y0:y0 + h, x0:x0 + w] += 1
    np.testing.assert_array_equal(cover, 1)
    assert sorted(set(rows[:, 3])) == [12, 13] and set(rows[:, 4]) == {10}
    assert (rows[:6, 1] < 37).all() and (rows[6:12, 1] >= 37).all()  # a core's blocks are consecutive rows


def test_a_small_change_in_a_large_core_is_not_averaged_away():
    cores = np.zeros((2, 64, 64, 3), np.uint8)
    changed = cores.copy()
    changed[1, 30, 30] = 100  # one pixel of the second core
    assert core_change(changed, cores, 10_000).tolist() == pytest.approx([0.0, 100 / 4096])
    assert core_change(changed, cores, 8).tolist() == pytest.approx([0.0, 100 / 64])


def test_uint16_changes_are_measured_on_the_8_bit_scale():
    ref = np.full((1, 4, 4, 3), 1000, np.uint16)
    cores = ref + np.uint16(256)  # one 8-bit level everywhere
    assert core_change(cores, ref, 16).tolist() == [1.0]


def test_bad_reuse_settings_fail_as_config_errors():
    for bad in ({"mad_threshold": -1}, {"max_age_frames": 0}, {"block_px": 0}, {"min_fraction": 1.5}):
        with pytest.raises(ConfigError, match="reuse"):
            load_config({"reuse": bad})


# --- the classify tracker ---

def test_first_frame_upscales_everything_and_an_identical_frame_reuses_everything():
    t, f = tracker(), frame()
    assert not t.reused(f, GEOM, 0).any()
    assert t.reused(f.copy(), GEOM, 1).all()
    assert t.reused_total == len(GEOM)


def test_only_tiles_whose_core_changed_are_upscaled():
    t, f = tracker(mad_threshold=1.0), frame()
    t.reused(f, GEOM, 0)
    g = f.copy()
    g[0:4, 0:4] += 50  # inside tile 0's core only: a block mean of 3.1
    g[20, 30] += 1  # a one-level change: under the threshold
    assert np.flatnonzero(~t.reused(g, GEOM, 1)).tolist() == [0]


def test_references_change_only_for_upscaled_tiles_so_slow_drift_is_caught():
    """+1 a frame on 60% of the values: 0.6 from the previous frame, always under the 1.0 threshold;
    1.2 from the content last upscaled on the second frame, which is then upscaled."""
    t, f = tracker(mad_threshold=1.0), frame(h=16, w=16)
    geom = plan_tiles(16, 16, 16, 0, 0)  # one tile
    step = (np.arange(f.size) % 5 > 1).reshape(f.shape).astype(np.uint8)
    drift = [f + i * step for i in range(6)]
    assert [bool(t.reused(d, geom, i)[0]) for i, d in enumerate(drift)] == [False, True, False, True, False, True]
    np.testing.assert_array_equal(t.reference[0], drift[4])  # frame 5 was reused: the reference is frame 4's


def test_reference_of_a_reused_tile_keeps_its_own_core_where_cores_overlap():
    t, f = tracker(mad_threshold=1.0), frame()
    t.reused(f, GEOM, 0)
    g = f.copy()
    g[0:16, 0:4] += 40  # tile 0 changes; tile 1's core starts at column 12, so the overlap is untouched
    g[0:16, 12:16] += 1  # a small change inside the overlap of tiles 0 and 1
    reused = t.reused(g, GEOM, 1)
    assert not reused[0] and reused[1]
    np.testing.assert_array_equal(t.reference[0], g[0:16, 0:16])  # upscaled: its new core
    np.testing.assert_array_equal(t.reference[1], f[0:16, 12:28])  # reused: still the first frame's core


@pytest.mark.parametrize("second", [
    pytest.param(lambda f: (frame(0, 40, 60), 1), id="new size"),
    pytest.param(lambda f: (f.astype(np.uint16) * 257, 1), id="new dtype"),
    pytest.param(lambda f: (f.copy(), 2), id="a frame missed"),
    pytest.param(lambda f: (f.copy(), 0), id="index repeated"),
])
def test_nothing_is_reused_across_a_reset(second):
    t, f = tracker(), frame()
    t.reused(f, GEOM, 0)
    g, index = second(f)
    geom = plan_tiles(g.shape[0], g.shape[1], 16, 4, 2)
    assert not t.reused(g, geom, index).any()
    assert t.reused(g, geom, index + 1).all()  # the reset frame is the new reference


def test_forced_refreshes_of_a_static_scene_are_spread_over_frames():
    t, f, max_age = tracker(max_age_frames=4), frame(), 4
    upscaled = [int((~t.reused(f, GEOM, i)).sum()) for i in range(2 * (max_age + 1))]
    assert upscaled[0] == len(GEOM)
    assert max(upscaled[1:]) <= -(-len(GEOM) // max_age)  # a few tiles a frame, never a burst
    assert sum(upscaled[1:max_age + 2]) >= len(GEOM)  # every tile refreshed within max_age + 1 frames
    assert first_ages(12, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_lr_change_is_signed_and_wide_enough():
    a, b = frame(1), frame(2)
    assert lr_change(a, b).dtype == np.int16 and lr_change(a, b).tolist() == (a.astype(int) - b).tolist()
    a16, b16 = (a.astype(np.uint16) * 300, b.astype(np.uint16) * 300)
    assert lr_change(a16, b16).dtype == np.int32 and lr_change(a16, b16).min() < -32768
    with pytest.raises(ModelInputError, match="lr_change"):
        lr_change(a, b[:-1])
    with pytest.raises(ModelInputError, match="lr_change"):
        lr_change(a.astype(np.float32), b.astype(np.float32))


def test_tracker_gives_the_change_since_the_previous_frame_only_when_it_reuses_and_corrects():
    t, f = tracker(mad_threshold=3.0), frame()
    assert not t.reused(f, GEOM, 0).any() and t.change is None  # nothing reused
    g = f.copy()
    g[::2] += 1
    assert t.reused(g, GEOM, 1).all()
    assert t.change.tolist() == lr_change(g, f).tolist()  # from the previous frame, not the reference
    h = g.copy()
    h[1::2] += 2
    t.reused(h, GEOM, 2)
    assert t.change.tolist() == lr_change(h, g).tolist()
    t.reused(frame(9), GEOM, 3)  # every tile changed: none reused
    assert t.change is None
    off = tracker(mad_threshold=3.0, correct=False)
    off.reused(f, GEOM, 0)
    assert off.reused(g, GEOM, 1).all() and off.change is None and off.last is None


def test_disabled_reuses_nothing():
    t, f = tracker(enabled=False), frame()
    t.reused(f, GEOM, 0)
    assert not t.reused(f, GEOM, 1).any() and t.reference is None


# --- stitch ---

def plan_msg(index: int, h: int, w: int, n_tiles: int, reused: np.ndarray | None = None,
             change: np.ndarray | None = None) -> m.Message:
    header = {"index": index, "pts": index, "time_base": [1, 25], "duration": 1, "name": None,
              "h": h, "w": w, "n_tiles": n_tiles, "dtype": "uint8"}
    msg = m.Message(m.PLAN, header, [a for a in (reused, change) if a is not None])
    return m.decode([bytes(p) for p in m.encode(msg)])  # through the wire codec


def nearest(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(lr, scale, -3), scale, -2)


def cfg(**sections) -> PipelineConfig:
    return load_config({"scale": 2, "tiling": {"tile_px": 16, "overlap_px": 4, "context_px": 2}, **sections})


def test_fill_reused_blends_like_the_same_pixels_upscaled():
    lr, scale, ramp = frame(), 2, 8
    hr = nearest(lr, scale)
    reused = GEOM[[1, 5, 6]]
    acc, wsum = hr_canvas(40, 52, scale)
    fill_reused(acc, wsum, hr, reused, scale, ramp)
    ref_acc, ref_wsum = hr_canvas(40, 52, scale)
    accumulate_tiles(ref_acc, ref_wsum, nearest(cut_windows(lr, reused), scale), reused, scale, ramp)
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(wsum, ref_wsum)


def test_scaled_core_rows_cut_the_hr_cores():
    rows = scaled_rows(core_rows(GEOM[:2]), 3)
    assert rows[1].tolist() == [1, 0, 36, 48, 48, 0, 36, 48, 48]


def results(lr: np.ndarray, geom: np.ndarray, index: int, scale: int) -> m.Message:
    return m.Message(m.RESULT, {"index": index}, [geom, nearest(cut_windows(lr, geom), scale)])


def test_stitch_fills_reused_tiles_at_release_even_when_frames_complete_out_of_order():
    c = cfg()
    f0, f1 = frame(0), frame(0)
    f1[0:4, 0:4] = 0  # only tile 0 changes
    reused = GEOM[1:]
    stitch = StitchStage(c)
    msgs = [plan_msg(1, 40, 52, 1, reused), results(f1, GEOM[:1], 1, 2),  # frame 1 complete first
            plan_msg(0, 40, 52, len(GEOM)), results(f0, GEOM, 0, 2)]
    out = [f for msg in msgs for _, f in stitch.process(msg)]
    assert [o["index"] for o in out] == [0, 1]
    np.testing.assert_array_equal(out[0].arrays[0], nearest(f0, 2))
    np.testing.assert_array_equal(out[1].arrays[0], nearest(f1, 2))  # nearest: reuse is exact


def test_a_frame_whose_tiles_are_all_reused_is_released():
    stitch, f0 = StitchStage(cfg()), frame()
    out = [f for msg in (plan_msg(0, 40, 52, len(GEOM)), results(f0, GEOM, 0, 2), plan_msg(1, 40, 52, 0, GEOM))
           for _, f in stitch.process(msg)]
    np.testing.assert_array_equal(out[1].arrays[0], out[0].arrays[0])
    assert stitch.drained()


def test_reused_tiles_without_a_previous_frame_are_a_protocol_error():
    with pytest.raises(ProtocolError, match="no previous frame"):
        list(StitchStage(cfg()).process(plan_msg(0, 40, 52, 0, GEOM)))
    stitch = StitchStage(cfg(reuse={"enabled": False}))  # reuse off: no frame is kept
    list(stitch.process(plan_msg(0, 40, 52, len(GEOM))))
    list(stitch.process(results(frame(), GEOM, 0, 2)))
    with pytest.raises(ProtocolError, match="no previous frame"):
        list(stitch.process(plan_msg(1, 40, 52, 0, GEOM)))


def test_reused_tiles_of_another_frame_size_are_a_protocol_error():
    stitch = StitchStage(cfg())
    small = plan_tiles(20, 30, 16, 4, 2)
    list(stitch.process(plan_msg(0, 20, 30, len(small))))
    list(stitch.process(results(frame(0, 20, 30), small, 0, 2)))
    with pytest.raises(ProtocolError, match="previous frame of"):
        list(stitch.process(plan_msg(1, 40, 52, 0, GEOM)))


def test_a_malformed_plan_payload_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="reused"):
        list(StitchStage(cfg()).process(plan_msg(0, 40, 52, 1, GEOM[:, :5].copy())))
    with pytest.raises(ProtocolError, match="LR change"):  # a change of another size
        list(StitchStage(cfg()).process(plan_msg(0, 40, 52, 1, GEOM[1:], np.zeros((20, 52, 3), np.int16))))
    with pytest.raises(ProtocolError, match="LR change"):  # or unsigned
        list(StitchStage(cfg()).process(plan_msg(0, 40, 52, 1, GEOM[1:], frame())))


def bicubic_hr(lr: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(lr).double().permute(2, 0, 1)[None]
    return bicubic_upsample(x, scale)[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8)


def test_corrected_previous_adds_the_bicubic_change_so_a_bicubic_upscale_stays_exact():
    """Bicubic is linear: the previous frame's bicubic upscale plus the bicubic change is this
    frame's bicubic upscale, up to rounding (the previous output was rounded once)."""
    f0 = (60 + frame(4) * 0.65).astype(np.uint8)  # values whose bicubic overshoot stays inside 0..255
    f1 = f0.copy()
    f1[5:30, 8:40] += 7  # a brightness step with edges
    got = corrected_previous(bicubic_hr(f0, 3), lr_change(f1, f0), 3)
    diff = np.abs(got.astype(int) - bicubic_hr(f1, 3))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.5
    assert np.abs(bicubic_hr(f0, 3).astype(int) - bicubic_hr(f1, 3)).max() >= 7  # it did change
    with pytest.raises(ModelInputError, match="previous frame"):
        corrected_previous(bicubic_hr(f0, 2), lr_change(f1, f0), 3)


def test_stitch_corrects_reused_tiles_by_the_plan_change():
    c = cfg()
    f0, f1 = frame(0), frame(0)
    f1[0:4, 0:4] = 0  # tile 0 changes and is upscaled
    f1[20:36, 30:50] += 3  # the others change a little: reused, corrected
    stitch = StitchStage(c)
    msgs = [plan_msg(0, 40, 52, len(GEOM)), results(f0, GEOM, 0, 2),
            plan_msg(1, 40, 52, 1, GEOM[1:], lr_change(f1, f0)), results(f1, GEOM[:1], 1, 2)]
    out = [f for msg in msgs for _, f in stitch.process(msg)]
    plain = StitchStage(c)
    msgs[2] = plan_msg(1, 40, 52, 1, GEOM[1:])
    uncorrected = [f for msg in msgs for _, f in plain.process(msg)]
    want = corrected_previous(nearest(f0, 2), lr_change(f1, f0), 2)
    core = np.s_[2 * 20:2 * 36, 2 * 30:2 * 50]  # reused tiles' cores only, away from tile 0
    np.testing.assert_array_equal(out[1].arrays[0][core], want[core])
    assert not np.array_equal(uncorrected[1].arrays[0][core], want[core])


def test_feathered_reuse_of_an_unchanged_frame_gives_it_back():
    """Reusing every tile of a frame blends the previous output with itself: exactly that output."""
    c = cfg()
    prev = nearest(frame(3), 2)
    acc, wsum = hr_canvas(40, 52, 2)
    fill_reused(acc, wsum, prev, GEOM, 2, feather_ramp_px(c))
    np.testing.assert_array_equal(normalize(acc, wsum, np.uint8), prev)



@pytest.mark.parametrize("seed", range(6))
def test_stitching_over_the_previous_frame_equals_blending_every_reused_tile(seed):
    """stitch_cores from the previous output with only the reused tiles that touch an upscaled core
    (reused_behind) gives the frame that blending every reused tile over the whole canvas gives, bit
    for bit: where only reused tiles lie, their blend is the previous value itself."""
    rng = np.random.default_rng(seed)
    geom = plan_tiles(70, 90, 16, 4, 2)
    scale, ramp = 3, 6
    prev = rng.integers(0, 256, (70 * scale, 90 * scale, 3)).astype(np.uint8)
    reused = rng.random(len(geom)) < rng.uniform(0.2, 0.9)
    cores = core_rows(geom[~reused])  # windows = cores: random HR cores stand for the network's
    parts = [(cores, rng.integers(0, 256, (len(cores), 16 * scale, 16 * scale, 3)).astype(np.uint8))] if len(cores) else []
    acc, wsum = hr_canvas(70, 90, scale)
    for rows, hr in parts:
        accumulate_tiles(acc, wsum, hr, rows, scale, ramp)
    if reused.any():
        fill_reused(acc, wsum, prev, geom[reused], scale, ramp)
    expected = normalize(acc, wsum, np.uint8)
    before = prev.copy()
    behind = reused_behind(prev, geom[reused], geom[~reused], scale, prev.shape)
    got = stitch_cores(parts, scale, ramp, prev.shape, np.uint8, base=prev, behind=behind)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(prev, before)  # the previous frame is not written


def test_only_the_reused_tiles_next_to_an_upscaled_one_are_blended_again():
    prev = nearest(frame(), 2)
    behind = reused_behind(prev, GEOM[1:], GEOM[:1], 2, prev.shape)  # tile 0 upscaled, the rest reused
    assert [rows[:, 0].tolist() for rows, _ in behind] == [[1, 4, 5]]  # its neighbours in the 3 x 4 grid
    assert reused_behind(prev, GEOM[1:], GEOM[:0], 2, prev.shape) == []
    with pytest.raises(ModelInputError, match="previous frame"):
        reused_behind(prev, GEOM[1:], GEOM[:1], 2, (8, 8, 3))
