"""The trending score: one formula, in one place.

    points = upvotes + 2·comments + stars/10 + 3·max(upvote gain since yesterday, 0)
    score  = (points + 1) / (age_hours + 2) ** GRAVITY

a Hacker-News-style gravity: community signal lifts a paper, age pulls it
down. The "+1" means a paper with no signal at all still has a score that
falls with age, so an edition without any signal ranks by recency.
"""

GRAVITY = 1.5


def trending_points(paper, upvote_gain=0):
    return (
        paper.upvotes
        + 2 * paper.num_comments
        + paper.github_stars / 10
        + 3 * max(upvote_gain, 0)
    )


def paper_age_hours(paper, as_of):
    reference = paper.published_at or paper.first_seen_at
    return max((as_of - reference).total_seconds() / 3600, 0.0)


def trending_score(paper, upvote_gain, as_of):
    points = trending_points(paper, upvote_gain)
    return (points + 1) / (paper_age_hours(paper, as_of) + 2) ** GRAVITY


def trending_reason(paper, upvote_gain=0):
    """The why-line for a paper that is there because it trends."""
    parts = []
    if paper.upvotes:
        parts.append(f"{paper.upvotes} upvotes")
    if upvote_gain > 0:
        parts.append(f"+{upvote_gain} today")
    if paper.num_comments:
        parts.append(f"{paper.num_comments} comments")
    if paper.github_stars:
        parts.append(f"{paper.github_stars} GitHub stars")
    return "trending: " + ", ".join(parts) if parts else "new today"
