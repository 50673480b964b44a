"""``jsug-bot chat``: the terminal conversation, driven through the installed console script."""

from __future__ import annotations

import contextlib
import io
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
ANSWERING_QUESTION = "パスワードを忘れました"
VAGUE_QUESTIONS = ("会員について", "会社について", "登録について", "変更したい", "アカウント", "請求について")


def chat(stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``jsug-bot chat`` on a fresh embedded database in ``cwd``, migrated first as README says."""
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSUG_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["DATABASE_URL"] = f"sqlite:///{cwd / 'chat.sqlite3'}"
    subprocess.run([str(CONSOLE_SCRIPT), "db", "upgrade"], check=True, capture_output=True, cwd=cwd, env=env)
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "chat"],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=env,
        timeout=120,
    )


def decide(text: str) -> dict:
    """What ``ask --json`` decides for ``text``, in-process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ask", text, "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(FAQ_DATA, FAQ_DATA)


@pytest.fixture(scope="module")
def vague_question() -> tuple[str, list[str]]:
    """A question the matcher answers with "もしかして…" and at least two suggestions."""
    for text in VAGUE_QUESTIONS:
        result = decide(text)
        if result["outcome"] == "suggest" and len(result["suggestions"]) >= 2:
            return text, result["suggestions"]
    pytest.fail(f"none of {VAGUE_QUESTIONS} gets suggestions any more; pick another vague question")


def test_chat_answers_suggests_takes_a_number_and_says_goodbye(tmp_path, corpus, vague_question):
    assert decide(ANSWERING_QUESTION)["faq_id"] == "password-reset"
    vague, suggestions = vague_question
    out_of_range = len(suggestions) + 2  # the suggestions, then 事務局に問い合わせる
    stdin = "\n".join([ANSWERING_QUESTION, vague, str(out_of_range), "1", "", "終了"]) + "\n"

    proc = chat(stdin, tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith(message("chat_welcome"))

    # The answer to the first question: official question, answer text, link.
    password = corpus.get("password-reset")
    answer_text, links = corpus.render_answer(password)
    assert message("answer_intro", question=password.question) in out
    assert answer_text.splitlines()[-1] in out
    assert links[0].url in out

    # The vague question: the numbered list of suggested questions.
    assert message("suggest_intro") in out
    for number, faq_id in enumerate(suggestions, start=1):
        assert message("suggest_item", number=number, question=corpus.get(faq_id).question) in out
    listed_at = out.index(message("suggest_intro"))
    assert f"{len(suggestions) + 1}. {message('to_secretariat_button')}" in out[listed_at:]

    # An out-of-range number is refused (numbers refer to the latest list).
    refused_at = out.index(message("unknown_choice", count=len(suggestions) + 1), listed_at)

    # "1" picks the first suggestion and shows its answer, after the list.
    chosen = corpus.get(suggestions[0])
    chosen_at = out.index(message("answer_intro", question=chosen.question), refused_at)
    assert corpus.render_answer(chosen)[0].splitlines()[0] in out[chosen_at:]

    # An empty line asks for a question.
    empty_at = out.index(message("empty_question"), chosen_at)

    # 終了 ends the conversation with the goodbye, last.
    goodbye_at = out.index(message("chat_goodbye"), empty_at)
    assert out[goodbye_at:].strip() == message("chat_goodbye")


def test_chat_ends_cleanly_on_end_of_input(tmp_path, corpus):
    proc = chat(ANSWERING_QUESTION + "\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert message("answer_intro", question=corpus.get("password-reset").question) in proc.stdout
    assert proc.stdout.rstrip().endswith(message("chat_goodbye"))


def test_chat_ends_cleanly_on_empty_input(tmp_path):
    proc = chat("", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert message("chat_welcome") in proc.stdout
    assert proc.stdout.rstrip().endswith(message("chat_goodbye"))


def test_chat_number_without_suggestions_is_treated_as_a_question(tmp_path, corpus):
    assert decide("1")["outcome"] == "fallback"
    proc = chat("1\n終了\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert message("unknown_choice", count=0) not in proc.stdout
    assert message("fallback_offer") in proc.stdout
    assert proc.stdout.rstrip().endswith(message("chat_goodbye"))
