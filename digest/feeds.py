"""A subscriber's private Atom feed of their digests, for people who prefer a feed reader."""

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.http import Http404
from django.utils.cache import add_never_cache_headers
from django.utils.feedgenerator import Atom1Feed

from subscriptions import tokens

from .emails import absolute_url
from . import calls
from .rendering import delivered_papers, digest_subject

FEED_LENGTH = 30


class SubscriberDigestFeed(Feed):
    feed_type = Atom1Feed
    description_template = "digest/feed_item.html"

    def __call__(self, request, *args, **kwargs):
        response = super().__call__(request, *args, **kwargs)
        response["X-Robots-Tag"] = "noindex"
        add_never_cache_headers(response)  # one reader's digests: no shared cache keeps them
        return response

    def get_object(self, request, token):
        try:
            return tokens.read_token(token, tokens.FEED).subscriber
        except tokens.InvalidToken:
            raise Http404("No such feed") from None

    def title(self, subscriber):
        return "Your Paperboy digests"

    def subtitle(self, subscriber):
        return "The machine learning papers picked for you, one entry per digest."

    def link(self, subscriber):
        return settings.SITE_URL + "/"

    def items(self, subscriber):
        return calls.sent_deliveries(subscriber, FEED_LENGTH)

    def item_title(self, delivery):
        return digest_subject(delivery.edition, delivered_papers(delivery))

    def item_link(self, delivery):
        """The public edition page. Not the email in the browser: that page carries the reader's
        address and a working preferences link (and with it the power to move or delete the
        subscription), and a feed URL is often handed to a hosted feed reader. The entry itself
        holds the reader's papers and why-lines."""
        return absolute_url(delivery.edition.public_path())

    def item_guid(self, delivery):
        return f"tag:{settings.EMAIL_MESSAGE_ID_DOMAIN},{delivery.edition.date:%Y-%m-%d}:delivery-{delivery.pk}"

    item_guid_is_permalink = False

    def item_pubdate(self, delivery):
        return delivery.sent_at

    def item_updateddate(self, delivery):
        return delivery.sent_at

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        delivery = kwargs["item"]
        context["papers"] = delivered_papers(delivery)
        # A paper without an arXiv or Hugging Face page links to the edition's, as in the email.
        context["edition_url"] = absolute_url(delivery.edition.public_path())
        return context
