"""Template helpers for the site chrome."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def contact_email():
    return settings.CONTACT_EMAIL
