"""The lexical views weigh terms exactly as scikit-learn would, without loading it in the server.

``bot.faq.tfidf`` replaced scikit-learn's ``CountVectorizer``, ``TfidfTransformer`` and
``normalize`` in the index to spare every process scikit-learn's 67 MB import. These tests hold
it to scikit-learn's values on the JSUG corpus's own texts, and prove the server no longer imports it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.preprocessing import normalize

from bot.faq.index import FaqIndex
from bot.faq.tfidf import TermCounter, as_terms, char_ngrams, l2_rows, smooth_idf, sublinear_tfidf


@pytest.fixture(scope="module")
def corpus_texts(jsug_index: FaqIndex) -> list[str]:
    entries = jsug_index.corpus.entries
    answers = [jsug_index.corpus.render_answer(entry)[0] for entry in entries]
    return [jsug_index.document(text).normalized.chars
            for text in [*jsug_index.variant_texts, *answers, *jsug_index.corpus.unanswered]]


def _same_counts(ours: sparse.csr_matrix, theirs: sparse.spmatrix) -> None:
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    assert (ours != sparse.csr_matrix(theirs)).nnz == 0


def test_character_counts_and_vocabulary_are_scikit_learns(corpus_texts: list[str]) -> None:
    texts = [*corpus_texts, "", "a", "パス  ワード\n\n再設定", "  "]
    reference = CountVectorizer(analyzer="char", ngram_range=(2, 3), lowercase=False, dtype=np.float32)
    theirs = reference.fit_transform(texts)
    counter = TermCounter(char_ngrams)
    _same_counts(counter.fit_transform(texts), theirs)
    assert list(counter.terms) == list(reference.get_feature_names_out())
    assert counter.vocabulary == reference.vocabulary_
    assert sorted(char_ngrams("パス  ワード")) == sorted(reference.build_analyzer()("パス  ワード"))


def test_word_counts_take_the_words_as_given(jsug_index: FaqIndex) -> None:
    words = [jsug_index.document(text).analysis.words for text in jsug_index.variant_texts]
    reference = CountVectorizer(analyzer=lambda value: value, dtype=np.float32)
    counter = TermCounter(as_terms)
    _same_counts(counter.fit_transform(words), reference.fit_transform(words))
    assert counter.vocabulary == reference.vocabulary_


def test_weights_are_scikit_learns_sublinear_tfidf_to_the_bit(corpus_texts: list[str]) -> None:
    counts = TermCounter(char_ngrams).fit_transform(corpus_texts)
    presence = (counts[:400] > 0).tocsr()
    transformer = TfidfTransformer(sublinear_tf=True).fit(presence)
    idf = smooth_idf(presence)
    np.testing.assert_array_equal(idf, transformer.idf_)
    ours, theirs = sublinear_tfidf(counts, idf), transformer.transform(counts)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())


def test_unit_rows_leave_empty_rows_empty() -> None:
    matrix = sparse.csr_matrix(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32))
    ours = l2_rows(matrix)
    np.testing.assert_array_equal(ours.toarray(), normalize(matrix).toarray())
    np.testing.assert_allclose(ours.toarray()[0], [0.6, 0.8, 0.0], rtol=1e-6)
    assert matrix[0, 0] == 3.0


def test_the_server_does_not_load_scikit_learn() -> None:
    code = ("import sys\n"
            "import bot.app, bot.cli\n"
            "from bot.settings import Settings\n"
            "from bot.faq.index import open_index\n"
            "from bot.faq.matcher import match\n"
            "index = open_index(Settings(matcher={'semantic': False}))\n"
            "assert match(index, 'パスワードを忘れました').faq_id == 'password-reset'\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sklearn'))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
