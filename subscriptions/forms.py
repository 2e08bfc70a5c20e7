"""The signup, preferences, resend and import forms.

Forms only validate and normalise; what happens next is up to
``subscriptions.services``. ``cleaned_data`` of a preferences form is exactly
the ``preferences`` dict the services expect.
"""

from functools import lru_cache

from django import forms
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string

from .models import Subscriber
from .validation import (
    MAX_EMAIL_LENGTH,
    MAX_INTERESTS_TEXT_LENGTH,
    category_choices,
    clean_interests,
    normalise_email,
    timezone_choices,
    timezone_groups,
    timezone_names,
)

SEND_HOUR_CHOICES = [(hour, f"{hour:02d}:00") for hour in range(24)]
DEFAULT_SEND_HOUR = 7
DEFAULT_TIMEZONE = "UTC"


class TimezoneSelect(forms.Select):
    """The ~600 time zones, their options rendered once per selected value and cached.

    Rendering that many options through Django's per-option widget templates
    took most of the signup page's time.
    """

    template_name = "subscriptions/widgets/timezone_select.html"

    def get_context(self, name, value, attrs):
        context = forms.Widget.get_context(self, name, value, attrs)  # skips the optgroups
        context["widget"]["options"] = timezone_options(value if isinstance(value, str) else "")
        return context


class TimezoneField(forms.ChoiceField):
    """A choice of IANA zone: the ~600 choices are a callable, listed only when something
    iterates them, and a value is checked against a set. Assigning the list to every
    form took most of the time of building one."""

    def __init__(self, **kwargs):
        super().__init__(choices=timezone_choices, widget=TimezoneSelect, **kwargs)

    def valid_value(self, value):
        return value in known_timezones()


@lru_cache(maxsize=1)
def known_timezones():
    return frozenset(timezone_names()) | {"UTC"}


@lru_cache(maxsize=32)
def timezone_options(selected):
    context = {"groups": timezone_groups(), "selected": selected}
    return render_to_string("subscriptions/widgets/timezone_options.html", context)


class NormalisedEmailField(forms.CharField):
    """An address, stripped and with its domain lowercased and IDNA-encoded."""

    widget = forms.EmailInput

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_EMAIL_LENGTH)
        super().__init__(**kwargs)

    def widget_attrs(self, widget):
        attrs = super().widget_attrs(widget)
        attrs.update({"autocomplete": "email", "spellcheck": "false", "autocapitalize": "off"})
        return attrs

    def clean(self, value):
        value = super().clean(value)
        return normalise_email(value) if value else value


class HoneypotField(forms.CharField):
    """A field people never see or fill; bots that fill every input give themselves away."""

    def __init__(self, **kwargs):
        super().__init__(
            required=False,
            max_length=200,
            widget=forms.TextInput(attrs={"tabindex": "-1", "autocomplete": "off"}),
            **kwargs,
        )


NOT_OFFERED = "Pick one of the choices offered."


class PreferencesForm(forms.Form):
    interests = forms.CharField(
        required=False,
        max_length=MAX_INTERESTS_TEXT_LENGTH,
        label="Your interests",
        help_text="Keywords or phrases, separated by commas. Up to 20.",
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "diffusion models, RLHF, graph neural networks"}
        ),
    )
    categories = forms.MultipleChoiceField(
        required=False,
        label="arXiv categories",
        widget=forms.CheckboxSelectMultiple,
    )
    frequency = forms.ChoiceField(
        choices=Subscriber.Frequency.choices,
        initial=Subscriber.Frequency.DAILY,
        label="How often",
        widget=forms.RadioSelect,
    )
    max_papers = forms.TypedChoiceField(
        choices=Subscriber.MAX_PAPERS_CHOICES,
        coerce=int,
        initial=10,
        label="Papers per email",
        widget=forms.RadioSelect,
    )
    send_hour = forms.TypedChoiceField(
        choices=SEND_HOUR_CHOICES, coerce=int, initial=DEFAULT_SEND_HOUR, label="Send at"
    )
    timezone = TimezoneField(initial=DEFAULT_TIMEZONE, label="Time zone")
    always_send_top = forms.BooleanField(
        required=False,
        label="When nothing matches my interests, send the top trending papers anyway",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["categories"].choices = category_choices()
        for field in self.fields.values():
            if isinstance(field, forms.ChoiceField):
                # Django's message repeats the value posted, however long it is.
                field.error_messages["invalid_choice"] = NOT_OFFERED

    def clean_interests(self):
        return clean_interests(self.cleaned_data["interests"])

    def clean_categories(self):
        return list(dict.fromkeys(self.cleaned_data["categories"]))

    @classmethod
    def initial_for(cls, subscriber):
        return {name: getattr(subscriber, name) for name in cls.base_fields}


class SignupForm(PreferencesForm):
    """Email alone is enough: a preference left out of the POST takes its default."""

    email = NormalisedEmailField(label="Email address")
    website = HoneypotField(label="Leave this field empty")

    field_order = ["email"]
    DEFAULTED = ("frequency", "max_papers", "send_hour", "timezone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.DEFAULTED:
            self.fields[name].required = False
        if not self.is_bound:  # a re-shown form keeps the zone the visitor chose
            self.fields["timezone"].widget.attrs["data-detect-timezone"] = ""

    def clean(self):
        cleaned = super().clean()
        for name in self.DEFAULTED:
            if name in cleaned and cleaned[name] in ("", None):
                cleaned[name] = self.fields[name].initial
        return cleaned

    @property
    def is_bot(self):
        return bool(self.cleaned_data.get("website"))

    @property
    def preferences(self):
        return {name: self.cleaned_data[name] for name in PreferencesForm.base_fields}


class ResendForm(forms.Form):
    email = NormalisedEmailField(label="Email address")
    website = HoneypotField(label="Leave this field empty")

    @property
    def is_bot(self):
        return bool(self.cleaned_data.get("website"))


class NewAddressForm(forms.Form):
    """The preferences page's "Your address" card: where the reader is moving to."""

    email = NormalisedEmailField(label="New email address")


class ImportForm(forms.Form):
    MAX_FILE_BYTES = 5 * 1024 * 1024

    file = forms.FileField(
        label="CSV file",
        help_text=(
            "UTF-8, with a header row. Columns: email (required), interests, categories "
            "(space separated), frequency, max_papers, send_hour, timezone, always_send_top, "
            "confirmed_at and consent_note. Rows with a confirmed_at date record earlier "
            "consent and are imported as active; all others are imported as pending and "
            "get a confirmation email."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_FILE_BYTES:
            raise ValidationError("The file is larger than 5 MB: split it, please.")
        return upload
