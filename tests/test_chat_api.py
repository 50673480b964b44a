"""The chat API as the widget uses it: ask, press buttons, keep a session, read later messages,
ask the secretariat; through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import func, select

from bot.messages import message
from bot.storage.models import Conversation, Feedback, Message, OutboxMail, SecretariatRequest
from tests.api_support import Web


def count(web: Web, model: type, *where: Any) -> int:
    with web.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def web_conversation(web: Web) -> Conversation:
    with web.sessions() as session:
        return session.scalars(select(Conversation).where(Conversation.channel == "web")).one()


def test_a_question_gets_the_faq_answer_and_a_new_session_id(web: Web) -> None:
    response = web.chat(text="パスワードを忘れました")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"session_id", "replies", "last_message_id"}
    assert len(body["session_id"]) >= 40
    answer, offer = body["replies"]
    assert set(answer) == {"kind", "faq_id", "question", "text", "links"}
    assert (answer["kind"], answer["faq_id"]) == ("answer", "password-reset")
    assert answer["links"] and set(answer["links"][0]) == {"label", "text", "url"}
    assert offer == {"kind": "buttons", "text": message("action_offer"), "buttons": [
        {"label": message("action_button_password_reset"), "action": "start:password_reset"}]}


def test_the_session_id_carries_the_conversation_and_the_client_never_chooses_the_user(web: Web) -> None:
    first = web.chat(text="メルマガを止めたい").json()
    second = web.chat(first["session_id"], action="start:newsletter_optout").json()

    assert second["session_id"] == first["session_id"]
    assert second["replies"] == [{"kind": "text", "text": message("identity_intro")}]
    conversation = web_conversation(web)
    assert first["session_id"] not in conversation.user_ref  # only a hash of the token is stored


def test_an_unknown_or_forged_session_id_starts_a_new_conversation_with_a_new_id(web: Web) -> None:
    for forged in ("nope", "x" * 100, "../../etc/passwd", "' OR 1=1 --", "w:" + "0" * 64):
        response = web.chat(forged, text="こんにちは")
        assert response.status_code == 200
        assert response.json()["session_id"] != forged
    assert count(web, Conversation) == 5


def test_a_session_idle_longer_than_its_lifetime_is_not_resumed(web: Web) -> None:
    session_id = web.chat(text="こんにちは").json()["session_id"]
    with web.sessions.begin() as session:
        conversation = session.scalars(select(Conversation)).one()
        conversation.state_updated_at = conversation.state_updated_at.replace(year=2000)

    assert web.chat(session_id, text="こんにちは").json()["session_id"] != session_id


def test_a_suggestion_click_and_feedback_buttons_go_through_the_engine(web: Web) -> None:
    session_id = web.chat(action="faq:withdrawal").json()["session_id"]
    reply = web.chat(session_id, action="feedback:withdrawal:up").json()["replies"]

    assert reply == [{"kind": "text", "text": message("feedback_thanks")}]
    assert count(web, Feedback, Feedback.faq_id == "withdrawal", Feedback.helpful.is_(True)) == 1


def test_an_unknown_action_gets_a_polite_reply_not_an_error(web: Web) -> None:
    for action in ("start:format_disk", "confirm", "feedback:nothing:up", "<script>", "kind:company_withdrawal"):
        response = web.chat(action=action)
        assert response.status_code == 200
        assert response.json()["replies"] == [{"kind": "text", "text": message("stale_button")}]


def test_later_messages_include_a_staff_reply_appended_in_storage(web: Web) -> None:
    first = web.chat(text="会費の請求書を再発行してほしい").json()
    session_id, seen = first["session_id"], first["last_message_id"]
    conversation = web_conversation(web)

    staff_id = web.assistant.append_staff_message(conversation.id, "<b>事務局です</b>。再発行いたします。", "staff:suzuki")

    later = web.client.get(f"/api/chat/{session_id}/messages", params={"after": seen}).json()
    assert later == {"session_id": session_id, "messages": [
        {"id": staff_id, "from": "staff", "reply": {"kind": "text", "text": "<b>事務局です</b>。再発行いたします。"}}]}
    everything = web.client.get(f"/api/chat/{session_id}/messages").json()["messages"]
    assert [m["from"] for m in everything] == ["member", "assistant", "staff"]
    assert everything[0]["reply"] == {"kind": "text", "text": "会費の請求書を再発行してほしい"}


def test_button_presses_are_not_shown_again_after_a_reload(web: Web) -> None:
    session_id = web.chat(text="パスワードを忘れました").json()["session_id"]
    web.chat(session_id, action="start:password_reset")

    shown = web.client.get(f"/api/chat/{session_id}/messages").json()["messages"]
    assert [m["from"] for m in shown] == ["member", "assistant", "assistant", "assistant"]
    assert all("[start:" not in m["reply"].get("text", "") for m in shown)


def test_messages_of_an_unknown_session_are_a_404_json(web: Web) -> None:
    for bad in ("unknown", "x" * 100):
        response = web.client.get(f"/api/chat/{bad}/messages")
        assert response.status_code == 404
        assert response.json() == {"error": "unknown_session", "message": message("web_unknown_session")}
    assert web.client.get("/api/chat/abc/messages", params={"after": -1}).status_code == 422
    assert web.client.get("/api/chat/abc/messages", params={"after": "x"}).status_code == 422
    assert web.client.get(f"/api/chat/{'x' * 101}/messages").status_code == 422


def test_the_inquiry_form_files_a_request_with_the_transcript_and_mails_the_secretariat(web: Web) -> None:
    session_id = web.chat(text="今年の総会の会場はどこですか").json()["session_id"]

    body = web.client.post("/api/inquiry", json={
        "session_id": session_id, "name": "山田 太郎", "email": "ｔａｒｏ@example.co.jp",
        "question": "総会の会場と日程を教えてください。"}).json()

    [request] = _requests(web)
    assert body["session_id"] == session_id
    assert re.search(rf"受付番号: {request.id}", body["replies"][0]["text"])
    assert request.details["contact_name"] == "山田 太郎"
    assert request.details["contact_email"] == "taro@example.co.jp"
    assert [line["from"] for line in request.details["transcript"]][:2] == ["member", "assistant"]
    assert count(web, OutboxMail, OutboxMail.recipient == "secretariat@jsug.org") == 1


def test_an_incomplete_inquiry_form_files_nothing(web: Web) -> None:
    for form in ({"name": "山田", "email": "not-an-address", "question": "質問です"},
                 {"name": "  ", "email": "a@example.com", "question": "質問です"},
                 {"name": "山田", "email": "a@example.com", "question": " "}):
        response = web.client.post("/api/inquiry", json=form)
        assert response.status_code in (200, 422), response.text
    assert _requests(web) == []


def test_many_members_at_once_each_get_their_own_answer(web: Web) -> None:
    def ask(number: int) -> tuple[int, str, str]:
        response = web.chat(text="退会したい")
        body = response.json()
        return response.status_code, body["session_id"], body["replies"][0].get("faq_id", "")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(24)))

    assert {status for status, _, _ in results} == {200}
    assert len({session for _, session, _ in results}) == 24
    assert {faq for _, _, faq in results} == {"withdrawal"}
    assert count(web, Message, Message.direction == "in") == 24


def test_the_openapi_document_describes_the_chat_api(web: Web) -> None:
    document = web.client.get("/openapi.json").json()

    chat = document["paths"]["/api/chat"]["post"]
    assert "ChatRequest" in str(chat["requestBody"]) and "ChatResponse" in str(chat["responses"]["200"])
    assert {"429", "422", "503"} <= set(chat["responses"])
    kinds = {name for name in document["components"]["schemas"] if name.endswith("Reply")}
    assert kinds == {"AnswerReply", "SuggestionsReply", "TextReply", "ButtonsReply"}
    assert "/api/chat/{session_id}/messages" in document["paths"]


def _requests(web: Web) -> list[SecretariatRequest]:
    with web.sessions() as session:
        return list(session.scalars(select(SecretariatRequest)))
