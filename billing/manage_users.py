"""Users: create them, sign them in, enable or disable them, and check roles for other use cases.

Passwords are stored only as salted bcrypt hashes. A user without a password hash (simulated agents,
imported staff) exists for the records but cannot sign in.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Iterable

import bcrypt
import duckdb
import pandas as pd

from billing import audit
from billing.results import INVALID_INPUT, NOT_FOUND, NOT_PERMITTED, OK, Result, failure, success
from data.db import transaction

ROLES = ("admin", "leader", "analyst", "agent")
TIERED_ROLES = ("agent", "admin")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72          # bcrypt uses at most 72 bytes of a password; longer ones are refused
BCRYPT_ROUNDS = 12

COLUMNS = ("row", "login", "code", "why_not", "message", "user_id")

_BAD_CREDENTIALS = "unknown login or wrong password"


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    """Checked against when the login is unknown, so it costs the same time as a wrong password."""
    return bcrypt.hashpw(b"not anyone's password", bcrypt.gensalt(BCRYPT_ROUNDS))


def normalize_login(login: str | None) -> str:
    """Logins are compared trimmed and lower-case."""
    return "" if login is None else str(login).strip().lower()


def _password_problem(password: str | None) -> str | None:
    """Why a password cannot be used (None: fine, or no password at all)."""
    if password is None:
        return None
    if len(password) < MIN_PASSWORD_LENGTH:
        return "password_too_short"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return "password_too_long"
    return None


def hash_password(password: str) -> str:
    """A salted bcrypt hash of ``password`` (text, stored in users.password_hash)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")


_MESSAGES = {
    "missing_login": "a login is required",
    "missing_display_name": "a display name is required",
    "invalid_role": "role must be one of " + ", ".join(ROLES),
    "tier_required": "an agent needs a tier from 1 to 3",
    "invalid_tier": "a tier is 1, 2 or 3, and only agents and admins have one",
    "password_too_short": f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
    "password_too_long": f"a password may have at most {MAX_PASSWORD_BYTES} bytes",
    "login_taken": "this login is already taken",
}


def create_users(con: duckdb.DuckDBPyConnection, users: pd.DataFrame, *, at: dt.datetime,
                 created_by: int | None = None) -> pd.DataFrame:
    """Create users in bulk (the simulator's agents, an import of staff).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    users : pandas.DataFrame
        One row per user: ``login``, ``display_name``, ``role``; optionally ``agent_tier``,
        ``password`` (None: the user cannot sign in), ``is_active`` (default True).
    at : datetime.datetime
        Creation time.
    created_by : int, optional
        users.user_id of the admin creating them (audited); None for the system.

    Returns
    -------
    pandas.DataFrame
        One row per input row in order: ``row``, ``login`` (normalized), ``code`` (``ok`` or
        ``invalid_input``), ``why_not`` (``missing_login``, ``missing_display_name``,
        ``invalid_role``, ``tier_required``, ``invalid_tier``, ``password_too_short``,
        ``password_too_long``, ``login_taken``), ``message``, ``user_id`` (null unless ok).
        The ok rows are written in one transaction; ids are max + row_number in input order.

    Raises
    ------
    ValueError
        When a required column is missing (a caller's bug).

    Notes
    -----
    Logins are unique, compared trimmed and lower-case. An agent needs a tier 1..3 (3 =
    supervisor); an admin may have one; other roles have none. Passwords need at least
    8 characters and at most 72 bytes (bcrypt's limit), and are stored as salted bcrypt hashes.
    """
    missing = [c for c in ("login", "display_name", "role") if c not in users.columns]
    if missing:
        raise ValueError(f"users need columns: {', '.join(missing)}")
    df = users.reset_index(drop=True)
    n = len(df)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})

    def col(name, default=None):
        if name not in df.columns:
            return pd.Series([default] * n, dtype=object)
        return df[name].astype(object).where(df[name].notna(), default)

    frame = pd.DataFrame({
        "row": range(n),
        "login": col("login").map(normalize_login).astype("string"),
        "display_name": col("display_name").map(lambda v: "" if v is None else str(v).strip()).astype("string"),
        "role": col("role").astype("string"),
        "agent_tier": pd.array(col("agent_tier"), dtype="Int64"),
        "is_active": col("is_active", True).astype(bool),
        "password_problem": col("password").map(_password_problem).astype("string"),
    })
    con.register("_mu_in", frame)
    try:
        with transaction(con):
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _mu AS
                WITH checked AS (
                    SELECT n.*,
                           CASE
                               WHEN n.login = '' THEN 'missing_login'
                               WHEN n.display_name = '' THEN 'missing_display_name'
                               WHEN NOT coalesce(list_contains($roles, n.role), FALSE) THEN 'invalid_role'
                               WHEN n.role = 'agent' AND n.agent_tier IS NULL THEN 'tier_required'
                               WHEN n.agent_tier IS NOT NULL
                                    AND (n.agent_tier NOT BETWEEN 1 AND 3 OR NOT list_contains($tiered, n.role))
                                   THEN 'invalid_tier'
                               WHEN n.password_problem IS NOT NULL THEN n.password_problem
                               WHEN EXISTS (SELECT 1 FROM users u WHERE lower(u.login) = n.login)
                                    OR row_number() OVER (PARTITION BY n.login ORDER BY n."row") > 1
                                   THEN 'login_taken'
                           END AS why_not
                    FROM _mu_in n
                )
                SELECT *, (SELECT coalesce(max(user_id), 0) FROM users)
                          + CASE WHEN why_not IS NULL
                                 THEN row_number() OVER (PARTITION BY why_not IS NULL ORDER BY "row") END
                          AS user_id
                FROM checked
            """, {"roles": list(ROLES), "tiered": list(TIERED_ROLES)})
            result = con.execute('SELECT "row", login, why_not, user_id FROM _mu ORDER BY "row"').df()
            # hashing is per password by nature (bcrypt is deliberately slow); the insert is one statement
            passwords = col("password")
            ok_rows = result["why_not"].isna() & passwords.notna()
            hashes = pd.Series([None] * n, dtype=object)
            hashes[ok_rows] = [hash_password(p) for p in passwords[ok_rows]]
            con.register("_mu_hash", pd.DataFrame({"row": range(n), "password_hash": hashes.astype("string")}))
            try:
                con.execute("""
                    INSERT INTO users (user_id, login, display_name, password_hash, role, agent_tier,
                                       is_active, created_at)
                    SELECT m.user_id, m.login, m.display_name, h.password_hash, m.role, m.agent_tier,
                           m.is_active, CAST(? AS TIMESTAMP)
                    FROM _mu m JOIN _mu_hash h USING ("row")
                    WHERE m.why_not IS NULL ORDER BY m.user_id
                """, [at])
            finally:
                con.unregister("_mu_hash")
            if created_by is not None:
                con.execute("""
                    INSERT INTO audit_log
                    SELECT (SELECT coalesce(max(audit_id), 0) FROM audit_log)
                               + row_number() OVER (ORDER BY user_id),
                           CAST(? AS TIMESTAMP), CAST(? AS BIGINT), 'create_user', 'user',
                           CAST(user_id AS VARCHAR),
                           to_json({'agent_tier': agent_tier, 'login': login, 'role': role})
                    FROM _mu WHERE why_not IS NULL
                """, [at, created_by])
    finally:
        con.unregister("_mu_in")
        con.execute("DROP TABLE IF EXISTS _mu")
    result["code"] = result["why_not"].map(lambda w: OK if pd.isna(w) else INVALID_INPUT)
    result["message"] = result["why_not"].map(_MESSAGES).fillna("user " + result["login"] + " created")
    result["user_id"] = pd.array(result["user_id"], dtype="Int64")
    return result[list(COLUMNS)]


def create_user(con: duckdb.DuckDBPyConnection, *, login: str, display_name: str,
                password: str | None, role: str, agent_tier: int | None = None, at: dt.datetime,
                created_by: int | None = None) -> Result:
    """Create one user; see :func:`create_users`.

    Parameters
    ----------
    created_by : int, optional
        The admin creating the user: must be an active admin (``not_permitted`` otherwise);
        the creation is audited under that user. None for the system (first admin, CLI setup).

    Returns
    -------
    Result
        ``data['user_id']``; ``invalid_input`` with ``data['why_not']`` (see :func:`create_users`),
        or ``not_permitted``.
    """
    if created_by is not None:
        allowed = require_role(con, created_by, ("admin",))
        if not allowed.ok:
            return allowed
    out = create_users(con, pd.DataFrame([{"login": login, "display_name": display_name,
                                           "password": password, "role": role,
                                           "agent_tier": agent_tier}]), at=at, created_by=created_by)
    r = out.iloc[0]
    if r["code"] != OK:
        return failure(r["code"], r["message"], why_not=r["why_not"])
    return success(r["message"], user_id=int(r["user_id"]))


def authenticate(con: duckdb.DuckDBPyConnection, login: str, password: str) -> Result:
    """Check a login and password.

    Returns
    -------
    Result
        ``ok`` with ``data``: user_id, login, role, agent_tier, display_name.
        ``not_permitted`` with the same message for an unknown login, a wrong password and a user
        without a password; ``not_permitted`` "account disabled" for an inactive user with the
        right password.

    Notes
    -----
    An unknown login is checked against a dummy hash, so it takes as long as a wrong password.
    """
    rows = con.execute(
        "SELECT user_id, login, display_name, password_hash, role, agent_tier, is_active "
        "FROM users WHERE lower(login) = ?", [normalize_login(login)]).fetchall()
    candidate = (password or "").encode("utf-8")
    if not rows or rows[0][3] is None or len(candidate) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(candidate[:MAX_PASSWORD_BYTES], _dummy_hash())
        return failure(NOT_PERMITTED, _BAD_CREDENTIALS)
    user_id, login_, display_name, password_hash, role, tier, is_active = rows[0]
    if not bcrypt.checkpw(candidate, password_hash.encode("ascii")):
        return failure(NOT_PERMITTED, _BAD_CREDENTIALS)
    if not is_active:
        return failure(NOT_PERMITTED, "this account is disabled; ask an administrator")
    return success(f"signed in as {display_name}", user_id=int(user_id), login=login_, role=role,
                   agent_tier=None if tier is None else int(tier), display_name=display_name)


def user_for_login(con: duckdb.DuckDBPyConnection, login: str) -> Result:
    """The active user with this login, without a password (single sign-on has checked who it is).

    Returns
    -------
    Result
        ``ok`` with the ``data`` of :func:`authenticate`; ``not_permitted`` for an unknown login or a
        disabled user.
    """
    rows = con.execute("SELECT user_id, login, display_name, role, agent_tier, is_active FROM users "
                       "WHERE lower(login) = ?", [normalize_login(login)]).fetchall()
    if not rows:
        return failure(NOT_PERMITTED, "no account with this login")
    user_id, login_, display_name, role, tier, is_active = rows[0]
    if not is_active:
        return failure(NOT_PERMITTED, "this account is disabled; ask an administrator")
    return success(f"signed in as {display_name}", user_id=int(user_id), login=login_, role=role,
                   agent_tier=None if tier is None else int(tier), display_name=display_name)


def set_user_active(con: duckdb.DuckDBPyConnection, *, user_id: int, is_active: bool,
                    at: dt.datetime, by_user_id: int | None = None) -> Result:
    """Enable or disable a user (disabled users cannot sign in or grant); audited.

    Returns
    -------
    Result
        ``ok`` (also when nothing changes); ``not_found`` for an unknown user; ``not_permitted`` when
        ``by_user_id`` is given and is not an active admin; ``invalid_input`` when it would disable
        the last active admin.
    """
    if by_user_id is not None:
        allowed = require_role(con, by_user_id, ("admin",))
        if not allowed.ok:
            return allowed
    rows = con.execute("SELECT role, is_active FROM users WHERE user_id = ?", [user_id]).fetchall()
    if not rows:
        return failure(NOT_FOUND, f"user {user_id} does not exist")
    role, current = rows[0]
    if bool(current) == bool(is_active):
        return success(f"user {user_id} is already {'active' if is_active else 'disabled'}",
                       user_id=user_id, changed=False)
    if not is_active and role == "admin":
        admins = con.execute("SELECT count(*) FROM users WHERE role = 'admin' AND is_active").fetchall()[0][0]
        if admins <= 1:
            return failure(INVALID_INPUT, "the last active admin cannot be disabled")
    with transaction(con):
        con.execute("UPDATE users SET is_active = ? WHERE user_id = ?", [bool(is_active), user_id])
        audit.log(con, at=at, user_id=by_user_id, action="enable_user" if is_active else "disable_user",
                  entity="user", entity_id=user_id)
    return success(f"user {user_id} {'enabled' if is_active else 'disabled'}", user_id=user_id, changed=True)


def require_role(con: duckdb.DuckDBPyConnection, user_id: int | None, roles: Iterable[str]) -> Result:
    """Whether ``user_id`` is an active user with one of ``roles`` (for other use cases to call first).

    Returns
    -------
    Result
        ``ok`` with ``data``: user_id, role, agent_tier, display_name; ``not_permitted`` for no user,
        an unknown or disabled user, or another role.
    """
    wanted = tuple(roles)
    if user_id is None:
        return failure(NOT_PERMITTED, "sign in first")
    rows = con.execute("SELECT role, agent_tier, display_name, is_active FROM users WHERE user_id = ?",
                       [int(user_id)]).fetchall()
    if not rows:
        return failure(NOT_PERMITTED, f"user {user_id} does not exist")
    role, tier, name, is_active = rows[0]
    if not is_active:
        return failure(NOT_PERMITTED, f"user {name} is disabled")
    if role not in wanted:
        return failure(NOT_PERMITTED, f"this needs the role {' or '.join(wanted)}; {name} is {role}")
    return success("allowed", user_id=int(user_id), role=role,
                   agent_tier=None if tier is None else int(tier), display_name=name)


def list_users(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every user for the admin's users table (never the password hash).

    Returns
    -------
    pandas.DataFrame
        One row per user: user_id, login, display_name, role, agent_tier, is_active, can_sign_in,
        created_at.
    """
    return con.execute("""
        SELECT user_id, login, display_name, role, agent_tier, is_active,
               password_hash IS NOT NULL AS can_sign_in, created_at
        FROM users ORDER BY role, login""").df()
