import pytest
from django.core.exceptions import ValidationError

from subscriptions.forms import PreferencesForm, SignupForm
from subscriptions.validation import (
    MAX_INTERESTS,
    clean_interests,
    normalise_email,
    timezone_names,
)
from tests.subscriptions.helpers import preference_data, signup_data


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Ada@EXAMPLE.org \n", "Ada@example.org"),
        ("ada@exämple.org", "ada@xn--exmple-cua.org"),
        ("ada@EXAMPLE.org.", "ada@example.org"),
    ],
)
def test_email_is_stripped_and_its_domain_lowercased_and_idna_encoded(typed, stored):
    assert normalise_email(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "victim@example.org\nBcc: everyone@example.org",
        "victim@example.org\r\nSubject: hi",
        "vic\x00tim@example.org",
        "not-an-address",
        "two@@example.org",
        "ada@exa_mple.org",
        "ada@example..org",
        "ada@localhost",
        "a" * 250 + "@example.org",
        "",
    ],
)
def test_malformed_or_injected_addresses_are_refused_with_a_message(typed):
    with pytest.raises(ValidationError) as caught:
        normalise_email(typed)
    assert caught.value.messages[0]


@pytest.mark.parametrize("typed", ["jürgen@example.org", "李明@example.cn", "zoë.müller@example.de"])
def test_an_address_with_non_ascii_letters_before_the_at_is_refused_saying_why(typed):
    with pytest.raises(ValidationError) as caught:
        normalise_email(typed)
    assert caught.value.code == "non_ascii_local_part"
    assert "before the @ are not supported" in caught.value.messages[0]


@pytest.mark.parametrize("typed", ['"victim"@example.org', '"vic\\tim"@example.org', '"john doe"@example.org'])
def test_a_quoted_address_is_refused_saying_why(typed):
    """Mail to "victim"@example.org reaches victim@example.org: kept as typed, each spelling would
    be a new reader, a new rate-limit key and a new suppression hash for one mailbox."""
    with pytest.raises(ValidationError) as caught:
        normalise_email(typed)
    assert caught.value.code == "quoted_local_part"
    assert "without the quotes" in caught.value.messages[0]


@pytest.mark.django_db
def test_a_quoted_spelling_of_a_suppressed_address_gets_no_confirmation(client, mailoutbox):
    from subscriptions import services
    from subscriptions.models import Subscriber

    services.suppress_email("victim@example.org", "complained")
    response = client.post("/", signup_data(email='"victim"@example.org'))
    assert response.status_code == 400 and mailoutbox == [] and not Subscriber.objects.exists()


def test_a_newline_in_the_email_gets_a_clear_message():
    form = SignupForm(signup_data(email="a@example.org\nBcc: b@example.org"))
    assert not form.is_valid()
    assert "line breaks" in form.errors["email"][0]


def test_interests_are_split_tidied_and_deduplicated():
    text = "diffusion models;  RLHF\ngraph   neural networks, rlhf,,"
    assert clean_interests(text) == "diffusion models, RLHF, graph neural networks"


def test_too_many_interests_are_refused():
    with pytest.raises(ValidationError, match="Up to 20 interests"):
        clean_interests(", ".join(f"topic {n}" for n in range(MAX_INTERESTS + 1)))


def test_an_overlong_interest_is_refused():
    with pytest.raises(ValidationError, match="to 60 characters at most"):
        clean_interests("x" * 61)


def test_an_interest_of_exactly_the_limit_is_kept():
    assert clean_interests("x" * 60) == "x" * 60


@pytest.mark.parametrize("text", ["x", "diffusion, x", "RL, 3D, é"])
def test_a_single_character_interest_is_refused(text):
    with pytest.raises(ValidationError, match="too short to pick papers by"):
        clean_interests(text)


def test_two_character_interests_are_kept():
    assert clean_interests("RL, 3D") == "RL, 3D"


def test_interests_text_has_a_length_cap():
    form = PreferencesForm(preference_data(interests="a, " * 600))
    assert not form.is_valid()
    assert "interests" in form.errors


def test_time_zones_come_from_the_iana_list():
    assert "Europe/Berlin" in timezone_names()
    assert PreferencesForm(preference_data(timezone="Europe/Berlin")).is_valid()
    assert not PreferencesForm(preference_data(timezone="Mars/Olympus_Mons")).is_valid()
    assert not PreferencesForm(preference_data(timezone="Europe/Berlin\n")).is_valid()


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_papers", "7"), ("frequency", "hourly"), ("send_hour", "24"), ("categories", "cs.XX")],
)
def test_values_outside_the_offered_choices_are_refused(field, value):
    assert field in PreferencesForm(preference_data(**{field: value})).errors


@pytest.mark.parametrize("field", ["timezone", "frequency", "send_hour", "max_papers", "categories"])
def test_a_refused_choice_is_not_repeated_in_its_error_message(field):
    posted = ["Z" * 5000] if field == "categories" else "Z" * 5000
    errors = PreferencesForm(preference_data(**{field: posted})).errors[field]
    assert errors == ["Pick one of the choices offered."]


def test_the_form_starts_with_sensible_defaults():
    form = SignupForm()
    assert form["frequency"].value() == "daily"
    assert form["max_papers"].value() == 10
    assert form["send_hour"].value() == 7
    assert form["timezone"].value() == "UTC"


def test_the_time_zone_field_accepts_exactly_the_zones_it_offers():
    from subscriptions.forms import PreferencesForm

    field = PreferencesForm().fields["timezone"]
    offered = set()
    for value, label in field.choices:
        offered |= {v for v, _ in label} if isinstance(label, (list, tuple)) else {value}

    assert "UTC" in offered and "Europe/Paris" in offered and len(offered) > 300
    assert all(field.valid_value(zone) for zone in offered)
    for junk in ("Mars/Olympus", "", "utc ", "Europe/Paris\x00", "../etc/passwd"):
        assert not field.valid_value(junk)
