"""The RBAC table: who may do what, and docs/rbac.md generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridai.governance import rbac

ROOT = Path(__file__).parents[2]


def test_rbac_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "rbac.md").read_text()
    assert committed == rbac.markdown(), "run `make docs`"


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("admin", {"read", "train", "operate", "audit", "admin", "account"}),
        ("operator", {"read", "operate", "audit", "account"}),
        ("data-scientist", {"read", "train", "account"}),
        ("viewer", {"read", "account"}),
        ("device", set()),
        ("", set()),
    ],
)
def test_each_role_may_exactly_its_actions(role: str, allowed: set[str]) -> None:
    assert {a.name for a in rbac.ACTIONS if rbac.may(role, a.name)} == allowed


def test_unknown_actions_are_allowed_to_nobody() -> None:
    assert not any(rbac.may(role, "delete-everything") for role in rbac.ROLES)


def test_privileged_roles_need_mfa() -> None:
    assert {"admin", "operator"} == rbac.MFA_REQUIRED


def test_cloud_auth_uses_this_table() -> None:
    from hybridai.cloud import auth

    assert auth.ROLES_THAT_MAY is rbac.ROLES_THAT_MAY
