"""Who is calling a tool: the user, the scopes their token grants, where the call came from, and the transport's
hooks (progress, cancellation, an early answer)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apps.core.errors import ApplicationError
from apps.security import scopes

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user every score belongs to, the scopes granted, and where the call came from."""

    user: AbstractBaseUser
    scopes: frozenset[str]
    client_id: str | None = None
    ip: str | None = None
    transport: str = "internal"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # When the transport received the call (time.monotonic()): its time limit counts from here, so that a wait for
    # a thread to run it in is part of the limit too.
    arrived: float = field(default_factory=time.monotonic, compare=False)
    # Long tools (analyze_corpus) report progress here and stop at the next step once `cancelled` is set; the
    # transport wires both to its client (MCP progress notifications and cancellation).
    progress: Callable[[int, int, str], None] | None = field(default=None, compare=False, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    # A transport that can answer before the call's security events and clean-up passes `answer`: invoke_tool
    # calls it once with the outcome (the result, or the ApplicationError the call ends with) as soon as the
    # call's audit event is written and the call counted (see apps.mcp_bridge.server.until_answered).
    answer: Callable[[dict[str, Any] | ApplicationError], None] | None = field(default=None, compare=False, repr=False)
    # A staff member acting on `user`'s scores from the admin (Caller.administrator): the call is audited as theirs,
    # with `user` as its subject, and charged to their rate limits, never to the person's.
    staff: AbstractBaseUser | None = field(default=None, compare=False)

    @property
    def actor(self) -> AbstractBaseUser:
        """Who made the call, and is audited and charged for it: the staff member acting on the user's scores, else
        the user."""
        return self.staff or self.user

    @classmethod
    def operator(cls, user: AbstractBaseUser, *, transport: str = "cli") -> Caller:
        """An operator acting as `user` from the server itself (command line, stdio): every scope."""
        return cls(user=user, scopes=scopes.ALL, transport=transport)

    @classmethod
    def administrator(cls, staff: AbstractBaseUser, *, owner: AbstractBaseUser) -> Caller:
        """A staff member reading `owner`'s scores from the admin: read scope only, audited as the staff member's
        access (`admin.<tool>`) with the owner as its subject, never as the owner's own call."""
        if not staff.is_staff:
            raise ValueError("only staff act on another person's scores")
        return cls(user=owner, scopes=frozenset({scopes.READ}), transport="admin", staff=staff)
