"""A small RTSP server for the live tests (Debian's gst-rtsp-server, run with /usr/bin/python3).

Binds 127.0.0.1:PORT (0 picks a free port) and prints ``READY <port>`` on stdout once it listens.
Mounts:
  /cam         a live camera: moving test pattern, H.264 (x264 zerolatency, 1 s GOP) + AAC tone;
               one pipeline per client (a shared one answers 503 while the last client leaves)
  /switch      like /cam without audio, but the picture size doubles after 1.5 s (a mid-stream
               resolution change: x264 sends new parameter sets)
  /relay       RECORD: accepts one publisher (H.264 video + optional AAC), video forwarded to /relay-view
  /relay-view  PLAY: what the publisher of /relay sends, for any number of readers
Runs until SIGTERM/SIGINT. Not part of the package: it needs python3-gi and the GStreamer plugins.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

RELAY_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


def camera_launch(width: int, height: int, fps: int, audio: bool) -> str:
    video = (f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
             f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
             f"! rtph264pay name=pay0 pt=96 config-interval=1")
    sound = (" audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=48000,channels=1 "
             "! audioconvert ! avenc_aac ! rtpmp4gpay name=pay1 pt=97") if audio else ""
    return f"( {video}{sound} )"


def switch_launch(width: int, height: int, fps: int) -> str:
    return (f"( videotestsrc is-live=true pattern=ball ! video/x-raw,framerate={fps}/1 ! videoscale "
            f"! capsfilter name=size caps=video/x-raw,width={width},height={height} "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")


def on_switch_configure(width: int, height: int):
    """media-configure handler of /switch: after 1.5 s, the capsfilter asks for twice the size."""
    def configure(factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        size = media.get_element().get_by_name("size")
        caps = Gst.Caps.from_string(f"video/x-raw,width={2 * width},height={2 * height}")
        GLib.timeout_add(1500, lambda: size.set_property("caps", caps) and False)
    return configure


class Relay:
    """Forwards the H.264 access units of the publisher on /relay to every reader of /relay-view."""

    def __init__(self) -> None:
        self.readers: list[GstApp.AppSrc] = []

    def on_record_configure(self, factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        sink = media.get_element().get_by_name("sink")
        sink.connect("new-sample", self.on_sample)

    def on_sample(self, sink: GstApp.AppSink) -> Gst.FlowReturn:
        buffer = sink.emit("pull-sample").get_buffer()
        for src in list(self.readers):
            out = buffer.copy()
            out.pts = out.dts = Gst.CLOCK_TIME_NONE  # the reader's appsrc stamps its own running time
            src.emit("push-buffer", out)
        return Gst.FlowReturn.OK

    def on_play_configure(self, factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        src.set_property("caps", Gst.Caps.from_string(RELAY_CAPS))
        self.readers.append(src)
        media.connect("unprepared", lambda *_: self.readers.remove(src) if src in self.readers else None)


def make_server(port: int, width: int, height: int, fps: int, audio: bool) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    server.get_thread_pool().set_max_threads(16)
    mounts = server.get_mount_points()
    cam = GstRtspServer.RTSPMediaFactory()
    cam.set_launch(camera_launch(width, height, fps, audio))
    mounts.add_factory("/cam", cam)
    switch = GstRtspServer.RTSPMediaFactory()
    switch.set_launch(switch_launch(width, height, fps))
    switch.connect("media-configure", on_switch_configure(width, height))
    mounts.add_factory("/switch", switch)
    relay = Relay()
    record = GstRtspServer.RTSPMediaFactory()
    record.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    # One depayloader per announced stream: H.264 video relayed, AAC audio (FFmpeg's mpeg4-generic) discarded.
    record.set_launch(f"( rtph264depay name=depay0 ! h264parse config-interval=-1 ! {RELAY_CAPS} "
                      "! appsink name=sink emit-signals=true sync=false "
                      "rtpmp4gdepay name=depay1 ! fakesink sync=false async=false )")
    record.connect("media-configure", relay.on_record_configure)
    mounts.add_factory("/relay", record)
    play = GstRtspServer.RTSPMediaFactory()
    play.set_launch("( appsrc name=src is-live=true format=time do-timestamp=true "
                    "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    play.set_shared(True)
    play.connect("media-configure", relay.on_play_configure)
    mounts.add_factory("/relay-view", play)
    server.relay = relay  # keep the Python object alive with the server
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", default="160x96", help="WIDTHxHEIGHT of the camera")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--no-audio", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    Gst.init(None)
    server = make_server(args.port, width, height, args.fps, not args.no_audio)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
