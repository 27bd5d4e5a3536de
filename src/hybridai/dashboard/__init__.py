"""The operators' web pages, served by the cloud under ``/ui``.

Server-rendered (Jinja2) from the cloud's own services, behind the API's login, MFA and RBAC:
a cookie session holds the access token, every asset is served from this package (no CDN),
and a small script refreshes the live parts of a page by polling it.
"""
