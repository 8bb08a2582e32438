"""FaissIndex against a plain dict model, over random sequences of adds, upserts,
removals and pickle round trips (hypothesis)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cherche_faiss.exceptions import UnknownKeyError
from cherche_faiss.index import FaissIndex

DIMENSION = 6
KEYS = st.sampled_from(["a", "b", "c", "d", "e", 1, 2, 3, (4, 5), None])
VECTORS = st.lists(st.integers(-3, 3), min_size=DIMENSION, max_size=DIMENSION).filter(any)

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.tuples(KEYS, VECTORS), min_size=1, max_size=5)),
        st.tuples(st.just("remove"), st.lists(KEYS, min_size=1, max_size=3, unique_by=repr)),
        st.tuples(st.just("pickle"), st.none()),
    ),
    max_size=12,
)


def unit(vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, query=VECTORS)
def test_index_behaves_like_a_dict(operations, query):
    index = FaissIndex(dimension=DIMENSION)
    model: dict = {}
    for name, argument in operations:
        if name == "add":
            keys = [key for key, _ in argument]
            index.add(np.array([vector for _, vector in argument], dtype=np.float32), keys)
            for key, vector in argument:
                model.pop(key, None)  # re-adding moves a key to the end, as in the index
                model[key] = unit(vector)
        elif name == "remove":
            if all(key in model for key in argument):
                index.remove(argument)
                for key in argument:
                    del model[key]
            else:
                before = index.keys()
                with pytest.raises(UnknownKeyError):
                    index.remove(argument)
                assert index.keys() == before  # a failed remove changes nothing
        else:
            index = pickle.loads(pickle.dumps(index))
        assert len(index) == len(model) == index.faiss_index.ntotal
        assert sorted(map(repr, index.keys())) == sorted(map(repr, model))
    if not model:
        return
    keys = list(model)
    for key in keys:  # every stored vector is the normalised last one added
        np.testing.assert_allclose(index.reconstruct([key])[0], model[key], atol=1e-6)
    similarities, found = index.search(np.asarray(query, dtype=np.float32), k=len(keys))
    expected = {key: float(model[key] @ unit(query)) for key in keys}
    assert sorted(map(repr, found[0])) == sorted(map(repr, keys))
    for key, similarity in zip(found[0], similarities[0]):
        assert similarity == pytest.approx(expected[key], abs=1e-5)
    assert similarities[0] == sorted(similarities[0], reverse=True)
