"""Digests batched through Amazon SES's bulk send of a stored template (SES v2 ``SendBulkEmail``).

anymail's own Amazon SES backend and boto3 make each call, with the client settings Paperboy
gives them; only the endpoint is an imitation of SES on the loopback interface
(``tests.fakes.amazon_ses``), which records what it read and answers as SES does.
"""

import pytest

from digest.sending import send_edition_to
from tests import ledger
from tests.digest.builders import built_edition
from tests.factories import SubscriberFactory
from tests.fakes.amazon_ses import DROP, FakeSES

pytestmark = pytest.mark.django_db


@pytest.fixture
def ses(settings):
    with FakeSES() as fake:
        settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
        settings.DIGEST_ESP_TEMPLATE_ID = "paperboy-digest"
        client_params = settings.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "AMAZON_SES_CLIENT_PARAMS": {**client_params, "endpoint_url": fake.base_url},
            "AMAZON_SES_SESSION_PARAMS": {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret"},
        }
        yield fake


@pytest.fixture
def readers():
    return [SubscriberFactory(interests=i) for i in ("diffusion models", "language models", "")]


def test_each_reader_gets_their_own_entry_in_one_bulk_call(ses, readers):
    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert report.sent == 3
    [call] = ses.calls
    assert call["DefaultContent"]["Template"]["TemplateName"] == "paperboy-digest"
    assert sorted(ses.recipients()) == sorted(r.email for r in readers)
    assert {ledger.of(r).esp_message_id for r in readers} == {"ses-1-0", "ses-1-1", "ses-1-2"}


def test_a_call_whose_answer_is_lost_is_made_once_and_never_again(ses, readers):
    """SES may have taken a call whose connection dropped before it answered: botocore must not
    send it again by itself (every reader of the batch would get a second digest)."""
    ses.script(DROP)

    report = send_edition_to(built_edition(), [r.pk for r in readers])

    assert len(ses.calls) == 1
    assert report.sent == 0 and len(report.unknown) == 3
    assert {ledger.of(r).status for r in readers} == {"sending"}  # stale: failed, never resent


def test_the_ses_client_waits_esp_timeout_seconds(settings):
    config = settings.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]["config"]
    timeout = settings.ANYMAIL["REQUESTS_TIMEOUT"]
    assert (config["connect_timeout"], config["read_timeout"]) == (timeout, timeout)
