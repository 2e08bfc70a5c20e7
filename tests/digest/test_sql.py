import pytest

from digest.sql import id_array


def test_ids_are_written_as_the_text_of_a_postgresql_array():
    assert id_array([3, 10_000_000_001, 1]) == "{3,10000000001,1}"
    assert id_array(iter([7])) == "{7}"


def test_no_ids_make_an_empty_array():
    assert id_array([]) == "{}"


def test_anything_but_an_integer_id_is_refused_before_it_reaches_the_statement():
    with pytest.raises(ValueError):
        id_array([1, "2}; DROP TABLE digest_delivery; --"])
