"""``jsug-bot eval``: run a file of questions with their expected FAQ ids and measure the matcher.

A wrong confident answer is the worst outcome, so the report counts wrong answers separately from
questions that were only suggested or passed on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bot.faq.corpus import CorpusError, read_text
from bot.faq.index import FaqIndex
from bot.faq.matcher import MatchResult, Outcome, match


@dataclass(frozen=True)
class EvalCase:
    query: str
    expected: tuple[str, ...]
    category: str | None = None


def load_cases(path: Path, known_ids: set[str] | None = None) -> list[EvalCase]:
    lines = read_text(path).splitlines()
    cases: list[EvalCase] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"on line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, f"bad JSON: {exc.msg}", where) from None
        if not isinstance(raw, dict) or not isinstance(raw.get("query"), str):
            raise CorpusError(path, "needs a text field 'query'", where)
        expected = raw.get("expected", [])
        if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
            raise CorpusError(path, "'expected' must be a list of FAQ ids ([] for out of scope)", where)
        unknown = [e for e in expected if known_ids is not None and e not in known_ids]
        if unknown:
            raise CorpusError(path, f"expected id(s) not in the corpus: {', '.join(unknown)}", where)
        category = raw.get("category", raw.get("style"))
        cases.append(EvalCase(raw["query"], tuple(expected), category if isinstance(category, str) else None))
    if not cases:
        raise CorpusError(path, "holds no questions")
    return cases


def _reciprocal_rank(ranked: list[str], expected: tuple[str, ...]) -> float:
    for rank, faq_id in enumerate(ranked, start=1):
        if faq_id in expected:
            return 1.0 / rank
    return 0.0


def evaluate(index: FaqIndex, cases: list[EvalCase], curve: bool = False) -> dict[str, object]:
    """Metrics over all cases, per ``category`` when the file names them, and with ``curve`` the
    trade-off of answering more against answering wrongly over the answer threshold."""
    started = time.perf_counter()
    outcomes = [match(index, case.query) for case in cases]
    elapsed = time.perf_counter() - started
    results = [_result(case, result) for case, result in zip(cases, outcomes, strict=True)]
    metrics: dict[str, object] = {**_metrics(cases, outcomes),
                                  "queries_per_second": round(len(cases) / elapsed, 1) if elapsed else None}
    report: dict[str, object] = {"metrics": metrics, "results": results}
    categories = sorted({case.category for case in cases if case.category})
    if categories:
        report["by_category"] = {
            name: _metrics(*_only(cases, outcomes, name)) for name in categories}
    if curve:
        report["curve"] = threshold_curve(index, cases, outcomes)
    return report


def _only(cases: list[EvalCase], outcomes: list[MatchResult], category: str) -> tuple[list[EvalCase], list[MatchResult]]:
    kept = [(c, o) for c, o in zip(cases, outcomes, strict=True) if c.category == category]
    return [c for c, _ in kept], [o for _, o in kept]


def _result(case: EvalCase, result: MatchResult) -> dict[str, object]:
    return {"query": case.query, "expected": list(case.expected), "category": case.category,
            "outcome": result.outcome.value, "faq_id": result.faq_id, "score": round(result.score, 4),
            "suggestions": result.suggestions, "also": result.also, "ranked": result.ranked[:10]}


def _metrics(cases: list[EvalCase], outcomes: list[MatchResult]) -> dict[str, object]:
    in_scope = correct = wrong_in = wrong_out = oos = oos_fallback = top1 = top3 = suggested = 0
    bare = bare_top3 = several = several_covered = 0
    reciprocal = 0.0
    for case, result in zip(cases, outcomes, strict=True):
        ranked = result.ranked[:10]
        answered = result.outcome is Outcome.ANSWER
        if case.expected:
            in_scope += 1
            correct += answered and result.faq_id in case.expected
            wrong_in += answered and result.faq_id not in case.expected
            suggested += result.outcome is Outcome.SUGGEST
            in_top3 = any(faq_id in case.expected for faq_id in ranked[:3])
            top1 += bool(ranked) and ranked[0] in case.expected
            top3 += in_top3
            bare += result.outcome is Outcome.FALLBACK
            bare_top3 += result.outcome is Outcome.FALLBACK and in_top3
            reciprocal += _reciprocal_rank(ranked, case.expected)
            several += len(case.expected) > 1
            several_covered += len(case.expected) > 1 and set(case.expected) <= _offered(result)
        else:
            oos += 1
            wrong_out += answered
            oos_fallback += result.outcome is Outcome.FALLBACK
    total = len(cases)
    answers = correct + wrong_in + wrong_out
    return {
        "queries": total,
        "in_scope": in_scope,
        "out_of_scope": oos,
        "in_scope_answered_correctly": _share(correct, in_scope),
        "in_scope_suggested": _share(suggested, in_scope),
        "in_scope_bare_fallback": _share(bare, in_scope),
        "in_scope_bare_fallback_right_in_top3": _share(bare_top3, in_scope),
        "wrong_answers": wrong_in + wrong_out,
        "wrong_answers_in_scope": wrong_in,
        "wrong_answers_out_of_scope": wrong_out,
        "wrong_answer_rate": _share(wrong_in + wrong_out, total),
        "answer_precision": _share(correct, answers),
        "out_of_scope_fallback": _share(oos_fallback, oos),
        "top1_accuracy": _share(top1, in_scope),
        "top3_recall": _share(top3, in_scope),
        "mrr": round(reciprocal / in_scope, 4) if in_scope else None,
        "several_expected_all_offered": _share(several_covered, several),
    }


def _offered(result: MatchResult) -> set[str]:
    """The entries a member is shown: the answer and what follows it, or the suggestions."""
    return {faq_id for faq_id in (result.faq_id, *result.also, *result.suggestions) if faq_id}


CURVE_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)


def threshold_curve(index: FaqIndex, cases: list[EvalCase], outcomes: list[MatchResult]) -> list[dict[str, object]]:
    """What answering at each answer threshold would give: correct answers, wrong answers and the
    out-of-scope questions left unanswered (the margin and the off-topic veto apply as in ``match``)."""
    margin = index.settings.answer_margin
    rows: list[dict[str, object]] = []
    for threshold in CURVE_THRESHOLDS:
        correct = wrong = oos_unanswered = in_scope = oos = 0
        for case, result in zip(cases, outcomes, strict=True):
            scores = [c.score for c in result.candidates[:2]] + [0.0, 0.0]
            answers = (bool(result.candidates) and not result.off_topic_terms and result.score >= threshold
                       and scores[0] - scores[1] >= margin)
            top = result.candidates[0].faq_id if result.candidates else None
            if case.expected:
                in_scope += 1
                correct += answers and top in case.expected
                wrong += answers and top not in case.expected
            else:
                oos += 1
                wrong += answers
                oos_unanswered += not answers
        rows.append({"answer_threshold": threshold, "answered_correctly": _share(correct, in_scope),
                     "wrong_answers": wrong, "wrong_answer_rate": _share(wrong, len(cases)),
                     "out_of_scope_unanswered": _share(oos_unanswered, oos)})
    return rows


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
