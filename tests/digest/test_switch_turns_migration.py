"""The migration that starts the switch's history keeps the turns its row already records."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = [("digest", "0014_sending_pause")], [("digest", "0015_sending_switch_turns")]


@pytest.fixture(autouse=True)
def migrated_to_the_latest_afterwards():
    """Later tests find every app's latest schema, whichever migrations come after these."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrated(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def turns_after_migrating(**switch):
    apps = migrated(BEFORE)
    if switch:
        apps.get_model("digest", "SendingPause").objects.create(pk=1, **switch)
    apps = migrated(AFTER)
    return list(apps.get_model("digest", "SwitchTurn").objects.order_by("at")
                .values_list("at", "paused", "by", "via", "reason"))


def test_a_paused_and_resumed_switch_becomes_two_turns_of_unrecorded_origin():
    paused_at, resumed_at = datetime(2026, 11, 18, 6, 5, tzinfo=UTC), datetime(2026, 11, 18, 7, 0, tzinfo=UTC)

    turns = turns_after_migrating(paused=False, paused_at=paused_at, paused_by="alice", reason="a broken edition",
                                  resumed_at=resumed_at, resumed_by="bob")

    assert turns == [(paused_at, True, "alice", "other", "a broken edition"), (resumed_at, False, "bob", "other", "")]


def test_a_switch_paused_again_after_its_last_resume_becomes_one_turn():
    turns = turns_after_migrating(paused=True, paused_at=datetime(2026, 11, 19, 6, 0, tzinfo=UTC), paused_by="carol",
                                  reason="again", resumed_at=datetime(2026, 11, 18, 7, 0, tzinfo=UTC),
                                  resumed_by="bob")

    assert [(paused, by) for _, paused, by, _, _ in turns] == [(True, "carol")]


def test_a_switch_never_turned_or_never_made_has_no_turns():
    assert turns_after_migrating() == []
    assert turns_after_migrating(paused=False) == []
