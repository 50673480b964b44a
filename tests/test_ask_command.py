"""``jsug-bot ask TEXT``: the decision as JSON, the reply as a member reads it, and hostile input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.faq.corpus import load_corpus
from bot.messages import message

REPO = Path(__file__).resolve().parent.parent
FAQ_DATA = REPO / "faq_data"
CONSOLE_SCRIPT = Path(sys.executable).parent / "jsug-bot"

RESULT_KEYS = {"outcome", "faq_id", "score", "suggestions", "matched_terms", "synonyms_applied", "candidates", "truncated"}
OUTCOMES = {"answer", "suggest", "fallback"}


def ask_json(capsys: pytest.CaptureFixture[str], text: str) -> dict:
    code = main(["ask", text, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.out + captured.err
    assert captured.err == ""
    return json.loads(captured.out)


def ask_text(capsys: pytest.CaptureFixture[str], text: str) -> str:
    code = main(["ask", text])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.out + captured.err
    return captured.out


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(FAQ_DATA, FAQ_DATA)


def test_ask_json_has_the_decision_and_its_explanation(capsys, corpus):
    result = ask_json(capsys, "パスワードを忘れました")
    assert RESULT_KEYS <= set(result)
    assert result["outcome"] in OUTCOMES
    assert isinstance(result["score"], float) and 0.0 <= result["score"] <= 1.0
    assert isinstance(result["suggestions"], list)
    assert isinstance(result["matched_terms"], list)
    known = {e.id for e in corpus.entries}
    candidates = result["candidates"]
    assert 1 <= len(candidates) <= 10
    assert len({c["faq_id"] for c in candidates}) == len(candidates)
    for candidate in candidates:
        assert candidate["faq_id"] in known
        assert isinstance(candidate["score"], float)
        assert {"chars", "words", "reading", "answer"} <= set(candidate["parts"])
        assert all(isinstance(v, float) for v in candidate["parts"].values())
        entry = corpus.get(candidate["faq_id"])
        assert candidate["best_phrasing"] in (entry.question, *entry.alternates)
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)


def test_ask_answers_a_forgotten_password_with_password_reset(capsys):
    result = ask_json(capsys, "パスワードを忘れました")
    assert result["outcome"] == "answer"
    assert result["faq_id"] == "password-reset"
    assert result["suggestions"] == []
    assert "パスワード" in result["matched_terms"]
    assert result["candidates"][0]["faq_id"] == "password-reset"


def test_ask_json_shows_the_synonym_rewrite_it_applied(capsys):
    result = ask_json(capsys, "メルマガを止めたい")
    assert {"from": "メルマガ", "to": "メールマガジン"} in result["synonyms_applied"]
    assert "メールマガジン" in result["normalized"]
    assert result["candidates"][0]["faq_id"] == "newsletter-dm-stop"


def test_ask_json_without_a_synonym_reports_none_applied(capsys):
    result = ask_json(capsys, "パスワードを忘れました")
    assert result["synonyms_applied"] == []


def hundred_kb() -> str:
    text = "JSUGの会員登録についてお尋ねしたいのですが、"
    repeated = text * (100_000 // len(text.encode("utf-8")) + 1)
    assert len(repeated.encode("utf-8")) >= 100_000
    return repeated


BAD_INPUTS = {
    "empty": "",
    "whitespace": " \t\u3000\n ",
    "control-chars": "\x00\x01\x07\x1b[31m\x7f",
    "lone-surrogate": "\ud800",
    "emoji-only": "😀🎉🙏🔥",
    "keyboard-mash": "asdfgh",
    "sql": "'; DROP TABLE members; --",
    "html-script": "<script>alert(1)</script>",
    "number-only": "12345",
}


@pytest.mark.parametrize("text", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_ask_falls_back_on_bad_input(capsys, text):
    result = ask_json(capsys, text)
    assert result["outcome"] == "fallback"
    assert result["faq_id"] is None
    assert result["suggestions"] == []
    assert result["truncated"] is False


@pytest.mark.parametrize("text", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_ask_asks_again_or_hands_over_to_the_secretariat_on_bad_input(capsys, corpus, text):
    out = ask_text(capsys, text)
    assert "ご質問の内容を入力してください" in out or corpus.links["secretariat"].url in out
    assert "もしかして" not in out


def test_ask_truncates_100_kb_of_text_and_still_decides(capsys):
    result = ask_json(capsys, hundred_kb())
    assert result["truncated"] is True
    assert result["outcome"] in OUTCOMES
    assert len(result["normalized"]) < 100_000


def test_ask_tells_the_member_a_long_question_was_cut(capsys):
    out = ask_text(capsys, hundred_kb())
    assert "長すぎる" in out


def test_ask_prints_the_official_question_and_link_urls_of_an_answer(capsys, corpus):
    out = ask_text(capsys, "パスワードを忘れました")
    entry = corpus.get("password-reset")
    answer, links = corpus.render_answer(entry)
    assert entry.question in out
    assert links
    for link in links:
        assert link.url in out
    assert "https://www.jsug.org/password-reset" in out
    assert "](password-reset)" not in out  # markup rendered, not shown
    assert answer.splitlines()[0] in out


def test_ask_prints_the_other_question_of_a_two_topic_message_after_the_answer(capsys, corpus):
    out = ask_text(capsys, "パスワードを忘れてしまったのと、メルマガも止めたいです")
    assert corpus.get("password-reset").question in out
    follow_up = out.index(message("also_intro"))
    assert corpus.get("newsletter-dm-stop").question in out[follow_up:]
    assert ask_json(capsys, "パスワードを忘れてしまったのと、メルマガも止めたいです")["also"] == ["newsletter-dm-stop"]


def test_ask_prints_the_secretariat_url_on_fallback(capsys, corpus):
    out = ask_text(capsys, "asdfgh")
    assert corpus.links["secretariat"].url in out
    assert "https://www.jsug.org/contact" in out


def test_ask_asks_for_a_question_when_given_nothing(capsys):
    out = ask_text(capsys, "   ")
    assert "ご質問の内容を入力してください" in out


def test_installed_console_script_answers_as_json(tmp_path):
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSUG_")}
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "ask", "パスワード忘れた", "--json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,  # works from any folder
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "answer"
    assert result["faq_id"] == "password-reset"
    assert "パスワード" in result["matched_terms"]
