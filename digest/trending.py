"""The trending score: one formula, in one function (``trending_score``).

    points   = upvotes + 2·comments + stars/10
    velocity = the gain in points since yesterday's PaperSignal (never negative)
    score    = (points + VELOCITY_WEIGHT·velocity + 1) / (age_hours + 2) ** GRAVITY

A Hacker-News-style gravity: community signal lifts a paper, its velocity
lifts it more, age pulls it down. The "+1" gives a paper without any signal
a score that only falls with age, so an edition without any community signal
(the bundled corpus is mostly zeros) still ranks by recency.

A paper's age counts from its publication, but from no earlier than
``MAX_AGE_BEFORE_SEEN`` before we first saw it: an older paper that starts
trending today is not buried by its publication date. A paper whose
publication date no source gave (most of the bundled corpus) counts from that
earliest point too: an unknown date earns no freshness, or every undated paper
would outrank every dated one seen with it, whatever their signal.
"""

from dataclasses import dataclass
from datetime import timedelta

GRAVITY = 1.5
VELOCITY_WEIGHT = 3
COMMENT_WEIGHT = 2
STARS_PER_POINT = 10
MAX_AGE_BEFORE_SEEN = timedelta(days=3)


@dataclass(frozen=True)
class SignalGain:
    """How much a paper's community signal grew since the day before."""

    upvotes: int = 0
    comments: int = 0
    stars: int = 0


NO_GAIN = SignalGain()


def signal_points(upvotes, comments, stars):
    return upvotes + COMMENT_WEIGHT * comments + stars / STARS_PER_POINT


def trending_points(paper, gain=NO_GAIN):
    points = signal_points(paper.upvotes, paper.num_comments, paper.github_stars)
    velocity = max(signal_points(gain.upvotes, gain.comments, gain.stars), 0)
    return points + VELOCITY_WEIGHT * velocity


def paper_age_hours(paper, as_of):
    reference = paper.first_seen_at - MAX_AGE_BEFORE_SEEN
    if paper.published_at is not None:
        reference = max(paper.published_at, reference)
    return max((as_of - reference).total_seconds() / 3600, 0.0)


def trending_score(paper, gain, as_of):
    """The one trending formula (see the module docstring)."""
    return (trending_points(paper, gain) + 1) / (paper_age_hours(paper, as_of) + 2) ** GRAVITY


def trending_reason(paper, gain=NO_GAIN, *, new_label="new today"):
    """The why-line for a paper that is there because it trends: "trending: 57 upvotes, +20 today"."""
    parts = []
    if paper.upvotes:
        parts.append(counted(paper.upvotes, "upvote"))
    if gain.upvotes > 0:
        parts.append(f"+{gain.upvotes} today")
    if paper.num_comments:
        parts.append(counted(paper.num_comments, "comment"))
    if paper.github_stars:
        stars = counted(paper.github_stars, "GitHub star")
        parts.append(f"{stars} (+{gain.stars})" if gain.stars > 0 else stars)
    return "trending: " + ", ".join(parts) if parts else new_label


def counted(number, noun):
    """The count and its noun, in the plural unless it is one: "1 upvote", "57 upvotes"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
