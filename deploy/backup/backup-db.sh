#!/usr/bin/env bash
# Dumps the platform's PostgreSQL database (pg_dump custom format) with a checksum, and keeps the newest N dumps.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'USAGE'
Usage: backup-db.sh [-h]

Dumps the database of DATABASE_URL to $BACKUP_DIR/music21-db-YYYYmmddTHHMMSSZ.dump (pg_dump --format=custom),
writes a .sha256 beside it, checks the dump is readable, and deletes all but the newest $BACKUP_KEEP dumps.

Environment:
  DATABASE_URL   postgres://user:pass@host:5432/db; else DATABASE_URL_FILE, else the DATABASE_URL= line of
                 ENV_FILE (default /etc/music21/env). Note: the URL is on pg_dump's command line; on a shared host
                 put the password in ~/.pgpass instead and leave it out of the URL.
  BACKUP_DIR     where dumps go (default /var/backups/music21)
  BACKUP_KEEP    how many dumps to keep (default 14)
  PG_DUMP        the pg_dump command, at least the server's major version (default pg_dump). Compose:
                   PG_DUMP="docker compose -f deploy/docker-compose.yml exec -T postgres pg_dump" \
                   DATABASE_URL=postgres://music21@localhost/music21 deploy/backup/backup-db.sh
  PG_RESTORE     the pg_restore command used to check the dump (default pg_restore; skipped when absent)
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 64; }

url="$(database_url)"
backup_dir="${BACKUP_DIR:-/var/backups/music21}"
keep="${BACKUP_KEEP:-14}"
read -r -a pg_dump <<<"${PG_DUMP:-pg_dump}"
read -r -a pg_restore <<<"${PG_RESTORE:-pg_restore}"

umask 077
mkdir -p "$backup_dir"
name="music21-db-$(date -u +%Y%m%dT%H%M%SZ).dump"
final="$backup_dir/$name"
partial="$backup_dir/.$name.partial"
trap 'rm -f "$partial"' EXIT

echo "dumping $(url_redacted "$url") to $final"
# Through stdout, so that PG_DUMP may run in another container.
"${pg_dump[@]}" --format=custom --compress=6 --dbname="$url" >"$partial"
[[ -s $partial ]] || die "pg_dump wrote nothing"

if command -v "${pg_restore[0]}" >/dev/null 2>&1; then
    "${pg_restore[@]}" --list <"$partial" >/dev/null || die "the dump cannot be read back by pg_restore"
fi

mv -- "$partial" "$final"
checksum_write "$final"
echo "wrote $final ($(du -h "$final" | cut -f1)) and $name.sha256"

prune 'music21-db-*.dump' "$keep" "$backup_dir"
