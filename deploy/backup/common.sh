# Shared by the backup and restore scripts (sourced, not run).
# shellcheck shell=bash
# MANAGE_CMD is set here for the scripts that source this file.
# shellcheck disable=SC2034

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# DATABASE_URL from the environment, from DATABASE_URL_FILE, or from the DATABASE_URL= line of ENV_FILE
# (default /etc/music21/env when readable). Prints it with a scheme libpq accepts.
database_url() {
    local url="${DATABASE_URL:-}"
    if [[ -z $url && -n ${DATABASE_URL_FILE:-} ]]; then
        url="$(<"$DATABASE_URL_FILE")"
    fi
    local env_file="${ENV_FILE:-/etc/music21/env}"
    if [[ -z $url && -r $env_file ]]; then
        url="$(sed -n 's/^[[:space:]]*DATABASE_URL=//p' "$env_file" | tail -n 1)"
        url="${url%\"}"; url="${url#\"}"; url="${url%\'}"; url="${url#\'}"
    fi
    [[ -n $url ]] || die "DATABASE_URL is not set (nor DATABASE_URL_FILE, nor in ${env_file})"
    case "$url" in
        postgres://*|postgresql://*) ;;
        pgsql://*|psql://*) url="postgresql://${url#*://}" ;;
        *) die "DATABASE_URL must be a PostgreSQL URL (postgres://user:pass@host:5432/db)" ;;
    esac
    printf '%s\n' "$url"
}

# The URL with its password masked, for messages.
url_redacted() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# MANAGE: how to run manage.py here, as one string split on spaces. Defaults: music21-manage (systemd hosts,
# deploy/systemd/music21-manage) when installed, else `python manage.py` in the current directory. Examples:
#   compose:    MANAGE="docker compose -f deploy/docker-compose.yml run --rm --no-deps -T app python manage.py"
#   Kubernetes: MANAGE="kubectl -n music21 exec -i deploy/music21-web -c web -- env -u PROMETHEUS_MULTIPROC_DIR python manage.py"
manage_command() {
    if [[ -n ${MANAGE:-} ]]; then
        read -r -a MANAGE_CMD <<<"$MANAGE"
    elif command -v music21-manage >/dev/null 2>&1; then
        MANAGE_CMD=(music21-manage)
    else
        MANAGE_CMD=(python manage.py)
    fi
}

# Keeps the newest $2 files matching the glob $1 in directory $3 (names sort by their UTC timestamp), with their
# .sha256 files.
prune() {
    local pattern="$1" keep="$2" dir="$3" old
    [[ $keep =~ ^[1-9][0-9]*$ ]] || die "BACKUP_KEEP must be a positive integer, got '$keep'"
    while IFS= read -r old; do
        [[ -n $old ]] || continue
        rm -f -- "$old" "$old.sha256"
        echo "removed old backup $old"
    done < <(find "$dir" -maxdepth 1 -type f -name "$pattern" | sort -r | tail -n +"$((keep + 1))")
}

# Writes NAME.sha256 beside NAME (checkable with `sha256sum -c` from that directory).
checksum_write() {
    local file="$1"
    (cd "$(dirname "$file")" && sha256sum "$(basename "$file")" >"$(basename "$file").sha256")
}

# Checks FILE against FILE.sha256 when it exists.
checksum_check() {
    local file="$1"
    if [[ -f $file.sha256 ]]; then
        (cd "$(dirname "$file")" && sha256sum --quiet -c "$(basename "$file").sha256") \
            || die "checksum mismatch for $file"
        echo "checksum ok: $file"
    else
        echo "warning: no $file.sha256, integrity not checked" >&2
    fi
}

# Asks for confirmation unless ASSUME_YES=1.
confirm() {
    [[ ${ASSUME_YES:-0} == 1 ]] && return 0
    [[ -t 0 ]] || die "refusing to continue without a terminal; pass --yes"
    local answer
    read -r -p "$1 Type 'yes' to continue: " answer
    [[ $answer == yes ]] || die "cancelled"
}
