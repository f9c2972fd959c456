#!/bin/sh
# Entrypoint of the music21 platform image.
#
# 1. Empties PROMETHEUS_MULTIPROC_DIR (metric files of a previous run would be added to this one's) and creates it.
# 2. Runs the command. Shortcuts:
#      web      uvicorn with WEB_WORKERS workers (default 2) on port 8000; MIGRATE_ON_START=true migrates first
#      worker   Celery worker, WORKER_CONCURRENCY processes (default 2)
#      beat     Celery beat (django-celery-beat's database scheduler; run exactly one)
#      migrate  manage.py migrate --noinput (the one-shot migration job)
#    Anything else is executed as given, e.g. `python manage.py createsuperuser`.
set -eu

dir="${PROMETHEUS_MULTIPROC_DIR:-}"
if [ -n "$dir" ]; then
    case "$dir" in
        /|/app|/app/*|/home|/home/*|/usr|/usr/*|/etc|/etc/*)
            echo "docker-entrypoint: refusing to empty PROMETHEUS_MULTIPROC_DIR=$dir" >&2
            exit 64 ;;
    esac
    mkdir -p "$dir"
    # The contents, not the directory: it may be a mount point.
    find "$dir" -mindepth 1 -delete
fi

log_level="${LOG_LEVEL:-INFO}"

case "${1:-web}" in
    web)
        if [ "${MIGRATE_ON_START:-false}" = "true" ]; then
            python manage.py migrate --noinput
        fi
        exec uvicorn music21_platform.asgi:application \
            --host 0.0.0.0 --port 8000 \
            --workers "${WEB_WORKERS:-2}" \
            --http music21_platform.http:NoDelayHTTPProtocol \
            --timeout-graceful-shutdown "${WEB_GRACEFUL_TIMEOUT:-30}" \
            --no-server-header
        ;;
    worker)
        exec celery -A music21_platform worker --loglevel="$log_level" --concurrency="${WORKER_CONCURRENCY:-2}"
        ;;
    beat)
        exec celery -A music21_platform beat --loglevel="$log_level"
        ;;
    migrate)
        exec python manage.py migrate --noinput
        ;;
    *)
        exec "$@"
        ;;
esac
