"""Who may call the cloud's gRPC inference service: whoever may call its v2 REST routes.

People and automation send their API or access token as ``authorization: Bearer TOKEN``
metadata and need the same action as over REST (``V2_ACTION``); an MFA-pending login is
refused the same way. Devices reach the cloud's inference over REST with their certificate:
grpcio's server cannot ask for a client certificate without requiring one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool

from hybridai.cloud.context import Cloud
from hybridai.cloud.people import users
from hybridai.governance import rbac
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.serving.grpc_server import Admit, Need

V2_ACTION = "read"  # as cloud/app.py's _v2_access asks of people on the v2 routes


def _check(cloud: Cloud, authorization: str | None) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "missing credentials: send 'authorization: Bearer TOKEN' metadata (an API token, "
            "`hybridai token create`)",
        )
    with cloud.session() as session:
        keys = users.token_keys(cloud.settings.data_dir)
        person = users.authenticate(session, keys, token, time.time())
    if person is None:
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "unknown, revoked or expired credentials: check the token",
        )
    if person.scope != "full":
        raise ApiError(
            403,
            ErrorCode.MFA_REQUIRED,
            f"user '{person.name}' must enroll MFA before anything else: run "
            f"`hybridai user mfa-enroll {person.name}`, then `hybridai login` with --code",
        )
    if not rbac.may(person.role, V2_ACTION):
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            f"user '{person.name}' (role {person.role}) may not {V2_ACTION}; roles allowed: "
            f"{', '.join(sorted(rbac.ROLES_THAT_MAY[V2_ACTION]))}",
        )


def token_admit(cloud: Cloud) -> Admit:
    async def admit(need: Need, metadata: Mapping[str, str]) -> None:
        await run_in_threadpool(_check, cloud, metadata.get("authorization"))

    return admit
