"""The governance layer: who people are, what they may do, and a tamper-evident record of it.

One idea per module: ``passwords`` (argon2id), ``mfa`` (TOTP), ``access_tokens`` (short-lived
signed tokens), ``rbac`` (the table of roles and actions), ``throttle`` (login throttling),
``audit`` (the hash-chained audit log) and ``policies`` (data classification,
pseudonymisation and retention). The cloud and the edge both build on it; it imports only
``storage`` (for the audit log's tables) and ``protocol``.
"""
