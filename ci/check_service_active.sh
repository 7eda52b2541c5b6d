#!/usr/bin/env bash
# After a deploy: wait until the service is active (FR-009, SC-002).
#
#   check_service_active.sh [SERVICE] [TIMEOUT_SECONDS]
#
# Polls `systemctl is-active SERVICE` (default tg_video_streamer) every second for up to
# TIMEOUT_SECONDS (default 60, or CHECK_TIMEOUT). Exit codes: 0 active; 1 not active in time
# (the last state, the unit's status and the tail of its journal are printed); 2 bad usage.
set -uo pipefail

SERVICE=${1:-${SERVICE_NAME:-tg_video_streamer}}
TIMEOUT=${2:-${CHECK_TIMEOUT:-60}}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
case "$TIMEOUT" in ''|*[!0-9]*) echo "check_service_active: timeout must be whole seconds, got '$TIMEOUT'" >&2; exit 2 ;; esac

deadline=$(( $(date +%s) + TIMEOUT ))
state=unknown
while :; do
  state=$("$SYSTEMCTL" is-active "$SERVICE" 2>/dev/null)
  if [ "$state" = active ]; then
    echo "check_service_active: $SERVICE is active"
    exit 0
  fi
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 1
done

echo "check_service_active: $SERVICE is '$state', not active, after ${TIMEOUT}s" >&2
"$SYSTEMCTL" show -p ActiveState,SubState,Result,NRestarts,ExecMainStatus "$SERVICE" >&2 2>/dev/null || true
echo "--- journal (last 40 lines) ---" >&2
journalctl -u "$SERVICE" -n 40 --no-pager >&2 2>/dev/null || echo "(journal not available)" >&2
exit 1
