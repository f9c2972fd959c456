"""Records that name a person only by what someone typed into a sign-in form: her username or her e-mail address,
in whatever case. A failed sign-in has no user (django-axes' records, and the `login_failure` security event, keep
the name typed), so the inventory, the export and the erasure find such records by her names, alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def names_of(user: AbstractBaseUser) -> list[str]:
    """The names the person signs in with: her username and her e-mail address."""
    return [name for name in {user.get_username(), getattr(user, "email", "")} if name]


def typed_as(user: AbstractBaseUser, field: str) -> Q:
    """The records whose `field` holds one of the person's names, in any case."""
    typed = Q(pk__in=[])
    for name in names_of(user):
        typed |= Q(**{f"{field}__iexact": name})
    return typed


def security_events_of(user: AbstractBaseUser) -> Q:
    """The person's security events: those of her account, and failed sign-ins typed with one of her names."""
    return Q(user=user) | typed_as(user, "detail__username")
