"""Reader votes (👍/👎) on papers in their digest; they steer the relevance model.

A digest carries one signed token per reader and edition; each vote link is
that token plus the paper and the choice. A vote counts only for a paper of
that edition, and only when posted: a GET (what mail scanners prefetch) just
shows the page that posts it.
"""

from dataclasses import dataclass

from subscriptions import tokens

from .models import EditionPaper, Feedback

CHOICES = {"up": Feedback.Vote.LIKE, "down": Feedback.Vote.DISLIKE}
MAX_ID = 2**63  # a bigger number in a URL is no id of ours


class InvalidVote(Exception):
    pass


def is_row_id(value):
    """Whether a value from a signed payload or a URL can be one of our row ids (a positive
    64-bit integer): anything else is refused before it reaches the database."""
    return type(value) is int and 0 < value < MAX_ID


@dataclass(frozen=True)
class Vote:
    subscriber: object
    paper: object
    value: int

    @property
    def is_like(self):
        return self.value > 0


def vote_from_link(token, paper_id, choice):
    """The vote a link stands for; InvalidVote (or tokens.InvalidToken) when it is not genuine."""
    payload = tokens.read_token(token, tokens.FEEDBACK)
    edition_id = payload.extra.get("e")
    if choice not in CHOICES or not is_row_id(edition_id) or not is_row_id(paper_id):
        raise InvalidVote("unknown choice, edition or paper")
    entry = (
        EditionPaper.objects.filter(edition_id=edition_id, paper_id=paper_id)
        .select_related("paper")
        .first()
    )
    if entry is None:
        raise InvalidVote("the paper is not in that edition")
    return Vote(payload.subscriber, entry.paper, CHOICES[choice])


def record_vote(vote):
    """One vote per subscriber and paper; the latest click wins."""
    Feedback.objects.update_or_create(
        subscriber=vote.subscriber, paper=vote.paper, defaults={"vote": vote.value}
    )
