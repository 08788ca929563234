#!/usr/bin/env bash
# Install the RTSP test server the live tests start (Debian's gst-rtsp-server, driven from
# /usr/bin/python3). Idempotent and quiet: does nothing when it is already importable.
# Needs root (CI) and apt; fails (non-zero) otherwise, and the live tests then skip with the reason.
set -euo pipefail
PACKAGES="python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"
CHECK="import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstApp', '1.0')
from gi.repository import Gst, GstRtspServer; Gst.init(None)
assert all(Gst.ElementFactory.find(e) for e in ('x264enc', 'avenc_aac', 'rtph264pay', 'videotestsrc'))"
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c "$CHECK" 2>/dev/null && exit 0
command -v apt-get >/dev/null || { echo "no apt-get: cannot install $PACKAGES" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root: cannot install $PACKAGES" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
/usr/bin/python3 -c "$CHECK"
