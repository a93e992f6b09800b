"""API tokens, found by the sha256 of the secret a client presents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from fleet.domain.records import ApiToken, Role
from fleet.store.errors import NotFound
from fleet.store.repositories.base import SqlRepository
from fleet.store.tables import ApiTokenRow

__all__ = ["SqlTokenRepository"]


class SqlTokenRepository(SqlRepository):
    def add(self, token: ApiToken) -> None:
        self._insert(
            [
                ApiTokenRow(
                    token_sha256=token.token_sha256,
                    name=token.name,
                    role=token.role.value,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                )
            ]
        )

    def get(self, token_sha256: str) -> ApiToken | None:
        row = self._session.get(ApiTokenRow, token_sha256)
        return None if row is None else _token(row)

    def all(self) -> Sequence[ApiToken]:
        rows = self._session.exec(select(ApiTokenRow).order_by(col(ApiTokenRow.created_at)))
        return [_token(row) for row in rows]

    def revoke(self, token_sha256: str, *, at: datetime) -> None:
        # Revoking twice keeps the first moment: that is when the token stopped working.
        result = self._session.exec(
            update(ApiTokenRow)
            .where(col(ApiTokenRow.token_sha256) == token_sha256)
            .where(col(ApiTokenRow.revoked_at).is_(None))
            .values(revoked_at=at)
        )
        if result.rowcount == 0 and self._session.get(ApiTokenRow, token_sha256) is None:
            raise NotFound(f"no token {token_sha256[:12]}…")


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        token_sha256=row.token_sha256,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
