#!/usr/bin/env bash
# Weekly yt-dlp update of the live release's venv (FR-004), run by yt-dlp-update.service.
#
# Upgrades yt-dlp, smoke-tests the new version (`yt-dlp --version`, then resolving a local
# media file), and puts the previous version back if the smoke test fails. Appends timestamped
# output and the result to the log, and writes a node_exporter textfile metric:
#   ytdlp_update_success (1/0), ytdlp_update_timestamp_seconds, ytdlp_update_info{version}.
# The broadcast service is never touched: it picks the new yt-dlp up at its next resolve.
#
# Environment (defaults in brackets): YTDLP_VENV [/opt/tg_video_streamer/current/venv],
# YTDLP_UPDATE_LOG [/var/log/yt-dlp-update.log],
# YTDLP_METRICS_FILE [/var/lib/prometheus/node-exporter/ytdlp_update.prom] (Debian's
# node-exporter textfile directory),
# YTDLP_PIP_ARGS [] (extra pip arguments, e.g. "--no-index --find-links DIR"; PIP_INDEX_URL works too).
#
# Exit codes: 0 updated (or already current); 1 the update failed, the previous version is in
# place; 2 the venv is missing.
set -uo pipefail

VENV=${YTDLP_VENV:-/opt/tg_video_streamer/current/venv}
LOG=${YTDLP_UPDATE_LOG:-/var/log/yt-dlp-update.log}
METRICS=${YTDLP_METRICS_FILE:-/var/lib/prometheus/node-exporter/ytdlp_update.prom}
PIP_ARGS=${YTDLP_PIP_ARGS:-}

mkdir -p "$(dirname "$LOG")"
exec >>"$LOG" 2>&1
log() { printf '%s yt-dlp-update: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

metric() {
  local ok=$1 version=$2 dir tmp
  dir=$(dirname "$METRICS")
  mkdir -p "$dir" 2>/dev/null || { log "cannot create $dir; no metric written"; return; }
  tmp=$(mktemp "$dir/.ytdlp_update.XXXXXX") || return
  {
    echo "# HELP ytdlp_update_success 1 if the latest yt-dlp update succeeded, else 0."
    echo "# TYPE ytdlp_update_success gauge"
    echo "ytdlp_update_success $ok"
    echo "# HELP ytdlp_update_timestamp_seconds Unix time of the latest update run."
    echo "# TYPE ytdlp_update_timestamp_seconds gauge"
    echo "ytdlp_update_timestamp_seconds $(date +%s)"
    echo "# HELP ytdlp_update_info The yt-dlp version in use after the latest run."
    echo "# TYPE ytdlp_update_info gauge"
    echo "ytdlp_update_info{version=\"$version\"} 1"
  } >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$METRICS"
}

ytdlp_version() { "$VENV/bin/python" -m yt_dlp --version 2>/dev/null | head -n 1; }

smoke_test() {
  local dir version
  version=$(ytdlp_version) || return 1
  [ -n "$version" ] || { log "smoke test: yt-dlp --version printed nothing"; return 1; }
  dir=$(mktemp -d)
  # A local media file resolved through yt-dlp's generic extractor, no network needed.
  if ! ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=160x120:rate=10 -t 1 \
      -pix_fmt yuv420p "$dir/smoke.mp4"; then
    rm -rf "$dir"
    log "smoke test: ffmpeg could not make the test clip (is ffmpeg installed?)"
    return 1
  fi
  if ! "$VENV/bin/python" -m yt_dlp --enable-file-urls --simulate --quiet --no-warnings \
      --print duration "file://$dir/smoke.mp4" >/dev/null; then
    rm -rf "$dir"
    log "smoke test: yt-dlp $version cannot resolve a local file"
    return 1
  fi
  rm -rf "$dir"
  return 0
}

if [ ! -x "$VENV/bin/python" ]; then
  log "FAILED: no venv at $VENV (is the service deployed?)"
  metric 0 unknown
  exit 2
fi

old=$(ytdlp_version)
log "starting: yt-dlp ${old:-not installed} in $VENV"
# shellcheck disable=SC2086 # PIP_ARGS is a list of arguments on purpose
if ! "$VENV/bin/pip" install --disable-pip-version-check --upgrade $PIP_ARGS yt-dlp; then
  log "FAILED: pip could not upgrade yt-dlp (network or index); ${old:-none} stays; next window retries"
  metric 0 "${old:-unknown}"
  exit 1
fi
new=$(ytdlp_version)
if smoke_test; then
  if [ "$new" = "$old" ]; then
    log "OK: yt-dlp $new is already the latest"
  else
    log "OK: yt-dlp updated from ${old:-none} to $new"
  fi
  metric 1 "$new"
  exit 0
fi

log "FAILED: yt-dlp ${new:-?} failed the smoke test; reinstalling ${old:-?}"
# shellcheck disable=SC2086
if [ -n "$old" ] && "$VENV/bin/pip" install --disable-pip-version-check $PIP_ARGS "yt-dlp==$old" \
    && smoke_test; then
  log "rolled back to yt-dlp $old; next window retries"
  metric 0 "$old"
else
  log "FAILED: could not restore yt-dlp ${old:-?}; resolving URLs may fail until fixed by hand"
  metric 0 "$(ytdlp_version || echo unknown)"
fi
exit 1
