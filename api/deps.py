"""Dependencies of the routes, as ``Annotated`` aliases: the service, and access
by token scope (reads are open unless ``ZOO_READ_AUTH`` is set)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zoo import errors
from zoo.service.core import Service
from zoo.service.tokens import TokenInfo, verify_token

_bearer = HTTPBearer(auto_error=False, description="an API token from `zoo token create --scope SCOPE`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def _token(service: Service, credentials: HTTPAuthorizationCredentials | None, scope: str) -> TokenInfo:
    if credentials is None or not credentials.credentials:
        raise errors.UnauthorizedError(f"this operation needs a token with the {scope} scope",
                                       hint="send 'Authorization: Bearer TOKEN'; create one with "
                                            f"`zoo token create --scope {scope}`")
    token = await run_in_threadpool(verify_token, service.engine, credentials.credentials)
    if not token.allows(scope):
        raise errors.ForbiddenError(f"token {token.id} has the {token.scope} scope; this operation needs {scope}",
                                    hint=f"use a token created with --scope {scope}")
    return token


async def require_read(service: ServiceDep, credentials: Credentials) -> TokenInfo | None:
    if not service.settings.read_auth:
        return None
    return await _token(service, credentials, "read")


async def require_write(service: ServiceDep, credentials: Credentials) -> TokenInfo:
    return await _token(service, credentials, "write")


async def require_admin(service: ServiceDep, credentials: Credentials) -> TokenInfo:
    return await _token(service, credentials, "admin")


async def optional_read(service: ServiceDep, credentials: Credentials) -> TokenInfo | None:
    """The caller's read token, or None for an anonymous caller (reads are open unless ``ZOO_READ_AUTH``).
    A token that is not zoo's (a client sending its own HF token to the mirror) counts as anonymous."""
    if service.settings.read_auth:
        return await _token(service, credentials, "read")
    if credentials is None or not credentials.credentials:
        return None
    try:
        return await _token(service, credentials, "read")
    except (errors.UnauthorizedError, errors.ForbiddenError):
        return None


ReadAccess = Annotated[TokenInfo | None, Depends(require_read)]
OptionalReader = Annotated[TokenInfo | None, Depends(optional_read)]
WriteAccess = Annotated[TokenInfo, Depends(require_write)]
AdminAccess = Annotated[TokenInfo, Depends(require_admin)]
