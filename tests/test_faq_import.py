"""``jsug-bot faq import PAGE --output OUT``: refreshing the corpus from the FAQ page's text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.faq.corpus import FAQ_FILE, FaqEntry, load_corpus, load_faq_yaml
from bot.faq.page_import import A_MARK, PAGE_END, Q_MARK

REPO = Path(__file__).resolve().parent.parent
FAQ_DATA = REPO / "faq_data"
SEED_PAGE = Path("/work/shared/seeds/jsug_faq_page.txt")

WITHDRAWAL_QUESTION = "JSUGを退会するにはどうしたらよいですか?"
NEW_QUESTION = "イベントの参加履歴を確認するにはどうしたらよいですか?"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def page_of_corpus() -> str:
    """The FAQ page as the site prints it, rebuilt from the shipped corpus (link words plain)."""
    corpus = load_corpus(FAQ_DATA, FAQ_DATA)
    parts = ["top of page", "当サイトおよびJSUG会員に関するよくあるご質問についてご案内します。", "FAQ"]
    for entry in corpus.entries:
        parts += [f"{Q_MARK}\n{A_MARK}", entry.question, *corpus.render_answer(entry)[0].splitlines()]
    return "\n\n".join(parts) + f"\n\n{PAGE_END}\n"


@pytest.fixture
def seed_text() -> str:
    """The seed copy of the FAQ page; where it is not available, the same page rebuilt from faq_data/."""
    if SEED_PAGE.exists():
        return SEED_PAGE.read_text(encoding="utf-8")
    return page_of_corpus()


@pytest.fixture
def corpus_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of faq_data/ used as the configured corpus, so imports never touch the real one."""
    copy = Path(shutil.copytree(FAQ_DATA, tmp_path / "faq_data"))
    monkeypatch.setenv("JSUG_FAQ_DIR", str(copy))
    return copy


@pytest.fixture
def before(corpus_dir: Path) -> dict[str, FaqEntry]:
    return {e.id: e for e in load_faq_yaml(corpus_dir / FAQ_FILE)}


def page_with_block(text: str, question: str, answer: str) -> str:
    block = f"{Q_MARK}\n{A_MARK}\n\n{question}\n\n{answer}\n\n"
    at = text.rindex(PAGE_END)
    return text[:at] + block + text[at:]


def page_without_block(text: str, question: str) -> str:
    at = text.index(question)
    start = text.rindex(Q_MARK, 0, at)
    ends = [i for i in (text.find(Q_MARK, at), text.find(PAGE_END, at)) if i >= 0]
    return text[:start] + text[min(ends) :]


def import_page(capsys, tmp_path: Path, corpus_dir: Path, text: str) -> tuple[int, str, str, Path]:
    page = tmp_path / "page.txt"
    page.write_text(text, encoding="utf-8")
    output = corpus_dir / FAQ_FILE
    code, out, err = run(capsys, "faq", "import", str(page), "--output", str(output))
    return code, out, err, output


def test_import_of_the_seed_page_keeps_every_id_alternate_category_and_action(
    capsys, tmp_path, corpus_dir, before, seed_text
):
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, seed_text)
    assert code == 0, err
    assert "15 entries written" in out
    assert "kept (id and alternates unchanged): 15" in out
    assert "added" not in out and "dropped" not in out

    after = load_faq_yaml(output)
    assert [e.id for e in after] == list(before)
    for entry in after:
        old = before[entry.id]
        assert entry.alternates == old.alternates, entry.id
        assert entry.category == old.category, entry.id
        assert entry.action == old.action, entry.id
        assert entry.question == old.question, entry.id
        assert entry.question in seed_text
        assert entry.link_keys() == old.link_keys(), entry.id


def test_imported_seed_corpus_validates(capsys, tmp_path, corpus_dir, seed_text):
    code, _, err, output = import_page(capsys, tmp_path, corpus_dir, seed_text)
    assert code == 0, err
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert code == 0, err
    assert "15 entries" in out
    code, out, err = run(capsys, "faq", "validate", str(output))
    assert code == 0, err


def test_imported_answers_keep_their_links_so_the_assistant_still_shows_urls(capsys, tmp_path, corpus_dir, seed_text):
    code, _, err, _ = import_page(capsys, tmp_path, corpus_dir, seed_text)
    assert code == 0, err
    corpus = load_corpus(corpus_dir, corpus_dir)
    text, links = corpus.render_answer(corpus.get("password-reset"))
    assert text.startswith("こちら より")
    assert [link.key for link in links] == ["password-reset"]


def test_import_adds_a_new_page_block_as_faq_1_and_reports_it(capsys, tmp_path, corpus_dir, before, seed_text):
    text = page_with_block(seed_text, NEW_QUESTION, "イベントページの「申込履歴」からご確認いただけます。")
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, text)
    assert code == 0, err
    assert "16 entries written" in out
    assert "added, to complete: faq-1" in out
    after = load_faq_yaml(output)
    assert [e.id for e in after] == [*before, "faq-1"]
    new = after[-1]
    assert new.question == NEW_QUESTION
    assert new.answer == "イベントページの「申込履歴」からご確認いただけます。"
    assert new.alternates == () and new.category == "" and new.action is None
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert code == 0, err
    assert "16 entries" in out


def test_import_keeps_the_id_of_a_slightly_reworded_question(capsys, tmp_path, corpus_dir, before, seed_text):
    reworded = WITHDRAWAL_QUESTION.replace("よい", "良い")
    assert reworded != WITHDRAWAL_QUESTION
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, seed_text.replace(WITHDRAWAL_QUESTION, reworded))
    assert code == 0, err
    assert "added" not in out and "dropped" not in out
    after = {e.id: e for e in load_faq_yaml(output)}
    assert list(after) == list(before)
    assert after["withdrawal"].question == reworded
    assert after["withdrawal"].alternates == before["withdrawal"].alternates
    assert after["withdrawal"].action == "withdrawal_request"


def test_import_reports_an_entry_missing_from_the_page_as_dropped(capsys, tmp_path, corpus_dir, before, seed_text):
    text = page_without_block(seed_text, WITHDRAWAL_QUESTION)
    assert WITHDRAWAL_QUESTION not in text
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, text)
    assert code == 0, err
    assert "14 entries written" in out
    assert "no longer on the page, dropped: withdrawal" in out
    assert [e.id for e in load_faq_yaml(output)] == [i for i in before if i != "withdrawal"]


def test_import_links_mypage_in_a_new_answer(capsys, tmp_path, corpus_dir, seed_text):
    answer = "マイページ にログインの上、「参加履歴」をご確認ください。"
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, page_with_block(seed_text, NEW_QUESTION, answer))
    assert code == 0, err
    new = load_faq_yaml(output)[-1]
    assert new.id == "faq-1"
    assert new.answer == "[マイページ](mypage) にログインの上、「参加履歴」をご確認ください。"
    assert "link word left plain" not in out


def test_import_reports_kochira_in_a_new_answer_as_left_plain(capsys, tmp_path, corpus_dir, seed_text):
    answer = "参加履歴は こちら からご確認ください。"
    code, out, err, output = import_page(capsys, tmp_path, corpus_dir, page_with_block(seed_text, NEW_QUESTION, answer))
    assert code == 0, err
    assert "link word left plain, link it by hand: faq-1: こちら" in out
    new = load_faq_yaml(output)[-1]
    assert new.answer == answer  # left as the page wrote it
    assert "[こちら]" not in new.answer


def test_import_of_a_page_without_blocks_fails_cleanly(capsys, tmp_path, corpus_dir):
    output = corpus_dir / FAQ_FILE
    original = output.read_bytes()
    page = tmp_path / "empty_page.txt"
    page.write_text("top of page\n\nよくあるご質問\n\nただいま準備中です。\n\nbottom of page\n", encoding="utf-8")
    code, out, err = run(capsys, "faq", "import", str(page), "--output", str(output))
    assert code == 2
    assert str(page) in err
    assert "no FAQ blocks" in err and Q_MARK in err
    assert "Traceback" not in out + err
    assert output.read_bytes() == original  # nothing written


def test_import_of_a_page_with_a_question_but_no_answer_names_the_block(capsys, tmp_path, corpus_dir, seed_text):
    text = page_with_block(seed_text, NEW_QUESTION, "")
    code, out, err, _ = import_page(capsys, tmp_path, corpus_dir, text)
    assert code == 2
    assert "#16" in err and "without an answer" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
def test_import_of_an_unreadable_page_fails_cleanly(capsys, tmp_path, corpus_dir, kind):
    page = tmp_path / "page.txt"
    if kind == "directory":
        page.mkdir()
    elif kind == "not-utf8":
        page.write_bytes(f"{Q_MARK}\n{A_MARK}\n{WITHDRAWAL_QUESTION}\n退会はこちら。\n".encode("cp932"))
    output = tmp_path / "out.yaml"
    code, out, err = run(capsys, "faq", "import", str(page), "--output", str(output))
    assert code == 2
    assert str(page) in err
    assert "cannot read the page" in err
    assert "Traceback" not in out + err
    assert not output.exists()


def test_import_into_a_folder_that_does_not_exist_fails_cleanly(capsys, tmp_path, corpus_dir, seed_text):
    page = tmp_path / "page.txt"
    page.write_text(seed_text, encoding="utf-8")
    output = tmp_path / "no" / "such" / "folder" / FAQ_FILE
    code, out, err = run(capsys, "faq", "import", str(page), "--output", str(output))
    assert code == 2
    assert str(output) in err and "cannot write" in err
    assert "Traceback" not in out + err
