#!/usr/bin/env bash
# Restores the periodic-task schedules and retention policies from an archive of backup-config.sh, and unpacks its
# env files and Kubernetes config for the operator to put back.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'USAGE'
Usage: restore-config.sh [--yes] [--replace] ARCHIVE

Loads schedules.json (django-celery-beat schedules and retention policies) with `manage.py loaddata`: rows with the
same primary key are overwritten, others added. The env files and k8s.yaml are unpacked into a directory that is
printed, to be compared and copied back by hand (they hold secrets; nothing is overwritten automatically).

  --replace  first delete every periodic task, schedule and retention policy, then load (in one transaction):
             the database ends up with exactly the archived configuration. Use it when loaddata reports a
             unique-constraint conflict (a task or policy created since, under another id).
  --yes      do not ask for confirmation

Environment: MANAGE as for backup-config.sh. Restart beat afterwards.
USAGE
}

ASSUME_YES=0
replace=0
archive=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --yes|-y) ASSUME_YES=1 ;;
        --replace) replace=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; exit 64 ;;
        *) [[ -z $archive ]] || { usage >&2; exit 64; }; archive="$1" ;;
    esac
    shift
done
[[ -n $archive ]] || { usage >&2; exit 64; }
[[ -f $archive ]] || die "no such file: $archive"
manage_command

checksum_check "$archive"
umask 077
out="$(mktemp -d "${TMPDIR:-/tmp}/music21-config-restore.XXXXXX")"
# The unpacked files hold secrets: kept for the operator only when the restore succeeded.
trap '[[ $? -eq 0 ]] || rm -rf "$out"' EXIT
tar -C "$out" -xzf "$archive"
[[ -s $out/schedules.json ]] || die "$archive has no schedules.json"

if [[ $replace == 1 ]]; then
    confirm "This DELETES every periodic task, schedule and retention policy, then loads those of $archive."
    # loaddata reads the fixture from stdin ("-"), so that MANAGE may run in a container or pod.
    "${MANAGE_CMD[@]}" shell -c '
from django.core.management import call_command
from django.db import transaction
from django_celery_beat.models import (
    ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks, SolarSchedule,
)
from apps.compliance.models import RetentionPolicy

with transaction.atomic():
    PeriodicTask.objects.all().delete()
    for model in (CrontabSchedule, IntervalSchedule, SolarSchedule, ClockedSchedule, RetentionPolicy):
        model.objects.all().delete()
    call_command("loaddata", "-", format="json")
PeriodicTasks.update_changed()
' <"$out/schedules.json"
else
    confirm "This loads the periodic tasks and retention policies of $archive over the current ones."
    "${MANAGE_CMD[@]}" loaddata --format=json - <"$out/schedules.json"
fi
echo "schedules and retention policies restored; restart beat"

echo "unpacked into $out:"
(cd "$out" && find . -type f ! -name schedules.json | sed 's#^\./#  #')
echo "compare them with the live ones, copy back what is needed (systemd: install -m 0640 -g music21 FILE"
echo "/etc/music21/env; Kubernetes: kubectl apply -f k8s.yaml), then: rm -rf $out"
