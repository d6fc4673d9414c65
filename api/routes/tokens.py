"""API tokens, for admins (the CLI does the same: zoo token create|list|revoke)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from zoo.api.deps import AdminAccess, ServiceDep
from zoo.api.schemas import (
    ErrorPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    TokensPublic,
)
from zoo.service import tokens

router = APIRouter(prefix="/v1/tokens", tags=["tokens"],
                   responses={401: {"model": ErrorPublic}, 403: {"model": ErrorPublic}})


@router.get("", response_model=TokensPublic)
def list_tokens(service: ServiceDep, _: AdminAccess) -> TokensPublic:
    """Every token (never its secret)."""
    found = tokens.list_tokens(service.engine)
    return TokensPublic(data=[TokenPublic.from_info(t) for t in found], count=len(found))


@router.post("", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, service: ServiceDep, _: AdminAccess) -> TokenCreated:
    """A new token; its secret appears in this answer only."""
    secret, info = tokens.create_token(service.engine, body.scope, body.name)
    return TokenCreated(**TokenPublic.from_info(info).model_dump(), token=secret)


@router.delete("/{token_id}", response_model=TokenPublic, responses={404: {"model": ErrorPublic}})
def revoke_token(token_id: Annotated[str, Path(max_length=32)], service: ServiceDep, _: AdminAccess) -> TokenPublic:
    """Revoke a token: it stops working at once."""
    return TokenPublic.from_info(tokens.revoke_token(service.engine, token_id))
