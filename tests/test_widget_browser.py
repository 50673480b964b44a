"""The homepage chat widget in a real browser (Debian's Chromium, headless, through Playwright).

The page embedding the widget comes from another origin than the API, as on the association's site;
the API is the real app on a seeded SQLite database, delivering mail to an aiosmtpd inbox.
Screenshots go to ``tests/artifacts/``. Without Chromium (or the playwright package) the module is
skipped, unless ``JSUG_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.register_assert_rewrite("tests.web_support")

from sqlalchemy import select  # noqa: E402

from bot.faq.index import FaqIndex  # noqa: E402
from bot.passwords import authenticate  # noqa: E402
from bot.storage.models import Feedback, Member, Preferences  # noqa: E402
from tests.mail_support import body  # noqa: E402
from tests.web_support import Site, browser_missing, expect  # noqa: E402

MISSING = browser_missing()
if MISSING:
    if os.environ.get("JSUG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"JSUG_REQUIRE_BROWSER=1, but the browser tests cannot run: {MISSING}", pytrace=False)
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)

pytest_plugins = ["tests.web_support"]

PASSWORD_QUESTION = "パスワードを忘れました"
VAGUE_QUESTIONS = ("会員について", "変更したい", "会社について", "登録について", "請求について")
UNANSWERABLE = "今日の天気はどうですか"
TANAKA = "tanaka@example.com"
TAKAHASHI = "takahashi@example.com"
SECRETARIAT = "secretariat@jsug.org"
UNAVAILABLE = "申し訳ありません。ただいまシステムに接続できません。しばらくしてからもう一度お試しください。"
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture(scope="module")
def vague_question(site: Site) -> tuple[str, list[dict]]:
    """A question the live API answers with suggestions (at least two), and those suggestions."""
    for text in VAGUE_QUESTIONS:
        replies = site.post("/api/chat", {"session_id": None, "text": text})["replies"]
        found = [r for r in replies if r["kind"] == "suggestions" and len(r["items"]) >= 2]
        if found:
            return text, found[0]["items"]
    pytest.fail(f"none of {VAGUE_QUESTIONS} gets suggestions any more; pick another vague question")


def password_answer(index: FaqIndex) -> tuple[str, str, list]:
    entry = index.corpus.get("password-reset")
    body, links = index.corpus.render_answer(entry)
    return entry.question, body, links


# --- asking and answering ---------------------------------------------------------------------


def test_the_launcher_opens_a_panel_that_answers_with_a_link_opening_in_a_new_tab(open_chat, jsug_index):
    chat = open_chat()
    expect(chat.launcher).to_have_accessible_name(re.compile("チャット"))
    expect(chat.launcher).to_have_attribute("aria-expanded", "false")
    expect(chat.panel).to_be_hidden()

    chat.open()
    expect(chat.launcher).to_have_attribute("aria-expanded", "true")
    answer = chat.ask(PASSWORD_QUESTION)

    question, body, links = password_answer(jsug_index)
    expect(answer).to_contain_text(question)
    expect(answer).to_contain_text(body.splitlines()[-1])
    link = answer.get_by_role("link", name=links[0].text)
    expect(link).to_have_attribute("href", links[0].url)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(chat.panel.get_by_role("button", name="パスワード再設定メールを送る")).to_be_enabled()
    expect(chat.live).to_contain_text(question)
    expect(chat.mine.last).to_have_text(PASSWORD_QUESTION)
    assert chat.page.evaluate("document.body.lastElementChild.shadowRoot.mode") == "open"
    assert chat.low_contrast() == []
    chat.screenshot("desktop-answer")


def test_a_vague_question_offers_suggestions_and_one_click_shows_that_answer(open_chat, vague_question):
    text, items = vague_question
    chat = open_chat().open()
    suggestions = chat.ask(text)
    for item in items:
        expect(suggestions.get_by_role("button", name=item["question"])).to_be_visible()
    chat.screenshot("suggestions")

    actions: list[str] = []
    chat.page.on("request", lambda r: actions.append(json.loads(r.post_data or "{}").get("action", ""))
                 if r.method == "POST" and r.url.endswith("/api/chat") else None)
    before = chat.replies.count()
    suggestions.get_by_role("button", name=items[0]["question"]).dblclick()
    answer = chat.wait_for_reply(before)

    expect(answer).to_contain_text(items[0]["question"])
    assert actions == [f"faq:{items[0]['faq_id']}"], "a double click must send one request"
    for button in suggestions.get_by_role("button").all():
        expect(button).to_be_disabled()


def test_a_message_of_two_questions_shows_one_answer_and_a_button_for_the_other(open_chat, jsug_index):
    password, newsletter = (jsug_index.corpus.get(faq_id) for faq_id in ("password-reset", "newsletter-dm-stop"))
    chat = open_chat().open()
    answer = chat.ask("パスワードを忘れてしまったのと、メルマガも止めたいです")

    expect(answer).to_contain_text(password.question)
    follow_up = chat.replies.filter(has_text="もう一つのご質問については").last
    expect(follow_up.get_by_role("button", name=newsletter.question)).to_be_visible()
    chat.screenshot("two-questions")

    second = chat.press(newsletter.question)
    expect(second).to_contain_text(newsletter.question)


def test_thumbs_up_under_an_answer_thanks_the_member_and_stores_the_feedback(open_chat, site):
    chat = open_chat().open()
    answer = chat.ask(PASSWORD_QUESTION)
    before = chat.replies.count()
    answer.get_by_role("button", name="役に立った").click()
    expect(chat.replies.nth(before)).to_have_text(re.compile("ご意見ありがとうございます"))
    expect(answer.get_by_role("button", name="役に立った")).to_be_disabled()
    expect(answer.get_by_role("button", name="役に立たなかった")).to_be_disabled()

    conversation = site.conversation_id(chat.session_id())
    with site.sessions() as session:
        rows = session.scalars(select(Feedback).where(Feedback.conversation_id == conversation)).all()
    assert [(row.faq_id, row.helpful) for row in rows] == [("password-reset", True)]


def test_a_member_stops_the_newsletter_with_a_mailed_code_and_the_database_says_so(open_chat, site):
    chat = open_chat().open()
    reply = chat.ask("メルマガを止めたい")
    offer = chat.panel.get_by_role("button", name="配信停止の手続きをする")
    if offer.count():  # the FAQ answer first, with the action under it
        reply = chat.press("配信停止の手続きをする")
    expect(reply).to_contain_text("メールアドレスを入力してください")

    expect(chat.ask(TANAKA)).to_contain_text("確認コード")
    site.wait_for_mail(TANAKA, "確認コード")
    verified = chat.ask(site.inbox.code_for(TANAKA))
    expect(verified).to_contain_text("ご本人確認ができました")

    confirm = chat.press("メールマガジンを停止する")
    expect(confirm).to_contain_text("メールマガジンを停止します")
    expect(chat.page.locator("#jsug-chat button", has_text="両方とも停止する")).to_be_disabled()
    done = chat.press("はい、停止します")
    expect(done).to_contain_text("メールマガジンを停止しました")

    with site.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == TANAKA)).one()
        prefs = session.get(Preferences, member.id)
        assert (prefs.newsletter, prefs.postal_dm) == (False, True)
    site.wait_for_mail(TANAKA, "配信設定を変更しました")


def test_the_reset_link_from_the_mail_opens_the_page_and_sets_a_new_password(open_chat, site):
    chat = open_chat().open()
    chat.ask(PASSWORD_QUESTION)
    expect(chat.press("パスワード再設定メールを送る")).to_contain_text("メールアドレスを入力してください")
    expect(chat.ask(TAKAHASHI)).to_contain_text("パスワード再設定のご案内をお送りしました")
    [mail] = site.wait_for_mail(TAKAHASHI, "パスワード再設定")
    link = re.search(r"http://\S+/reset-password\?token=\S+", body(mail))
    assert link, body(mail)

    page = chat.page
    chat.allow_console(r"status of (422|410)")  # the page answers a refused form and a used link with these
    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="パスワードの再設定")).to_be_visible()
    expect(page.get_by_text("12文字以上")).to_be_visible()
    page.get_by_label("新しいパスワード", exact=True).fill("sakura-haru-2026")
    page.get_by_label("新しいパスワード(確認のため、もう一度)").fill("sakura-haru-2027")
    page.get_by_role("button", name="パスワードを設定する").click()
    expect(page.get_by_role("alert")).to_contain_text("確認用のパスワードが一致しません")
    page.get_by_label("新しいパスワード", exact=True).fill("sakura-haru-2026")
    page.get_by_label("新しいパスワード(確認のため、もう一度)").fill("sakura-haru-2026")
    page.get_by_role("button", name="パスワードを設定する").click()
    expect(page.get_by_role("status")).to_contain_text("新しいパスワードを設定しました")
    chat.screenshot("reset-done")

    with site.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == TAKAHASHI)).one()
        assert authenticate(session, member.login_id, "sakura-haru-2026") is not None
    page.goto(link.group(0))  # the link is used up
    expect(page.get_by_role("alert")).to_contain_text("このリンクはすでに使用されています")


def test_the_secretariat_form_checks_its_fields_files_the_inquiry_and_shows_the_receipt(open_chat, site):
    chat = open_chat().open()
    chat.panel.get_by_role("button", name="メニュー").click()
    chat.panel.get_by_role("button", name="事務局に問い合わせる").click()
    form = chat.panel.get_by_role("form", name="事務局に問い合わせる")
    name = form.get_by_label("お名前")
    email = form.get_by_label("メールアドレス")
    question = form.get_by_label("お問い合わせ内容")
    expect(name).to_be_focused()

    form.get_by_role("button", name="送信する").click()
    expect(form).to_contain_text("お名前を入力してください。")
    expect(form).to_contain_text("メールアドレスを入力してください。")
    expect(form).to_contain_text("お問い合わせ内容を入力してください。")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    name.fill("鈴木 一郎")
    email.fill("ichiro.example.com")
    question.fill("部会の見学はできますか?")
    form.get_by_role("button", name="送信する").click()
    expect(form).to_contain_text("メールアドレスの形式が正しくありません")
    expect(email).to_be_focused()
    assert chat.low_contrast() == []
    chat.screenshot("escalation-form")

    email.fill("ichiro@example.com")
    before = chat.replies.count()
    form.get_by_role("button", name="送信する").click()
    receipt = chat.wait_for_reply(before)
    expect(form).to_be_hidden()
    expect(receipt).to_contain_text(re.compile(r"受付番号: \d+"))
    number = re.search(r"受付番号: (\d+)", receipt.inner_text()).group(1)
    expect(chat.mine.last).to_have_text("部会の見学はできますか?")
    expect(chat.textbox).to_be_focused()
    chat.screenshot("escalation-receipt")

    mail = site.wait_for_mail(SECRETARIAT, f"#{number}")[0]
    assert "部会の見学はできますか?" in mail.get_content()


def test_an_unanswerable_question_offers_the_form_with_the_question_filled_in(open_chat):
    chat = open_chat().open()
    offer = chat.ask(UNANSWERABLE)
    offer.get_by_role("button", name="事務局に問い合わせる").click()
    form = chat.panel.get_by_role("form", name="事務局に問い合わせる")
    expect(form.get_by_label("お問い合わせ内容")).to_have_value(UNANSWERABLE)
    form.get_by_role("button", name="チャットに戻る").click()
    expect(form).to_be_hidden()
    expect(chat.textbox).to_be_focused()


# --- the conversation over time ---------------------------------------------------------------


def test_a_reload_restores_the_earlier_conversation_with_answered_buttons_disabled(open_chat, jsug_index):
    chat = open_chat().open()
    chat.ask(UNANSWERABLE)
    chat.ask(PASSWORD_QUESTION)
    session_id = chat.session_id()

    chat.page.reload()
    if not chat.panel.is_visible():
        chat.launcher.click()
    question, _, _ = password_answer(jsug_index)
    expect(chat.mine).to_have_text([UNANSWERABLE, PASSWORD_QUESTION])
    answer = chat.replies.filter(has_text=question)
    expect(answer).to_have_count(1)
    expect(chat.replies.filter(has_text="JSUGアシスタントです")).to_have_count(0)
    expect(chat.replies.filter(has_text="事務局におつなぎしますか").get_by_role("button")).to_be_disabled()
    expect(answer.get_by_role("button", name="役に立った")).to_be_enabled()

    chat.ask("ありがとう")
    assert chat.session_id() == session_id
    expect(chat.mine).to_have_count(3)


def test_a_staff_reply_appears_in_the_open_widget_marked_as_from_the_secretariat(open_chat, site):
    chat = open_chat().open()
    chat.ask(UNANSWERABLE)
    conversation = site.conversation_id(chat.session_id())
    said = "事務局の鈴木です。<b>明日</b>お電話いたします。"
    site.assistant.append_staff_message(conversation, said, "staff:suzuki")

    staff = chat.page.locator("#jsug-chat .msg.staff")
    expect(staff).to_contain_text("事務局より", timeout=15_000)
    expect(staff).to_contain_text(said)
    assert chat.shadow("root.querySelectorAll('.staff b').length") == 0
    expect(chat.live).to_contain_text(said)
    assert chat.low_contrast() == []
    chat.screenshot("staff-reply")


def test_new_conversation_in_the_menu_starts_over_with_a_new_session(open_chat):
    chat = open_chat().open()
    chat.ask(PASSWORD_QUESTION)
    first = chat.session_id()
    chat.panel.get_by_role("button", name="メニュー").click()
    expect(chat.panel.get_by_role("button", name="事務局に問い合わせる")).to_be_visible()
    chat.screenshot("menu")
    chat.panel.get_by_role("button", name="新しい会話").click()

    expect(chat.mine).to_have_count(0)
    expect(chat.replies).to_have_count(1)  # the welcome
    assert chat.session_id() is None
    expect(chat.textbox).to_be_focused()
    chat.ask(PASSWORD_QUESTION)
    assert chat.session_id() not in (None, first)


# --- safety and failures ----------------------------------------------------------------------


def test_html_typed_by_the_member_is_shown_as_text_and_never_runs(open_chat):
    chat = open_chat().open()
    typed = '<img src=x onerror=alert(1)><script>alert(2)</script><a href="javascript:alert(3)">x</a>'
    chat.ask(typed)
    expect(chat.mine.last).to_have_text(typed)
    assert chat.shadow("root.querySelectorAll('img, script, a[href^=javascript]').length") == 0
    chat.page.wait_for_timeout(300)
    assert chat.dialogs == []


@pytest.mark.parametrize("failure", ["unavailable", "network"])
def test_a_failed_send_keeps_the_typed_text_and_a_retry_succeeds(open_chat, site, failure):
    chat = open_chat().open()
    chat.allow_console(r"status of 503|net::ERR_CONNECTION_REFUSED")
    failed = []

    def fail_once(route):
        if route.request.method != "POST" or failed:
            return route.fallback()
        failed.append(route.request.url)
        if failure == "network":
            return route.abort("connectionrefused")
        return route.fulfill(status=503, content_type="application/json",
                             headers={"Retry-After": "30", "Access-Control-Allow-Origin": site.demo_url.rstrip("/")},
                             body=json.dumps({"error": "unavailable", "message": UNAVAILABLE}, ensure_ascii=False))

    chat.page.route("**/api/chat", fail_once)
    chat.send(PASSWORD_QUESTION)
    expect(chat.notice).to_contain_text("送信できませんでした")
    expect(chat.notice).to_contain_text(UNAVAILABLE if failure == "unavailable" else "通信できませんでした")
    expect(chat.textbox).to_have_value(PASSWORD_QUESTION)
    expect(chat.mine).to_have_count(0)
    assert chat.low_contrast() == []
    chat.screenshot(f"failed-send-{failure}")

    before = chat.replies.count()
    chat.notice.get_by_role("button", name="もう一度送信").click()
    expect(chat.wait_for_reply(before)).to_contain_text("パスワード")
    expect(chat.notice).to_have_count(0)
    expect(chat.textbox).to_have_value("")
    assert len(failed) == 1


def test_a_message_over_the_limit_shows_the_servers_message_and_keeps_the_text(open_chat):
    chat = open_chat().open()
    chat.allow_console(r"status of 422")
    long_text = "あ" * 2001
    chat.send(long_text)
    expect(chat.notice).to_contain_text("2,000文字以内")
    expect(chat.textbox).to_have_value(long_text)
    expect(chat.notice.get_by_role("button")).to_have_count(0)


def test_too_many_messages_tell_the_member_to_wait(open_chat, site):
    chat = open_chat().open()
    chat.allow_console(r"status of 429")
    chat.page.route("**/api/chat", lambda route: route.fulfill(
        status=429, content_type="application/json",
        headers={"Retry-After": "7", "Access-Control-Allow-Origin": site.demo_url.rstrip("/"),
                 "Access-Control-Expose-Headers": "Retry-After"},
        body=json.dumps({"error": "rate_limited", "message": "送信が多すぎます。7秒ほど待ってからもう一度お試しください。"},
                        ensure_ascii=False),
    ) if route.request.method == "POST" else route.fallback())
    chat.send(PASSWORD_QUESTION)
    expect(chat.notice).to_contain_text("7秒ほど待って")
    expect(chat.textbox).to_have_value(PASSWORD_QUESTION)


def test_while_waiting_a_typing_indicator_shows_and_nothing_more_is_sent(open_chat):
    chat = open_chat().open()
    held = []
    chat.page.route("**/api/chat", lambda route: held.append(route) if route.request.method == "POST"
                    else route.fallback())
    chat.send(PASSWORD_QUESTION)
    expect(chat.typing).to_be_visible()
    chat.send("もう一度")
    expect(chat.textbox).to_have_value("もう一度")  # not sent while the first is on its way
    assert len(held) == 1
    held[0].fallback()
    expect(chat.typing).to_be_hidden()
    expect(chat.replies.filter(has_text="ログインID")).to_have_count(1)
    expect(chat.mine).to_have_count(1)


# --- keyboard, phone, zoom --------------------------------------------------------------------


def test_the_widget_works_with_the_keyboard_alone(open_chat):
    chat = open_chat()
    for _ in range(12):
        chat.page.keyboard.press("Tab")
        if chat.launcher.evaluate("el => el.getRootNode().activeElement === el"):
            break
    expect(chat.launcher).to_be_focused()
    assert "rgb(11, 87, 208)" in chat.launcher.evaluate("el => getComputedStyle(el).boxShadow"), "focus is visible"

    chat.page.keyboard.press("Enter")
    expect(chat.panel).to_be_visible()
    expect(chat.textbox).to_be_focused()
    before = chat.replies.count()
    chat.page.keyboard.type(PASSWORD_QUESTION)
    chat.page.keyboard.press("Enter")
    expect(chat.wait_for_reply(before)).to_contain_text("パスワード")
    expect(chat.textbox).to_be_focused()

    chat.page.keyboard.press("Escape")
    expect(chat.panel).to_be_hidden()
    expect(chat.launcher).to_be_focused()


def test_enter_during_ime_composition_does_not_send_and_shift_enter_adds_a_line(open_chat):
    chat = open_chat().open()
    chat.textbox.fill("ぱすわーど")
    chat.textbox.evaluate("""el => {
        el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', isComposing: true, bubbles: true}));
        el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', keyCode: 229, bubbles: true}));
    }""")
    chat.textbox.press("Shift+Enter")
    chat.page.keyboard.type("を忘れました")
    expect(chat.textbox).to_have_value("ぱすわーど\nを忘れました")
    expect(chat.mine).to_have_count(0)

    chat.textbox.press("Enter")
    expect(chat.mine).to_have_text("ぱすわーど\nを忘れました")
    expect(chat.textbox).to_have_value("")


def test_on_a_phone_the_panel_fills_the_screen_and_everything_stays_inside_it(open_chat):
    chat = open_chat(**PHONE)
    chat.launcher.tap()
    expect(chat.textbox).to_be_focused()
    chat.ask(PASSWORD_QUESTION)

    box = chat.panel.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 360, "height": 740}
    for control in (chat.textbox, chat.panel.get_by_role("button", name="送信", exact=True),
                    chat.panel.get_by_role("button", name="閉じる")):
        inside = control.bounding_box()
        assert inside["x"] >= 0 and inside["x"] + inside["width"] <= 360, inside
        assert inside["y"] >= 0 and inside["y"] + inside["height"] <= 740, inside
        assert inside["height"] >= 44, f"touch target too small: {inside}"
    assert chat.shadow("root.querySelector('.log').scrollWidth <= root.querySelector('.log').clientWidth")
    assert chat.low_contrast() == []
    chat.screenshot("phone-answer")

    chat.panel.get_by_role("button", name="閉じる").tap()
    expect(chat.panel).to_be_hidden()
    expect(chat.launcher).to_be_visible()
    chat.screenshot("phone-closed")


def test_at_200_percent_zoom_the_panel_fills_the_window_and_stays_usable(open_chat):
    # 1280 x 800 at 200 %: the page lays out in 640 x 400 CSS pixels.
    chat = open_chat(viewport={"width": 640, "height": 400}, device_scale_factor=2).open()
    chat.ask(PASSWORD_QUESTION)
    assert chat.panel.bounding_box() == {"x": 0, "y": 0, "width": 640, "height": 400}
    send = chat.panel.get_by_role("button", name="送信", exact=True).bounding_box()
    assert send["y"] + send["height"] <= 400
    chat.screenshot("zoom-200")


def test_a_copy_of_the_widget_on_another_site_talks_to_the_api_named_in_data_api_base(open_chat, site):
    chat = open_chat(url=site.demo_url + "self-hosted").open()
    requests: list[str] = []
    chat.page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    expect(chat.ask(PASSWORD_QUESTION)).to_contain_text("パスワード")
    assert requests and all(url.startswith(site.api + "/api/") for url in requests)


def test_the_apis_own_demo_page_runs_the_widget_under_its_strict_csp(open_chat, site):
    chat = open_chat(url=site.api + "/demo").open()
    expect(chat.ask(PASSWORD_QUESTION)).to_contain_text("パスワード")
    chat.screenshot("demo-page")
