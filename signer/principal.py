"""Who is acting: a signed-in person, a document system's API client, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from signer.models import Role


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "api_client", "system", "anonymous"
    id: str
    organisation_id: str | None
    roles: frozenset[Role] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    name: str = ""

    @property
    def ref(self) -> str:
        """How the audit log names this actor."""
        return f"{self.kind}:{self.id}" if self.id else self.kind

    def has_any_role(self, roles: frozenset[Role] | set[Role]) -> bool:
        return bool(self.roles & roles)


SYSTEM = Principal(kind="system", id="", organisation_id=None, roles=frozenset(Role), name="system")
ANONYMOUS = Principal(kind="anonymous", id="", organisation_id=None)
