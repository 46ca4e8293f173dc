"""billing/manage_users.py: one context per edge case."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from billing import manage_users
from billing.manage_users import (COLUMNS, authenticate, create_user, create_users, require_role,
                                  set_user_active, user_for_login)
from data.db import connect

T = dt.datetime
AT = T(2024, 1, 1, 9)
PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch):
    """Cheap bcrypt rounds keep the tests quick; the hash format and checks are the same."""
    monkeypatch.setattr(manage_users, "BCRYPT_ROUNDS", 4)


@pytest.fixture
def con():
    return connect(":memory:")


def test_agent_is_created_with_a_salted_bcrypt_hash_and_can_sign_in(con):
    res = create_user(con, login="Ann", display_name="Ann Agent", password=PASSWORD, role="agent", agent_tier=2, at=AT)
    assert res.ok and res["user_id"] == 1
    stored = con.execute("SELECT login, password_hash, role, agent_tier, is_active, created_at FROM users").fetchall()[0]
    assert stored[0] == "ann" and stored[2:] == ("agent", 2, True, AT)
    assert stored[1].startswith("$2") and PASSWORD not in stored[1]
    create_user(con, login="bob", display_name="Bob", password=PASSWORD, role="agent", agent_tier=1, at=AT)
    hashes = [h for (h,) in con.execute("SELECT password_hash FROM users").fetchall()]
    assert hashes[0] != hashes[1]                                   # salted: same password, other hash
    signed = authenticate(con, " ANN ", PASSWORD)
    assert signed.ok
    assert {k: signed[k] for k in ("user_id", "role", "agent_tier", "display_name")} == \
        {"user_id": 1, "role": "agent", "agent_tier": 2, "display_name": "Ann Agent"}


def test_unknown_login_and_wrong_password_get_the_same_answer(con):
    create_user(con, login="ann", display_name="Ann", password=PASSWORD, role="analyst", at=AT)
    unknown = authenticate(con, "nobody", PASSWORD)
    wrong = authenticate(con, "ann", "incorrect horse")
    assert not unknown.ok and not wrong.ok
    assert (unknown.code, unknown.message, unknown.data) == (wrong.code, wrong.message, wrong.data)


def test_user_without_a_password_cannot_sign_in(con):
    create_user(con, login="sim", display_name="Simulated", password=None, role="agent", agent_tier=1, at=AT)
    res = authenticate(con, "sim", "")
    assert res.code == "not_permitted" and res.message == authenticate(con, "nobody", "x").message


def test_password_longer_than_bcrypt_accepts_is_refused_at_sign_up_and_sign_in(con):
    res = create_user(con, login="long", display_name="Long", password="x" * 73, role="analyst", at=AT)
    assert (res.code, res["why_not"]) == ("invalid_input", "password_too_long")
    create_user(con, login="ann", display_name="Ann", password="y" * 72, role="analyst", at=AT)
    assert authenticate(con, "ann", "y" * 72).ok
    assert not authenticate(con, "ann", "y" * 72 + "z").ok


def test_disabled_user_is_refused_even_with_the_right_password_and_can_be_enabled_again(con):
    create_user(con, login="root", display_name="Root", password=PASSWORD, role="admin", at=AT)
    uid = create_user(con, login="ann", display_name="Ann", password=PASSWORD, role="agent", agent_tier=1,
                      at=AT)["user_id"]
    assert set_user_active(con, user_id=uid, is_active=False, at=AT, by_user_id=1).ok
    res = authenticate(con, "ann", PASSWORD)
    assert res.code == "not_permitted" and "disabled" in res.message
    assert "disabled" not in authenticate(con, "ann", "wrong password").message   # no hint without the password
    assert set_user_active(con, user_id=uid, is_active=True, at=AT, by_user_id=1).ok
    assert authenticate(con, "ann", PASSWORD).ok
    assert [a for (a,) in con.execute("SELECT action FROM audit_log ORDER BY audit_id").fetchall()] == \
        ["disable_user", "enable_user"]


def test_setting_the_same_state_again_changes_nothing(con):
    create_user(con, login="root", display_name="Root", password=None, role="admin", at=AT)
    uid = create_user(con, login="ann", display_name="Ann", password=None, role="analyst", at=AT)["user_id"]
    res = set_user_active(con, user_id=uid, is_active=True, at=AT)
    assert res.ok and res["changed"] is False
    assert con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0] == 0


def test_the_last_active_admin_cannot_be_disabled(con):
    uid = create_user(con, login="root", display_name="Root", password=None, role="admin", at=AT)["user_id"]
    assert set_user_active(con, user_id=uid, is_active=False, at=AT).code == "invalid_input"
    create_user(con, login="root2", display_name="Root 2", password=None, role="admin", at=AT)
    assert set_user_active(con, user_id=uid, is_active=False, at=AT).ok


def test_only_an_admin_may_disable_or_create_users(con):
    create_user(con, login="root", display_name="Root", password=None, role="admin", at=AT)
    lead = create_user(con, login="lead", display_name="Lead", password=None, role="leader", at=AT)["user_id"]
    assert set_user_active(con, user_id=1, is_active=False, at=AT, by_user_id=lead).code == "not_permitted"
    res = create_user(con, login="x", display_name="X", password=None, role="analyst", at=AT, created_by=lead)
    assert res.code == "not_permitted"
    res = create_user(con, login="x", display_name="X", password=None, role="analyst", at=AT, created_by=1)
    assert res.ok
    assert con.execute("SELECT user_id, action, entity_id FROM audit_log").fetchall() == [(1, "create_user", "3")]


def test_unknown_user_cannot_be_enabled(con):
    assert set_user_active(con, user_id=9, is_active=True, at=AT).code == "not_found"


@pytest.mark.parametrize("fields, why_not", [
    ({"role": "agent", "agent_tier": None}, "tier_required"),
    ({"role": "agent", "agent_tier": 4}, "invalid_tier"),
    ({"role": "agent", "agent_tier": 0}, "invalid_tier"),
    ({"role": "analyst", "agent_tier": 2}, "invalid_tier"),
    ({"role": "boss"}, "invalid_role"),
    ({"password": "short"}, "password_too_short"),
    ({"login": "  "}, "missing_login"),
    ({"display_name": ""}, "missing_display_name"),
])
def test_invalid_user_is_refused_and_nothing_written(con, fields, why_not):
    args = {"login": "ann", "display_name": "Ann", "password": PASSWORD, "role": "agent", "agent_tier": 1, **fields}
    res = create_user(con, at=AT, **args)
    assert (res.code, res["why_not"]) == ("invalid_input", why_not)
    assert con.execute("SELECT count(*) FROM users").fetchall()[0][0] == 0


def test_login_is_unique_ignoring_case_and_spaces(con):
    assert create_user(con, login="ann", display_name="Ann", password=None, role="analyst", at=AT).ok
    res = create_user(con, login=" ANN", display_name="Other Ann", password=None, role="analyst", at=AT)
    assert (res.code, res["why_not"]) == ("invalid_input", "login_taken")


def test_admin_may_have_a_tier(con):
    assert create_user(con, login="root", display_name="Root", password=None, role="admin", agent_tier=3, at=AT).ok


def test_bulk_users_without_passwords_get_consecutive_ids_and_mixed_rows_write_only_the_ok_ones(con):
    out = create_users(con, pd.DataFrame({
        "login": ["a1", "a2", "A1", "lead"],
        "display_name": ["Agent 1", "Agent 2", "Dup", "Lead"],
        "role": ["agent", "agent", "agent", "leader"],
        "agent_tier": [1, 3, 2, None]}), at=AT)
    assert list(out.columns) == list(COLUMNS)
    assert list(out["code"]) == ["ok", "ok", "invalid_input", "ok"]
    assert out["why_not"].iloc[2] == "login_taken"
    assert [None if pd.isna(u) else int(u) for u in out["user_id"]] == [1, 2, None, 3]
    assert con.execute("SELECT login, agent_tier, password_hash FROM users ORDER BY user_id").fetchall() == [
        ("a1", 1, None), ("a2", 3, None), ("lead", None, None)]


def test_require_role_allows_active_users_with_the_role_only(con):
    create_user(con, login="root", display_name="Root", password=None, role="admin", at=AT)
    ann = create_user(con, login="ann", display_name="Ann", password=None, role="agent", agent_tier=2, at=AT)["user_id"]
    ok = require_role(con, ann, ("agent", "admin"))
    assert ok.ok and (ok["role"], ok["agent_tier"]) == ("agent", 2)
    assert require_role(con, ann, ("admin",)).code == "not_permitted"
    assert require_role(con, 404, ("agent",)).code == "not_permitted"
    assert require_role(con, None, ("agent",)).code == "not_permitted"
    set_user_active(con, user_id=ann, is_active=False, at=AT)
    assert require_role(con, ann, ("agent",)).code == "not_permitted"


def test_missing_column_is_a_programming_error(con):
    with pytest.raises(ValueError, match="role"):
        create_users(con, pd.DataFrame({"login": ["a"], "display_name": ["A"]}), at=AT)


def test_single_sign_on_finds_active_users_by_login_only(con):
    uid = create_user(con, login="ann@example.com", display_name="Ann", password=None, role="analyst",
                      at=AT)["user_id"]
    res = user_for_login(con, "Ann@Example.com")
    assert res.ok and (res["user_id"], res["role"]) == (uid, "analyst")
    assert user_for_login(con, "bob@example.com").code == "not_permitted"
    create_user(con, login="root", display_name="Root", password=None, role="admin", at=AT)
    set_user_active(con, user_id=uid, is_active=False, at=AT)
    assert user_for_login(con, "ann@example.com").code == "not_permitted"
