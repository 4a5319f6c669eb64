"""Registry credentials as callers hand them to pulls and pushes."""

from __future__ import annotations

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = ["Credentials"]


@attrs.frozen(repr=False)
class Credentials:
    """A user name and password, or an identity (refresh) token for OAuth registries.

    The repr hides secrets so credentials never end up in logs by accident.
    """

    username: str = ""
    password: str = attrs.field(default="")
    identity_token: str = ""
    registry_token: str = ""

    def __attrs_post_init__(self) -> None:
        if self.password and not self.username:
            raise InvalidArgument("credentials have a password but no username; give both")

    @property
    def anonymous(self) -> bool:
        """True when no secret of any kind is set."""
        return not (self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        hidden = "***" if not self.anonymous else ""
        return f"Credentials(username={self.username!r}, secret={hidden!r})"
