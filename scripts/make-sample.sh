#!/usr/bin/env bash
# Makes the demo/test videos: .shoal/media/sample.mp4 (120 s testsrc2 640x360
# 25 fps + sine tone, H.264 ~800 kbit/s + AAC, keyframe every 2 s) if missing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
out=.shoal/media/sample.mp4
command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg is missing: run scripts/setup.sh"
if [ -s "$out" ]; then
  log "sample: $out present"
else
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$.mp4"
trap 'rm -f "$tmp"' EXIT
log "sample: encoding $out (120 s, 640x360, H.264 + AAC)"
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=120" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=120" \
  -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
  -b:v 800k -maxrate 800k -bufsize 1600k \
  -x264-params "keyint=50:min-keyint=50:scenecut=0" \
  -c:a aac -b:a 96k -ac 2 \
  -movflags +faststart -shortest "$tmp"
mv "$tmp" "$out"
trap - EXIT
log "sample: wrote $out ($(wc -c <"$out") bytes)"
fi

# The long-play test's video: .shoal/media-long/long.mp4 (600 s, 320x180,
# ~300 kbit/s), longer than the player's store and media windows.
long=.shoal/media-long/long.mp4
if [ -s "$long" ]; then
  log "sample: $long present"
  exit 0
fi
mkdir -p "$(dirname "$long")"
tmp="$long.tmp.$$.mp4"
trap 'rm -f "$tmp"' EXIT
log "sample: encoding $long (600 s, 320x180, H.264 + AAC)"
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=320x180:rate=25:duration=600" \
  -f lavfi -i "sine=frequency=330:sample_rate=48000:duration=600" \
  -map 0:v -map 1:a \
  -c:v libx264 -preset ultrafast -profile:v high -pix_fmt yuv420p \
  -b:v 300k -maxrate 300k -bufsize 600k \
  -x264-params "keyint=50:min-keyint=50:scenecut=0" \
  -c:a aac -b:a 48k -ac 2 \
  -movflags +faststart -shortest "$tmp"
mv "$tmp" "$long"
log "sample: wrote $long ($(wc -c <"$long") bytes)"
