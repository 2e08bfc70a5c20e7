import re

import pytest
from django.core import mail

from subscriptions import services
from tests.subscriptions.helpers import link_in

pytestmark = pytest.mark.django_db



def ask_to_move(reader):
    """The link to a new address, mailed there."""
    services.request_address_change(reader, "moved@example.org")


def move(reader):
    """The note to the address a reader left, the only email sent here."""
    services.request_address_change(reader, "moved@example.org")
    reader.refresh_from_db()
    mail.outbox.clear()
    services.confirm_new_address(reader, services.new_address_key("moved@example.org"))


# Each email of the account, sent to a reader of the status it is for.
EACH_ACCOUNT_EMAIL = pytest.mark.parametrize(
    "send, reader",
    [
        (services.send_confirmation, "pending"),
        (services.send_already_subscribed, "subscriber"),
        (services.revoke_links, "subscriber"),
        (ask_to_move, "subscriber"),
        (move, "subscriber"),
    ],
)


def test_the_confirmation_email_has_text_and_html_with_the_same_link(pending):
    services.send_confirmation(pending)
    message = mail.outbox[0]
    assert message.subject == "Confirm your Paperboy subscription"
    assert message.to == ["pending@example.org"]
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    path = link_in(message.body, "confirm")
    assert path in html
    assert 'width="600"' in html  # Outlook's fixed table around the card
    assert "max-width: 600px" in html  # the card itself is fluid up to 600px
    assert "style=" in html  # the builder inlined the CSS
    assert "7 days" in message.body


@EACH_ACCOUNT_EMAIL
def test_each_email_names_its_language_and_direction_and_has_a_title_and_one_heading(send, reader, request):
    send(request.getfixturevalue(reader))
    html = mail.outbox[0].alternatives[0][0]
    assert '<html lang="en" dir="ltr">' in html
    assert re.search(r"<title>[^<]+</title>", html)
    assert html.count("<h1") == 1


@EACH_ACCOUNT_EMAIL
def test_no_template_syntax_reaches_the_reader(send, reader, request):
    """A Django comment ``{# … #}`` spans one line only: one spread over two is sent as text."""
    send(request.getfixturevalue(reader))
    message = mail.outbox[0]
    for body in (message.body, message.alternatives[0][0]):
        assert not re.search(r"\{[#%{]|[#%]\}", body)


def test_the_confirmation_email_is_not_list_mail(pending):
    services.send_confirmation(pending)
    assert "List-Unsubscribe" not in mail.outbox[0].extra_headers


def test_the_confirmation_link_confirms(client, pending):
    services.send_confirmation(pending)
    client.post(link_in(mail.outbox[0].body, "confirm"))
    pending.refresh_from_db()
    assert pending.status == "active"


def test_the_already_subscribed_email_carries_preferences_and_one_click_unsubscribe(subscriber):
    services.send_already_subscribed(subscriber)
    message = mail.outbox[0]
    assert link_in(message.body, "preferences")
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in message.extra_headers["List-Unsubscribe"]


def test_an_address_is_escaped_in_the_html(db):
    from tests.factories import SubscriberFactory

    odd = SubscriberFactory(email="o'<b>@example.org", status="pending", confirmed_at=None)
    services.send_confirmation(odd)
    html = mail.outbox[0].alternatives[0][0]
    assert "<b>@example.org" not in html


def test_the_new_address_email_goes_there_with_the_same_link_in_text_and_html_and_is_not_list_mail(subscriber):
    ask_to_move(subscriber)
    [message] = mail.outbox
    assert message.to == ["moved@example.org"]
    html = message.alternatives[0][0]
    assert link_in(message.body, "new-address") in html
    assert "style=" in html and "2 days" in message.body
    assert "List-Unsubscribe" not in message.extra_headers


def test_the_note_to_the_old_address_names_the_new_one_and_carries_no_link_to_the_account(subscriber):
    move(subscriber)
    [message] = mail.outbox
    assert message.to == ["ada@example.org"]
    assert "moved@example.org" in message.body and "moved@example.org" in message.alternatives[0][0]
    assert "/preferences/" not in message.body and "List-Unsubscribe" not in message.extra_headers
