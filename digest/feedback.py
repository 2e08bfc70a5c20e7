"""Reader votes (👍/👎) on papers in their digest; they steer the relevance model."""

from dataclasses import dataclass

from papers.models import Paper

from .models import Feedback


class InvalidVote(Exception):
    pass


@dataclass(frozen=True)
class Vote:
    subscriber: object
    paper: Paper
    value: int


def vote_from_payload(payload):
    value = payload.extra.get("v")
    paper = Paper.objects.filter(pk=payload.extra.get("p")).first()
    if value not in (1, -1) or paper is None:
        raise InvalidVote("unknown paper or vote")
    return Vote(payload.subscriber, paper, value)


def record_vote(vote):
    """One vote per subscriber and paper; the latest click wins."""
    Feedback.objects.update_or_create(
        subscriber=vote.subscriber, paper=vote.paper, defaults={"vote": vote.value}
    )
