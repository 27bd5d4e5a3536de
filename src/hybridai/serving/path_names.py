"""Names in a route's path pass the one allow-list (``protocol.names``) before the route runs.

Every route that takes a model name or version, a device id, a site, a stream or a stream in
its path refuses a name outside the allow-list with 400 ``invalid_name``, whatever narrower
rule the route adds after. The edge installs ``checked_path_names`` as an app-wide dependency
(its LAN credentials are checked before, in a middleware); the cloud calls
``check_path_names`` once a route has authorised its caller, so 401 and 403 come first.
A ``{name}`` is a model's only under ``/models/`` and ``/deployments/`` (elsewhere it names a
user or a role, which have their own rules).
"""

from __future__ import annotations

from fastapi import Request

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.names import InvalidName, NameKind, check_name

_KINDS: dict[str, NameKind] = {
    "version": "model version",
    "variant": "model variant",
    "device_id": "device id",
    "site": "site",
    "stream": "stream",
}
_MODEL_ROUTES = ("/models/{name}", "/deployments/{name}")


def _kind(param: str, template: str) -> NameKind | None:
    if param == "name":
        return "model name" if any(part in template for part in _MODEL_ROUTES) else None
    return _KINDS.get(param)


async def checked_path_names(request: Request) -> None:
    """As a dependency (the edge): every route, before it runs."""
    check_path_names(request)


def check_path_names(request: Request) -> None:
    """Refuse the request (400 ``invalid_name``) when a name in its path is not allowed."""
    template = str(getattr(request.scope.get("route"), "path", ""))
    for param, value in request.path_params.items():
        kind = _kind(param, template)
        if kind is None:
            continue
        try:
            check_name(kind, value)
        except InvalidName as exc:
            raise ApiError(400, ErrorCode.INVALID_NAME, str(exc)) from None
