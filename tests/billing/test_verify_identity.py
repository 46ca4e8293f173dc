"""billing/verify_identity.py: two of postcode, birth date, last invoice amount; audited either way."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from billing.manage_users import create_user, set_user_active
from billing.run_billing import run_billing
from billing.verify_identity import LOCK_MINUTES, MAX_FAILED_ATTEMPTS, normalize_postcode, verify_identity
from tests.billing.helpers import add_customer, new_db

AT = dt.datetime(2024, 3, 5, 10, 0)
BIRTH = dt.date(1980, 2, 29)


@pytest.fixture()
def world():
    con = new_db()
    cid = add_customer(con, start=dt.date(2024, 1, 1), name="Carla Caller", postcode="ab1 2cd",
                       birth_date=BIRTH)
    bare = add_customer(con, start=dt.date(2024, 1, 1), name="No Records")
    assert run_billing(con, dt.date(2024, 1, 1), as_of=dt.date(2024, 2, 1)).ok
    assert run_billing(con, dt.date(2024, 2, 1), as_of=dt.date(2024, 3, 1)).ok
    agent = create_user(con, login="ann", display_name="Ann Agent", password=None, role="agent",
                        agent_tier=1, at=AT)["user_id"]
    analyst = create_user(con, login="al", display_name="Al Analyst", password=None, role="analyst",
                          at=AT)["user_id"]
    last_total = con.execute("SELECT total_cents FROM invoices WHERE customer_id = ? "
                             "ORDER BY period_start DESC LIMIT 1", [cid]).fetchall()[0][0]
    return con, cid, bare, agent, analyst, int(last_total)


def _audits(con):
    return [(r[0], r[1], json.loads(r[2])) for r in con.execute(
        "SELECT user_id, entity_id, detail FROM audit_log WHERE action = 'verify_identity' "
        "ORDER BY audit_id").fetchall()]


def test_two_right_answers_verify_and_are_audited(world):
    con, cid, _, agent, _, total = world
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD", birth_date=BIRTH)
    assert res.ok and res["asked"] == ["postcode", "birth_date"] and res["matched"] == 2
    assert _audits(con) == [(agent, str(cid), {"asked": ["postcode", "birth_date"], "matched": 2,
                                                "passed": True, "why_not": None})]


@pytest.mark.parametrize("answers", [
    {"postcode": "ab1-2cd", "last_invoice_amount_cents": "TOTAL"},
    {"birth_date": "1980-02-29", "last_invoice_amount_cents": "TOTAL"},
    {"postcode": " AB1 2CD ", "birth_date": BIRTH, "last_invoice_amount_cents": "TOTAL"},
])
def test_any_two_or_all_three_questions(world, answers):
    con, cid, _, agent, _, total = world
    answers = {k: (total if v == "TOTAL" else v) for k, v in answers.items()}
    assert verify_identity(con, customer_id=cid, user_id=agent, at=AT, **answers).ok


def test_a_wrong_answer_fails_without_saying_which_and_is_audited(world):
    con, cid, _, agent, _, total = world
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD",
                          last_invoice_amount_cents=total + 1)
    assert res.code == "not_permitted" and res["why_not"] == "mismatch"
    assert "postcode" not in res.message and "amount" not in res.message
    (user, entity, detail), = _audits(con)
    assert detail == {"asked": ["postcode", "last_invoice_amount"], "matched": 1, "passed": False,
                      "why_not": "mismatch"}
    assert "AB12CD" not in json.dumps(detail) and str(total + 1) not in json.dumps(detail)


def test_three_answers_with_one_wrong_fail(world):
    con, cid, _, agent, _, total = world
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD", birth_date=BIRTH,
                          last_invoice_amount_cents=1)
    assert res.code == "not_permitted"


@pytest.mark.parametrize("answers", [{}, {"postcode": "AB12CD"}, {"postcode": "AB12CD", "birth_date": "  "}])
def test_fewer_than_two_answers_are_refused_and_still_audited(world, answers):
    con, cid, _, agent, _, _ = world
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, **answers)
    assert res.code == "invalid_input" and res["why_not"] == "too_few_answers"
    assert _audits(con)[0][2]["passed"] is False


def test_a_bad_birth_date_or_amount_is_invalid_input(world):
    con, cid, _, agent, _, _ = world
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD", birth_date="29/02/80")
    assert res.code == "invalid_input" and res["why_not"] == "bad_answer"
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD",
                          last_invoice_amount_cents=12.5)
    assert res.code == "invalid_input"
    assert len(_audits(con)) == 2


def test_missing_records_never_match(world):
    con, _, bare, agent, _, total = world
    con.execute("UPDATE customers SET birth_date = ? WHERE customer_id = ?", [BIRTH, bare])
    bare_total = con.execute("SELECT max(total_cents) FROM invoices WHERE customer_id = ?", [bare]).fetchall()[0][0]
    # no postcode on file: a postcode answer never matches, even an empty-looking one
    res = verify_identity(con, customer_id=bare, user_id=agent, at=AT, postcode="-", birth_date=BIRTH)
    assert res["why_not"] == "mismatch"
    assert verify_identity(con, customer_id=bare, user_id=agent, at=AT, birth_date=BIRTH,
                           last_invoice_amount_cents=int(bare_total)).ok


def test_fewer_than_two_facts_on_file_cannot_be_verified(world):
    con, _, bare, agent, _, _ = world
    con.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT invoice_id FROM invoices WHERE customer_id = ?)",
                [bare])
    con.execute("DELETE FROM invoices WHERE customer_id = ?", [bare])
    res = verify_identity(con, customer_id=bare, user_id=agent, at=AT, postcode="AB12CD", birth_date=BIRTH)
    assert res.code == "not_permitted" and res["why_not"] == "no_records" and "supervisor" in res.message
    assert _audits(con)[-1][2]["why_not"] == "no_records"


def test_no_invoice_yet_means_the_amount_never_matches(world):
    con, _, _, agent, _, _ = world
    cid = add_customer(con, start=dt.date(2024, 3, 1), name="New One", postcode="ZZ1", birth_date=BIRTH)
    res = verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="ZZ1", last_invoice_amount_cents=0)
    assert res.code == "not_permitted" and res["why_not"] == "mismatch"
    assert verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="zz1", birth_date=BIRTH).ok


def test_the_amount_of_either_invoice_of_a_plan_change_month_or_their_sum(world):
    con, cid, _, agent, _, _ = world
    from billing.change_plan import change_plan
    assert change_plan(con, customer_id=cid, new_plan_id=2, effective_date=dt.date(2024, 3, 15), at=AT).ok
    assert run_billing(con, dt.date(2024, 3, 1), as_of=dt.date(2024, 4, 1)).ok
    totals = [int(r[0]) for r in con.execute(
        "SELECT total_cents FROM invoices WHERE customer_id = ? AND period_start = DATE '2024-03-01'",
        [cid]).fetchall()]
    assert len(totals) == 2
    later = AT + dt.timedelta(days=30)
    for amount in (*totals, sum(totals)):
        assert verify_identity(con, customer_id=cid, user_id=agent, at=later, postcode="AB12CD",
                               last_invoice_amount_cents=amount).ok


def test_unknown_customer_is_not_found_and_audited(world):
    con, _, _, agent, _, _ = world
    res = verify_identity(con, customer_id=999, user_id=agent, at=AT, postcode="x", birth_date=BIRTH)
    assert res.code == "not_found"
    assert _audits(con)[0][1] == "999"


def test_only_agents_and_admins_verify_callers(world):
    con, cid, _, agent, analyst, _ = world
    res = verify_identity(con, customer_id=cid, user_id=analyst, at=AT, postcode="AB12CD", birth_date=BIRTH)
    assert res.code == "not_permitted" and not res.ok
    assert set_user_active(con, user_id=agent, is_active=False, at=AT).ok
    assert not verify_identity(con, customer_id=cid, user_id=agent, at=AT, postcode="AB12CD", birth_date=BIRTH).ok
    assert not verify_identity(con, customer_id=cid, user_id=None, at=AT, postcode="AB12CD", birth_date=BIRTH).ok
    assert [d["passed"] for _, _, d in _audits(con)] == [False, False, False]


def test_too_many_failures_lock_the_customer_for_a_while(world):
    con, cid, _, agent, _, _ = world
    for i in range(MAX_FAILED_ATTEMPTS):
        at = AT + dt.timedelta(minutes=i)
        assert verify_identity(con, customer_id=cid, user_id=agent, at=at, postcode="WRONG",
                               birth_date=BIRTH)["why_not"] == "mismatch"
    at = AT + dt.timedelta(minutes=MAX_FAILED_ATTEMPTS)
    res = verify_identity(con, customer_id=cid, user_id=agent, at=at, postcode="AB12CD", birth_date=BIRTH)
    assert res.code == "not_permitted" and res["why_not"] == "locked"
    # refusals while locked do not extend the lock; the window passes
    later = AT + dt.timedelta(minutes=LOCK_MINUTES + 1)
    assert verify_identity(con, customer_id=cid, user_id=agent, at=later, postcode="AB12CD", birth_date=BIRTH).ok
    assert len(_audits(con)) == MAX_FAILED_ATTEMPTS + 2


def test_normalize_postcode():
    assert normalize_postcode(" ab1-2 cd") == "AB12CD" and normalize_postcode(None) == ""
