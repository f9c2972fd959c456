#!/usr/bin/env bash
# Archives the platform's configuration: env files, Kubernetes config, periodic-task schedules, retention policies.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'USAGE'
Usage: backup-config.sh [-h]

Writes $BACKUP_DIR/music21-config-YYYYmmddTHHMMSSZ.tar.gz (mode 0600: it holds secrets) with a .sha256, containing
  files/...       each of CONFIG_FILES that exists (default: /etc/music21/env and deploy/.env of this checkout)
  k8s.yaml        the ConfigMap music21-config and Secret music21-secrets, when K8S_NAMESPACE is set
  schedules.json  manage.py dumpdata django_celery_beat compliance.retentionpolicy --indent 2
and keeps the newest $BACKUP_KEEP archives.

Environment:
  BACKUP_DIR     default /var/backups/music21
  BACKUP_KEEP    default 14
  CONFIG_FILES   space-separated paths
  K8S_NAMESPACE  e.g. music21 (uses kubectl's current context)
  MANAGE         how to run manage.py (default: music21-manage if installed, else `python manage.py`), e.g.
                 "docker compose -f deploy/docker-compose.yml run --rm --no-deps -T app python manage.py"
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 64; }

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
backup_dir="${BACKUP_DIR:-/var/backups/music21}"
keep="${BACKUP_KEEP:-14}"
read -r -a config_files <<<"${CONFIG_FILES:-/etc/music21/env $deploy_dir/.env}"
manage_command

umask 077
mkdir -p "$backup_dir"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/files"

for f in "${config_files[@]}"; do
    if [[ -f $f ]]; then
        abs="$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
        mkdir -p "$stage/files$(dirname "$abs")"
        cp -p -- "$abs" "$stage/files$abs"
        echo "added $abs"
    fi
done

if [[ -n ${K8S_NAMESPACE:-} ]]; then
    kubectl -n "$K8S_NAMESPACE" get configmap/music21-config secret/music21-secrets -o yaml >"$stage/k8s.yaml"
    echo "added ConfigMap and Secret of namespace $K8S_NAMESPACE"
fi

"${MANAGE_CMD[@]}" dumpdata django_celery_beat compliance.retentionpolicy --indent 2 >"$stage/schedules.json"
[[ -s $stage/schedules.json ]] || die "dumpdata wrote nothing"
echo "added schedules.json (periodic tasks and retention policies)"

archive="$backup_dir/music21-config-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
tar -C "$stage" -czf "$archive" .
chmod 0600 "$archive"
checksum_write "$archive"
echo "wrote $archive"

prune 'music21-config-*.tar.gz' "$keep" "$backup_dir"
