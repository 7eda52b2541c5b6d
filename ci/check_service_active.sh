#!/usr/bin/env bash
# After a deploy: wait until the service is active and stays up (FR-009, SC-002).
#
#   check_service_active.sh [SERVICE] [TIMEOUT_SECONDS]
#
# Polls `systemctl is-active SERVICE` (default tg_video_streamer) every second for up to
# TIMEOUT_SECONDS (default 60, or CHECK_TIMEOUT). Active counts only once it has stayed active
# for STABLE_SECONDS (default 5) without a restart: a crash-looping unit is briefly "active"
# after each restart and must not pass. Exit codes: 0 active and stable; 1 not, within the
# timeout (the last state, the unit's properties and the tail of its journal are printed);
# 2 bad usage.
set -uo pipefail

SERVICE=${1:-${SERVICE_NAME:-tg_video_streamer}}
TIMEOUT=${2:-${CHECK_TIMEOUT:-60}}
STABLE=${STABLE_SECONDS:-5}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
for n in "$TIMEOUT" "$STABLE"; do
  case "$n" in ''|*[!0-9]*) echo "check_service_active: seconds must be whole numbers, got '$n'" >&2; exit 2 ;; esac
done

restarts() { "$SYSTEMCTL" show -p NRestarts --value "$SERVICE" 2>/dev/null; }

deadline=$(( $(date +%s) + TIMEOUT ))
state=unknown since="" seen=""
while :; do
  state=$("$SYSTEMCTL" is-active "$SERVICE" 2>/dev/null)
  now=$(date +%s)
  if [ "$state" = active ]; then
    count=$(restarts)
    if [ -z "$since" ] || [ "$count" != "$seen" ]; then
      since=$now seen=$count
    elif [ $(( now - since )) -ge "$STABLE" ]; then
      echo "check_service_active: $SERVICE is active (stable for ${STABLE}s)"
      exit 0
    fi
  else
    since=""
  fi
  [ "$now" -lt "$deadline" ] || break
  sleep 1
done

echo "check_service_active: $SERVICE is '$state', not active and stable for ${STABLE}s, after ${TIMEOUT}s" >&2
"$SYSTEMCTL" show -p ActiveState,SubState,Result,NRestarts,ExecMainStatus "$SERVICE" >&2 2>/dev/null || true
echo "--- journal (last 40 lines) ---" >&2
journalctl -u "$SERVICE" -n 40 --no-pager >&2 2>/dev/null || echo "(journal not available)" >&2
exit 1
