#!/usr/bin/env bash
# Deploy tgstream on this host as a per-release install, or roll back to the previous release.
#
#   remote_deploy.sh --source DIR [--env FILE] [--release NAME] [--keep N] [--no-restart]
#   remote_deploy.sh --rollback [--no-restart]
#
# Layout (DEPLOY_ROOT, default /opt/tg_video_streamer):
#   releases/<release>/   venv/ (the package with its [tgstream] extra, at the versions of
#                         deploy/constraints-tgstream.txt), scripts/, deploy/, docs/, README.md,
#                         .env -> ../../shared/.env
#   shared/.env           the settings, mode 600, owner SERVICE_USER; survives releases, so a
#                         session regenerated on the host is kept by the next deploy
#   current -> releases/<release>     switched atomically (symlink to a temporary name, mv -T)
#   releases/.history     releases in the order they went live (for --rollback)
#
# The whole run holds flock on shared/.env.lock, the lock `tgstream session new --write-env`
# (and test/auto_session_runner.py) takes: the two never write .env at once.
# Running it twice with the same release is a no-op apart from the restart. `current` is only
# switched once the new release is complete and its `tgstream version` runs.
#
# Environment (defaults in brackets): DEPLOY_ROOT [/opt/tg_video_streamer],
# SERVICE_USER [tgstream], SERVICE_NAME [tg_video_streamer], SYSTEMCTL [systemctl],
# UNIT_DIR [/etc/systemd/system], PYTHON [python3], PIP_ARGS [] (extra `pip install` arguments,
# e.g. "--no-index --find-links /srv/wheels"), LOCK_TIMEOUT [120] seconds.
#
# Exit codes: 0 deployed (or rolled back); 1 failed, `current` unchanged (the message says why);
# 2 bad usage; 3 the new release is live but the service did not restart.
set -euo pipefail

DEPLOY_ROOT=${DEPLOY_ROOT:-/opt/tg_video_streamer}
SERVICE_USER=${SERVICE_USER:-tgstream}
SERVICE_NAME=${SERVICE_NAME:-tg_video_streamer}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}
LOCK_TIMEOUT=${LOCK_TIMEOUT:-120}

source_dir="" env_src="" release="" keep=5 rollback=0 restart=1 create_user=1

log() { printf '%s remote_deploy: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --source) source_dir=${2:?}; shift 2 ;;
    --env) env_src=${2:?}; shift 2 ;;
    --release) release=${2:?}; shift 2 ;;
    --keep) keep=${2:?}; shift 2 ;;
    --rollback) rollback=1; shift ;;
    --no-restart) restart=0; shift ;;
    --no-create-user) create_user=0; shift ;;
    -h|--help) usage ;;
    *) log "unknown argument: $1" >&2; usage ;;
  esac
done
case "$keep" in ''|*[!0-9]*) die "--keep needs a number, got '$keep'" ;; esac
[ "$keep" -ge 2 ] || die "--keep must be at least 2 (the live release and one to roll back to)"

[ "$(id -u)" -eq 0 ] || die "run as root: it creates $SERVICE_USER, writes $DEPLOY_ROOT and $UNIT_DIR, and restarts $SERVICE_NAME"

releases=$DEPLOY_ROOT/releases
shared=$DEPLOY_ROOT/shared
history=$releases/.history
mkdir -p "$releases" "$shared"
chmod 755 "$DEPLOY_ROOT" "$releases"

ensure_user() {
  if getent passwd "$SERVICE_USER" >/dev/null; then return; fi
  [ "$create_user" -eq 1 ] || die "user $SERVICE_USER does not exist and --no-create-user was given; create it: useradd --system --home-dir $DEPLOY_ROOT --shell /usr/sbin/nologin $SERVICE_USER"
  useradd --system --user-group --home-dir "$DEPLOY_ROOT" --no-create-home \
    --shell /usr/sbin/nologin "$SERVICE_USER" || die "cannot create the system user $SERVICE_USER"
  log "created the system user $SERVICE_USER"
}

take_lock() {
  exec 9>>"$shared/.env.lock"
  chmod 600 "$shared/.env.lock"
  if ! flock -w "$LOCK_TIMEOUT" 9; then
    die "$shared/.env is locked by another writer (a session runner or a deploy) for ${LOCK_TIMEOUT}s; let it finish and run this again"
  fi
}

install_env() {
  local target=$shared/.env
  if [ -n "$env_src" ]; then
    [ -f "$env_src" ] || die "--env $env_src: no such file"
    if [ -f "$target" ]; then
      cp -p "$target" "$target.bak-$(date -u +%Y%m%dT%H%M%SZ)"
      chmod 600 "$target".bak-*
    fi
    local tmp
    tmp=$(mktemp "$shared/.env.XXXXXX")
    cat "$env_src" >"$tmp"
    chown "$SERVICE_USER:$SERVICE_USER" "$tmp"
    chmod 600 "$tmp"
    sync -f "$tmp" 2>/dev/null || sync
    mv -f "$tmp" "$target"
    log "installed $env_src as $target"
  fi
  [ -f "$target" ] || die "no $target yet: pass --env FILE on the first deploy (copy .env.template and fill it in)"
  chown "$SERVICE_USER:$SERVICE_USER" "$target"
  chmod 600 "$target"
}

render_units() {
  local dir=$1 unit
  for unit in tg_video_streamer.service yt-dlp-update.service yt-dlp-update.timer; do
    sed -e "s#/opt/tg_video_streamer#$DEPLOY_ROOT#g" \
        -e "s#^User=tgstream#User=$SERVICE_USER#" -e "s#^Group=tgstream#Group=$SERVICE_USER#" \
        "$dir/deploy/systemd/$unit" >"$UNIT_DIR/.$unit.tmp"
    mv -f "$UNIT_DIR/.$unit.tmp" "$UNIT_DIR/$unit"
  done
  "$SYSTEMCTL" daemon-reload
  "$SYSTEMCTL" enable "$SERVICE_NAME.service" yt-dlp-update.timer >/dev/null 2>&1 \
    || "$SYSTEMCTL" enable --runtime "$SERVICE_NAME.service" yt-dlp-update.timer
  "$SYSTEMCTL" start yt-dlp-update.timer
}

switch_to() {
  local name=$1
  ln -sfn "releases/$name" "$DEPLOY_ROOT/.current.tmp"
  mv -T "$DEPLOY_ROOT/.current.tmp" "$DEPLOY_ROOT/current"
  if [ "$(tail -n 1 "$history" 2>/dev/null)" != "$name" ]; then
    echo "$name" >>"$history"
  fi
  log "current -> releases/$name"
}

restart_service() {
  [ "$restart" -eq 1 ] || { log "not restarting $SERVICE_NAME (--no-restart)"; return; }
  if ! "$SYSTEMCTL" restart "$SERVICE_NAME.service"; then
    log "ERROR: $SERVICE_NAME did not restart; see: journalctl -u $SERVICE_NAME -n 50" >&2
    exit 3
  fi
  log "restarted $SERVICE_NAME"
}

build_release() {
  local dir=$releases/$release
  if [ -d "$dir" ] && [ ! -e "$dir/.incomplete" ] && "$dir/venv/bin/tgstream" version >/dev/null 2>&1; then
    log "releases/$release is already built; reusing it"
    return
  fi
  ensure_user
  rm -rf "$dir"
  mkdir -p "$dir"
  chmod 755 "$dir"
  touch "$dir/.incomplete"
  log "building releases/$release from $source_dir"
  cp -a "$source_dir/scripts" "$source_dir/deploy" "$source_dir/ci" "$dir/"
  [ -d "$source_dir/test" ] && cp -a "$source_dir/test" "$dir/"
  [ -d "$source_dir/docs" ] && cp -a "$source_dir/docs" "$dir/"  # the manual (the units link it)
  cp "$source_dir/README.md" "$source_dir/.env.template" "$dir/" 2>/dev/null || true
  "$PYTHON" -m venv "$dir/venv" || die "cannot create a venv with $PYTHON (apt-get install python3-venv)"
  # The versions the tests ran against, never whatever is newest today (make constraints).
  local constraints=$source_dir/deploy/constraints-tgstream.txt
  [ -f "$constraints" ] || die "--source $source_dir has no deploy/constraints-tgstream.txt (make constraints writes it)"
  # shellcheck disable=SC2086 # PIP_ARGS is a list of arguments on purpose
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check $PIP_ARGS -c "$constraints" "${source_dir}[tgstream]" \
    || die "pip install into releases/$release failed (see above); current is unchanged"
  ln -sfn ../../shared/.env "$dir/.env"
  # As the service will run it: an interpreter the service user cannot reach (say, a pyenv
  # under /root) fails here, not at the restart.
  runuser -u "$SERVICE_USER" -- "$dir/venv/bin/tgstream" version >/dev/null \
    || die "the new release does not run as $SERVICE_USER (is $PYTHON readable by it? use PYTHON=/usr/bin/python3); current is unchanged"
  rm -f "$dir/.incomplete"
}

prune() {
  local live previous name
  live=$(readlink "$DEPLOY_ROOT/current" | sed 's#^releases/##')
  previous=$(grep -vx "$live" "$history" | tail -n 1 || true)
  # Oldest first, by the order they went live; never the live one or the rollback target.
  mapfile -t known < <(cd "$releases" && find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\n' | sort -n | cut -d' ' -f2)
  local excess=$(( ${#known[@]} - keep ))
  for name in "${known[@]}"; do
    [ "$excess" -gt 0 ] || break
    if [ "$name" = "$live" ] || [ "$name" = "$previous" ]; then continue; fi
    rm -rf "${releases:?}/$name"
    log "removed old release $name"
    excess=$((excess - 1))
  done
}

ensure_user
take_lock

if [ "$rollback" -eq 1 ]; then
  [ -L "$DEPLOY_ROOT/current" ] || die "nothing deployed yet: no $DEPLOY_ROOT/current"
  live=$(readlink "$DEPLOY_ROOT/current" | sed 's#^releases/##')
  target=$(grep -vx "$live" "$history" | tail -n 1 || true)
  if [ -z "$target" ] || [ ! -d "$releases/$target" ]; then
    die "no earlier release to roll back to (history: $history)"
  fi
  install_env
  switch_to "$target"
  # The live one goes to the end of the history, so a second --rollback returns to it.
  grep -vx "$live" "$history" >"$history.tmp" || true
  { cat "$history.tmp"; echo "$live"; echo "$target"; } >"$history"
  rm -f "$history.tmp"
  restart_service
  log "rolled back from $live to $target"
  exit 0
fi

[ -n "$source_dir" ] || usage
[ -f "$source_dir/pyproject.toml" ] || die "--source $source_dir is not a tgstream checkout (no pyproject.toml)"
source_dir=$(cd "$source_dir" && pwd)
if [ -z "$release" ]; then
  release=$(git -C "$source_dir" describe --always --dirty 2>/dev/null || date -u +%Y%m%dT%H%M%SZ)
fi
case "$release" in *[!A-Za-z0-9._-]*|.*) die "--release '$release': use letters, digits, . _ -" ;; esac

build_release
install_env
render_units "$releases/$release"
switch_to "$release"
restart_service
prune
log "deployed $release"
