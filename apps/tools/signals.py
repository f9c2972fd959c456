"""Every change to a user's scores renews the stamp of their scores once it is committed, so that no process uses a
score row it kept from before the change (apps.tools.selectors.score_get). Deletions in bulk (erasure, retention)
send these signals for each row too, since receivers are connected."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from apps.security.guards import stamp_renew
from apps.tools.models import Score
from apps.tools.selectors import scores_stamp_name


def _scores_changed(sender: Any, instance: Score, **kwargs: Any) -> None:
    name = scores_stamp_name(instance.owner_id)
    transaction.on_commit(lambda: stamp_renew(name))


def signals_connect() -> None:
    post_save.connect(_scores_changed, sender=Score, dispatch_uid="scores-stamp-save")
    post_delete.connect(_scores_changed, sender=Score, dispatch_uid="scores-stamp-delete")
