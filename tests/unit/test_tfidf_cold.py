"""A loaded TF-IDF retriever answers without importing scikit-learn, with the same hits.

The analyzers of ``cherche_faiss.retrieve._tfidf_analyzers`` are compared with
scikit-learn's on random unicode text."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from cherche_faiss.retrieve._tfidf_analyzers import query_analyzer

# Characters where scikit-learn's steps could differ from a careless rewrite: whitespace that
# str.split and the regex \s see (and one they do not), case changes that alter the length,
# compatibility forms NFKD expands, combining marks, astral characters.
_TRICKY = (" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\u200b"
           "aAzZéÉèÀçÇñÑ\u0301\u0327\u0308ﬁﬀİıßẞΣσςǅǄ½²" "0123456789_-.,;!?'\"" "日本語😀\U0001d400")
texts = st.one_of(st.text(alphabet=st.sampled_from(_TRICKY), max_size=40), st.text(max_size=40))
ngram_ranges = st.tuples(st.integers(1, 8), st.integers(0, 6)).map(lambda pair: (pair[0], pair[0] + pair[1]))
analyzer_params = st.fixed_dictionaries({
    "analyzer": st.sampled_from(["char_wb", "char", "word"]),
    "ngram_range": st.one_of(st.sampled_from([(1, 1), (1, 2), (2, 2), (3, 7), (1, 12)]), ngram_ranges),
    "lowercase": st.booleans(),
    "strip_accents": st.sampled_from([None, "ascii", "unicode"]),
    "token_pattern": st.sampled_from([r"(?u)\b\w\w+\b", r"(?u)\b\w+\b", r"\S+", r"(\w)\w", r"[a-z]+", r"."]),
})


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(params=analyzer_params, text=texts)
def test_analyzers_equal_scikit_learn(params, text):
    vectorizer = TfidfVectorizer(**params)
    analyzer = query_analyzer(vectorizer.get_params())
    assert analyzer is not None
    assert analyzer(text) == vectorizer.build_analyzer()(text)  # the same n-grams, in the same order


def test_analyzers_leave_other_settings_to_scikit_learn():
    for params in ({"stop_words": "english"}, {"stop_words": ["the"]}, {"input": "filename"},
                   {"preprocessor": str.lower}, {"analyzer": str.split}, {"strip_accents": str.lower},
                   {"ngram_range": (0, 2)}, {"token_pattern": r"(a)(b)"}, {"lowercase": np.True_}):
        assert query_analyzer(TfidfVectorizer(**params).get_params()) is None, params
