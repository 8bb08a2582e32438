"""The filter language: parse_filter's structure checks and the paths its errors name."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cherche_faiss.exceptions import InvalidFilterError, InvalidInputError
from cherche_faiss.filters import (
    MAX_DEPTH,
    MAX_TERMS,
    AllowedKeys,
    And,
    Compare,
    Exists,
    Member,
    Not,
    Or,
    parse_filter,
)


def test_plain_values_mean_eq_and_fields_side_by_side_all_hold():
    parsed = parse_filter({"year": {"$gte": 2020}, "lang": "en"})
    assert parsed.expression == And(
        (Compare("year", "$gte", 2020, 'filter["year"]["$gte"]'), Compare("lang", "$eq", "en", 'filter["lang"]'))
    )
    assert parsed.fields == frozenset({"year", "lang"})
    assert not parsed.keys_only


def test_every_operator_parses():
    parsed = parse_filter(
        {
            "$or": [{"a": {"$ne": 1}}, {"b": {"$in": [1, 2, 2]}}, {"c": {"$nin": ("x",)}}],
            "$and": [{"d": {"$exists": False}}, {"e": {"$lt": 3, "$gt": 1.5}}],
            "$not": {"f": {"$lte": "m"}},
            "g": {"$not": {"$eq": True}},
        }
    )
    terms = parsed.expression.terms
    assert isinstance(terms[0], Or) and terms[0].terms[1] == Member("b", (1, 2), False, 'filter["$or"][1]["b"]["$in"]')
    assert isinstance(terms[1], And) and isinstance(terms[1].terms[0], Exists)
    assert isinstance(terms[2], Not) and isinstance(terms[3], Not)
    assert parsed.fields == frozenset("abcdefg")


def test_collections_of_keys_are_filters():
    assert parse_filter(["a", "b", "a"]).expression == AllowedKeys(("a", "b"))
    assert parse_filter(np.array([3, 1])).expression == AllowedKeys((3, 1))
    assert parse_filter({2, 1}).keys_only and parse_filter(frozenset()).expression == AllowedKeys(())


def test_parsed_filters_are_immutable_and_pickle():
    parsed = parse_filter({"year": 2020})
    with pytest.raises(AttributeError):
        parsed.expression = None  # type: ignore[misc]
    assert parse_filter(parsed) is parsed
    assert pickle.loads(pickle.dumps(parsed)) == parsed


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"year": {"$gt": [2020]}}, 'filter["year"]["$gt"]'),
        ({"year": {"$gt": True}}, 'filter["year"]["$gt"]'),
        ({"year": {"$in": []}}, 'filter["year"]["$in"]'),
        ({"year": {"$in": 2020}}, 'filter["year"]["$in"]'),
        ({"year": {"$in": [1, {"a": 1}]}}, 'filter["year"]["$in"][1]'),
        ({"year": {"$exists": 1}}, 'filter["year"]["$exists"]'),
        ({"year": {"$regex": "x"}}, 'filter["year"]["$regex"]'),
        ({"$nor": []}, 'filter["$nor"]'),
        ({"$and": []}, 'filter["$and"]'),
        ({"$or": [{"a": 1}, {"b": {"$bad": 1}}]}, 'filter["$or"][1]["b"]["$bad"]'),
        ({"year": None}, 'filter["year"]'),
        ({"year": float("nan")}, 'filter["year"]'),
        ({"year": {}}, 'filter["year"]'),
        ({"year": {"$not": 3}}, 'filter["year"]["$not"]'),
        ({3: 1}, "filter[3]"),
        ("year", "filter"),
        ([["unhashable"]], "filter[0]"),
    ],
)
def test_malformed_filters_name_the_offending_part(bad, path):
    with pytest.raises(InvalidFilterError) as raised:
        parse_filter(bad)
    assert raised.value.path == path
    assert path in str(raised.value)
    assert isinstance(raised.value, InvalidInputError) and isinstance(raised.value, ValueError)
    assert pickle.loads(pickle.dumps(raised.value)).path == path


def test_limits():
    deep: dict = {"a": 1}
    for _ in range(MAX_DEPTH):
        deep = {"$not": deep}
    with pytest.raises(InvalidFilterError, match="MAX_DEPTH"):
        parse_filter(deep)
    with pytest.raises(InvalidFilterError, match="MAX_TERMS"):
        parse_filter({"$or": [{"a": number} for number in range(MAX_TERMS + 1)]})
    parse_filter({"$or": [{"a": number} for number in range(MAX_TERMS)]})
