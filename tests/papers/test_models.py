import pytest
from django.db import IntegrityError, connection

from tests.factories import PaperFactory

pytestmark = pytest.mark.django_db


def test_suite_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_arxiv_id_is_unique():
    PaperFactory(arxiv_id="2611.00001")
    with pytest.raises(IntegrityError):
        PaperFactory(arxiv_id="2611.00001")
