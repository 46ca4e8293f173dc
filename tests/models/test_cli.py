"""``python cli.py train | recommend | models``: output, JSON, one-line errors and exit codes."""
from __future__ import annotations

import datetime as dt
import json

import pytest

import cli
from models import registry as R

AT = dt.datetime(2025, 1, 5, 8)


@pytest.fixture(scope="module")
def registry_dir(trained, registry_root):
    """The session registry, holding the models train_models saved."""
    return registry_root


@pytest.fixture(scope="module")
def customer(world):
    """A customer served at the end of the world, and its last day."""
    return world.execute("SELECT customer_id, (SELECT max(period_end) FROM invoices) FROM subscriptions "
                         "WHERE end_date IS NULL ORDER BY customer_id LIMIT 1").fetchall()[0]


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recommend_prints_the_ranked_offers(capsys, world_path, registry_dir, customer):
    cid, last = customer
    code, out, err = _run(capsys, "--db", world_path, "recommend", cid, "--reason", "cancel_request", "--intent",
                          "--agent", "supervisor", "--at", f"{last}T10:00", "--models-dir", registry_dir)
    assert code == 0, err
    assert f"customer {cid}, cancel_request (intent to cancel)" in out and "agent tier 3" in out
    assert "churn risk (90 days)" in out
    assert ("Offer " in out) or ("No offer" in out) or ("ask a supervisor" in out)
    for offer in ("pct10_3m", "credit_20", "plan_move", "pct25_6m", "free_1m", "pct50_12m"):
        assert offer in out


def test_recommend_json(capsys, world_path, registry_dir, customer):
    cid, last = customer
    code, out, _ = _run(capsys, "--db", world_path, "recommend", cid, "--reason", "billing_error", "--json",
                        "--at", f"{last}T10:00", "--models-dir", registry_dir)
    assert code == 0
    data = json.loads(out)
    assert data["customer_id"] == cid and data["agent_tier"] is None and len(data["options"]) == 6
    assert data["action"] in ("offer", "ask_supervisor", "no_offer") and data["model_ids"]["uplift"].startswith("uplift-")


@pytest.mark.parametrize("args, status, message", [
    (["recommend", "999999999", "--reason", "billing_error"], 2, "no customer 999999999"),
    (["recommend", "abc", "--reason", "billing_error"], 2, "customer id must be a number"),
    (["recommend", "{cid}", "--reason", "angry"], 2, "unknown reason 'angry'"),
    (["recommend", "{cid}", "--reason", "billing_error", "--agent", "nobody"], 2, "no user with login 'nobody'"),
    (["recommend", "{cid}", "--reason", "billing_error", "--at", "yesterday"], 2, "is not an ISO date"),
])
def test_recommend_errors_are_one_line(capsys, world_path, registry_dir, customer, args, status, message):
    args = [a.replace("{cid}", str(customer[0])) for a in args]
    code, out, err = _run(capsys, "--db", world_path, *args, "--models-dir", registry_dir)
    assert code == status
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err and out == ""


def test_recommend_without_a_trained_model_says_train(capsys, world_path, tmp_path, customer):
    code, _, err = _run(capsys, "--db", world_path, "recommend", customer[0], "--reason", "billing_error",
                        "--models-dir", tmp_path / "none")
    assert code == 3 and "run python cli.py train" in err and err.count("\n") == 1


def test_recommend_with_a_stale_model_says_why(capsys, world, world_path, tmp_path, uplift_split, customer):
    rec = R.save_model(uplift_split[0], kind="uplift", at=AT, con=world, root=tmp_path)
    meta = tmp_path / f"{rec.model_id}.json"
    data = json.loads(meta.read_text())
    data["data_end"] = "2023-06-30"
    meta.write_text(json.dumps(data))
    code, out, err = _run(capsys, "--db", world_path, "recommend", customer[0], "--reason", "billing_error",
                          "--models-dir", tmp_path)
    assert code == 3 and out == ""
    assert "is stale" in err and "2023-06-30" in err and "run python cli.py train" in err and err.count("\n") == 1


def test_missing_database_is_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "--db", tmp_path / "nope.duckdb", "recommend", "1", "--reason", "billing_error")
    assert code == 2 and "does not exist" in err


def test_models_lists_the_registry(capsys, world_path, registry_dir):
    code, out, _ = _run(capsys, "--db", world_path, "models", "--models-dir", registry_dir)
    assert code == 0 and "churn_risk-" in out and "uplift-" in out and "ok" in out
    code, out, _ = _run(capsys, "--db", world_path, "models", "--models-dir", registry_dir, "--json")
    assert {r["kind"] for r in json.loads(out)} == {"churn_risk", "uplift"}


def test_train_fits_saves_and_prints_metrics(capsys, monkeypatch, world, world_path, trained, tmp_path):
    # the real train_models ran once for the session (fixture ``trained``); here the command's wiring:
    # arguments passed on, progress bar, metrics printed
    seen = {}

    def fake_train(con, *, at, root, progress, churn, uplift, max_contacts):
        seen.update(root=root, churn=churn, uplift=uplift, max_contacts=max_contacts,
                    rows=con.execute("SELECT count(*) FROM customers").fetchall()[0][0])
        for k in range(R.TRAIN_STEPS):
            progress(f"step {k}")
        return trained

    monkeypatch.setattr(R, "train_models", fake_train)
    code, out, err = _run(capsys, "--db", world_path, "train", "--models-dir", tmp_path, "--max-rows", "8000",
                          "--max-contacts", "1200", "--bootstrap", "3")
    assert code == 0, err
    assert seen == {"root": str(tmp_path), "churn": {"max_rows": 8000}, "uplift": {"n_bootstrap": 3},
                    "max_contacts": 1200, "rows": world.execute("SELECT count(*) FROM customers").fetchall()[0][0]}
    assert "gradient boosting" in out and "logistic baseline" in out and "ROC AUC" in out and "ECE" in out
    assert f"{trained.churn_metrics['hgb']['roc_auc']:.3f}" in out
    assert "offer uplift" in out and "pts" in out
    for offer in trained.uplift_summary.index:
        assert offer in out
    assert "training" in err and "10/10" in err                   # the progress bar
    code, out, _ = _run(capsys, "--db", world_path, "train", "--models-dir", tmp_path, "--json", "--quiet")
    data = json.loads(out)
    assert set(data["models"]) == {"churn_risk", "uplift"} and data["churn_metrics"]["hgb"]["roc_auc"] > 0.5


def test_train_saved_both_models_with_their_records(world, trained, registry_root):
    table = R.list_models(con=world, root=registry_root)
    assert sorted(table["kind"]) == ["churn_risk", "uplift"] and (table["status"] == "ok").all()
    churn = trained.records["churn_risk"]
    assert churn.metrics["hgb"]["roc_auc"] == pytest.approx(trained.churn_metrics["hgb"]["roc_auc"])
    assert churn.window_start == trained.churn_fit.window[0].isoformat()
    up = trained.records["uplift"]
    assert up.metrics["n_contacts"] == trained.uplift.n_ and up.window_start and up.window_end
    assert R.load_latest("uplift", con=world, root=registry_root).model.offers_ == trained.uplift.offers_


def test_train_on_an_empty_database_is_one_line(capsys, tmp_path):
    from data.db import connect
    path = tmp_path / "empty.duckdb"
    connect(path).close()
    code, out, err = _run(capsys, "--db", path, "train", "--models-dir", tmp_path / "reg", "--quiet")
    assert code == 2 and err.startswith("error: cannot train") and err.count("\n") == 1
