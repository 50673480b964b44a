"""``jsug-bot faq validate`` and the corpus loaders: the shipped corpus, and every way to break one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from bot.cli import main
from bot.faq.corpus import FAQ_FILE, LINK_MARKUP, LINKS_FILE, load_corpus

REPO = Path(__file__).resolve().parent.parent
FAQ_DATA = REPO / "faq_data"

SHIPPED_IDS = [
    "join",
    "jsugnet-registration",
    "password-reset",
    "contact-info-change",
    "company-name-change",
    "representative-change",
    "billing-address",
    "latest-news",
    "activity-notifications",
    "activity-participation",
    "member-companies",
    "supporter-benefits",
    "consumption-tax",
    "newsletter-dm-stop",
    "withdrawal",
]
SHIPPED_ACTIONS = {
    "password-reset": "password_reset",
    "newsletter-dm-stop": "newsletter_optout",
    "withdrawal": "withdrawal_request",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A private copy of faq_data/ that a test may break."""
    return Path(shutil.copytree(FAQ_DATA, tmp_path / "faq_data"))


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def entries_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return data["entries"]


def entry(data: dict[str, Any], faq_id: str) -> dict[str, Any]:
    return next(e for e in entries_of(data) if e["id"] == faq_id)


def assert_clean_failure(code: int, out: str, err: str, *expected: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert err.startswith("jsug-bot: ")
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"


# --- the shipped corpus -------------------------------------------------------------------------


def test_validate_accepts_the_shipped_corpus_and_counts_its_15_entries(capsys):
    code, out, err = run(capsys, "faq", "validate")
    assert code == 0, err
    assert "15 entries" in out
    assert out.rstrip().endswith("OK")
    assert err == ""


def test_validate_accepts_the_shipped_corpus_given_as_folder_or_as_faq_yaml(capsys):
    for source in (FAQ_DATA, FAQ_DATA / FAQ_FILE):
        code, out, err = run(capsys, "faq", "validate", str(source))
        assert code == 0, err
        assert str(source) in out
        assert "15 entries" in out


def test_shipped_corpus_has_the_fifteen_ids_in_page_order():
    corpus = load_corpus(FAQ_DATA, FAQ_DATA)
    assert [e.id for e in corpus.entries] == SHIPPED_IDS


def test_every_link_markup_of_the_shipped_answers_resolves_to_a_url():
    corpus = load_corpus(FAQ_DATA, FAQ_DATA)
    linked = 0
    for faq in corpus.entries:
        text, links = corpus.render_answer(faq)
        assert len(links) == len(faq.link_keys()), faq.id
        assert not LINK_MARKUP.search(text), f"{faq.id}: markup left in {text!r}"
        for link in links:
            assert link.url.startswith(("https://", "http://", "mailto:")), (faq.id, link)
            assert link.text in text
        linked += len(links)
    assert linked >= len(corpus.entries)  # the answers do use links


def test_shipped_entries_with_actions_are_exactly_the_three_self_service_ones():
    corpus = load_corpus(FAQ_DATA, FAQ_DATA)
    self_service = {e.id: e.action for e in corpus.entries if e.action in set(SHIPPED_ACTIONS.values())}
    assert self_service == SHIPPED_ACTIONS
    for faq in corpus.entries:
        assert faq.action in (None, "secretariat_request", *SHIPPED_ACTIONS.values()), faq.id


# --- a broken folder corpus: exit 2, file, entry and problem, no traceback ------------------------


def test_validate_names_file_and_entry_of_a_duplicate_id(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entries_of(d)[1].update(id="join"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'join'", "#2", "duplicate id", "#1")


def test_validate_names_file_and_entry_of_a_missing_question(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "password-reset").pop("question"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'password-reset'", "#3", "missing field 'question'")


def test_validate_names_file_and_entry_of_a_missing_answer(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "withdrawal").pop("answer"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'withdrawal'", "#15", "missing field 'answer'")


@pytest.mark.parametrize("value, kind", [(["a", "b"], "list"), (42, "int"), ({"ja": "x"}, "dict")])
def test_validate_rejects_an_answer_that_is_not_text(capsys, corpus_dir, value, kind):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "latest-news").update(answer=value))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'latest-news'", "#8", "'answer' must be text", kind)


def _insert_tab_line(lines: list[str]) -> int:
    at = lines.index("  category: 入会\n") + 1
    lines.insert(at, "\tcategory: 入会\n")
    return at + 1


def _open_a_bracket(lines: list[str]) -> int:
    at = lines.index("  alternates:\n")
    lines[at] = "  alternates: [会社としてJSUGの会員になりたい, 入会の申し込み手続き\n"
    return at + 1


@pytest.mark.parametrize("breakage", [_insert_tab_line, _open_a_bracket], ids=["tab-indent", "unclosed-bracket"])
def test_validate_reports_bad_yaml_with_the_line_to_fix(capsys, corpus_dir, breakage):
    faq = corpus_dir / FAQ_FILE
    lines = faq.read_text(encoding="utf-8").splitlines(keepends=True)
    line = breakage(lines)
    faq.write_text("".join(lines), encoding="utf-8")
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "bad YAML", f"line {line}")


def test_validate_names_an_answer_link_key_missing_from_links_yaml(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "billing-address").update(answer="[請求書の設定](billing-settings) をご覧ください。"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'billing-address'", "link key 'billing-settings'", LINKS_FILE)


def test_validate_names_an_unknown_action(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "consumption-tax").update(action="issue_invoice"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'consumption-tax'", "unknown action 'issue_invoice'", "password_reset")


def test_validate_names_both_entries_sharing_a_phrasing(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entry(d, "withdrawal")["alternates"].append("パスワードを忘れた"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'withdrawal'", "'password-reset'", "phrasing 'パスワードを忘れた'")


def test_validate_names_links_yaml_and_the_link_without_url(capsys, corpus_dir):
    links = corpus_dir / LINKS_FILE
    edit_yaml(links, lambda d: d["mypage"].pop("url"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(links), "'mypage'", "'url'")


def test_validate_reports_a_file_that_is_not_utf8(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    faq.write_bytes(faq.read_text(encoding="utf-8").encode("cp932"))
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "not UTF-8")


def test_validate_rejects_an_empty_entries_list(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    faq.write_text("entries: []\n", encoding="utf-8")
    code, out, err = run(capsys, "faq", "validate", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "no entries")


def test_validate_reports_a_missing_corpus_file(capsys, tmp_path):
    missing = tmp_path / "nowhere" / FAQ_FILE
    code, out, err = run(capsys, "faq", "validate", str(missing))
    assert_clean_failure(code, out, err, str(missing), "not found")


def test_ask_refuses_a_broken_corpus_folder_too(capsys, corpus_dir):
    faq = corpus_dir / FAQ_FILE
    edit_yaml(faq, lambda d: entries_of(d)[4].update(id="join"))
    code, out, err = run(capsys, "ask", "パスワードを忘れました", "--faq", str(corpus_dir))
    assert_clean_failure(code, out, err, str(faq), "'join'", "duplicate id")
    assert out == ""


# --- JSON Lines corpora ---------------------------------------------------------------------------

MINI = [
    {
        "id": "opening-hours",
        "question": "窓口の受付時間は何時から何時までですか",
        "answer": "平日の9時から17時までです。",
        "alternates": ["何時まで開いていますか"],
    },
    {"id": "parking", "question": "駐車場はありますか", "answer": "来館者用の駐車場はございません。公共交通機関をご利用ください。"},
    {"id": "wifi", "question": "会場で無線LANは使えますか", "answer": "ゲスト用のWi-Fiをご利用いただけます。"},
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mini_lines() -> list[str]:
    return [json.dumps(item, ensure_ascii=False) for item in MINI]


def test_ask_answers_from_a_jsonl_corpus(capsys, tmp_path):
    corpus = write_jsonl(tmp_path / "mini.jsonl", mini_lines())
    code, out, err = run(capsys, "ask", "駐車場ってありますか", "--faq", str(corpus), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"] == "answer"
    assert result["faq_id"] == "parking"
    assert {c["faq_id"] for c in result["candidates"]} == {"opening-hours", "parking", "wifi"}

    code, out, err = run(capsys, "ask", "駐車場ってありますか", "--faq", str(corpus))
    assert code == 0, err
    assert "駐車場はありますか" in out
    assert "来館者用の駐車場はございません。" in out


def test_validate_accepts_a_jsonl_corpus(capsys, tmp_path):
    corpus = write_jsonl(tmp_path / "mini.jsonl", mini_lines())
    code, out, err = run(capsys, "faq", "validate", str(corpus))
    assert code == 0, err
    assert "3 entries" in out


def test_jsonl_bad_json_line_names_file_and_line(capsys, tmp_path):
    lines = mini_lines()
    lines[1] = lines[1][:-1]  # drop the closing brace
    corpus = write_jsonl(tmp_path / "broken.jsonl", lines)
    code, out, err = run(capsys, "ask", "駐車場", "--faq", str(corpus), "--json")
    assert_clean_failure(code, out, err, str(corpus), "line 2", "bad JSON")


def test_jsonl_missing_field_names_file_and_line(capsys, tmp_path):
    lines = mini_lines()
    lines[2] = json.dumps({"id": "wifi", "question": "会場で無線LANは使えますか"}, ensure_ascii=False)
    corpus = write_jsonl(tmp_path / "missing.jsonl", lines)
    code, out, err = run(capsys, "ask", "駐車場", "--faq", str(corpus), "--json")
    assert_clean_failure(code, out, err, str(corpus), "'wifi'", "line 3", "missing field 'answer'")


def test_jsonl_duplicate_id_names_file_and_line(capsys, tmp_path):
    lines = mini_lines()
    # A blank line in between: line numbers count the file's lines, not its entries.
    lines.insert(2, "")
    lines.append(json.dumps({"id": "parking", "question": "車で行けますか", "answer": "どうぞ。"}, ensure_ascii=False))
    corpus = write_jsonl(tmp_path / "dup.jsonl", lines)
    code, out, err = run(capsys, "ask", "駐車場", "--faq", str(corpus), "--json")
    assert_clean_failure(code, out, err, str(corpus), "'parking'", "line 5", "duplicate id", "line 2")
