#!/usr/bin/env bash
# Restores a dump written by backup-db.sh over the platform's database, then migrates and verifies the audit chain.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'USAGE'
Usage: restore-db.sh [--yes] DUMP_FILE

Replaces the contents of the database of DATABASE_URL with DUMP_FILE (pg_restore --clean --if-exists, in one
transaction: on any error nothing changes), then runs `manage.py migrate --noinput` and
`manage.py verify_audit_chain`. Stop web, worker and beat first; start them afterwards.

  --yes   do not ask for confirmation

Environment: DATABASE_URL (or DATABASE_URL_FILE, or ENV_FILE) as for backup-db.sh;
  PG_RESTORE  the pg_restore command (default pg_restore), e.g.
              "docker compose -f deploy/docker-compose.yml exec -T postgres pg_restore"
  MANAGE      how to run manage.py (default: music21-manage if installed, else `python manage.py`), e.g.
              "docker compose -f deploy/docker-compose.yml run --rm --no-deps -T app python manage.py"
USAGE
}

ASSUME_YES=0
dump=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --yes|-y) ASSUME_YES=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; exit 64 ;;
        *) [[ -z $dump ]] || { usage >&2; exit 64; }; dump="$1" ;;
    esac
    shift
done
[[ -n $dump ]] || { usage >&2; exit 64; }
[[ -f $dump ]] || die "no such file: $dump"

url="$(database_url)"
read -r -a pg_restore <<<"${PG_RESTORE:-pg_restore}"
manage_command

checksum_check "$dump"
confirm "This REPLACES every table of $(url_redacted "$url") with $dump. Web, worker and beat must be stopped."

echo "restoring $dump"
"${pg_restore[@]}" --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
    --dbname="$url" <"$dump"

echo "applying migrations newer than the dump"
"${MANAGE_CMD[@]}" migrate --noinput

echo "verifying the audit chain"
if ! "${MANAGE_CMD[@]}" verify_audit_chain; then
    die "restored, but the audit chain does not verify: see docs/operations.md#audit-verification"
fi
echo "restore complete; start web, worker and beat"
