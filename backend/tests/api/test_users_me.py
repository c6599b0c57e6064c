"""GET /api/users/me: who the token says, and that user's counts only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.request_role import as_request_role
from tests.support.tokens import make_token, new_user_id


def test_me_returns_the_token_identity_with_zero_counts(client: TestClient) -> None:
    user_id = new_user_id()
    token = make_token(user_id, email="ada@example.com", name="Ada")
    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "id": user_id,
        "email": "ada@example.com",
        "name": "Ada",
        "tasks": {"total": 0, "pending": 0, "completed": 0},
    }


def test_me_counts_only_the_callers_tasks(client: TestClient, database_url: str) -> None:
    me, other = new_user_id(), new_user_id()
    for owner, done in ((me, False), (me, True), (me, False), (other, True)):
        with as_request_role(database_url, owner) as conn:
            conn.execute(
                "insert into tasks (user_id, title, completed) values (%s, 'x', %s)", (owner, done)
            )
            conn.commit()
    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {make_token(me)}"})
    assert response.json()["tasks"] == {"total": 3, "pending": 2, "completed": 1}
