"""Conversions between media items and wire messages for frames and packets (one place)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from vsr_stream import messages as m
from vsr_stream.media.items import PacketItem, VideoFrameItem


def frame_message(item: VideoFrameItem) -> m.Message:
    return m.Message(m.FRAME, frame_header(item.index, item.pts, item.time_base, item.duration, item.name),
                     [item.array])


def frame_header(index: int, pts: int | None, time_base: Fraction | None, duration: int | None,
                 name: str | None) -> dict:
    return {"index": index, "pts": pts, "time_base": m.time_base_to_wire(time_base),
            "duration": duration, "name": name}


def frame_item(msg: m.Message, array: np.ndarray | None = None) -> VideoFrameItem:
    h = msg.header
    return VideoFrameItem(index=h["index"], pts=h["pts"], time_base=m.time_base_from_wire(h["time_base"]),
                          duration=h["duration"], array=msg.arrays[0] if array is None else array,
                          name=h.get("name"))


def packet_message(item: PacketItem) -> m.Message:
    header = {"stream_index": item.stream_index, "pts": item.pts, "dts": item.dts, "duration": item.duration,
              "time_base": m.time_base_to_wire(item.time_base), "is_keyframe": item.is_keyframe}
    return m.Message(m.PACKET, header, [np.frombuffer(item.data, dtype=np.uint8)])


def packet_item(msg: m.Message) -> PacketItem:
    h = msg.header
    return PacketItem(stream_index=h["stream_index"], pts=h["pts"], dts=h["dts"], duration=h["duration"],
                      time_base=m.time_base_from_wire(h["time_base"]), is_keyframe=h["is_keyframe"],
                      data=msg.arrays[0].tobytes())
