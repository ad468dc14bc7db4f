"""The change feeds (``airflow_provider_b24.changes``) over HTTPS against the emulator, real client.

``source="poll"``: the ``LAST_UPDATED`` cursor at equal seconds (nothing skipped, nothing re-sent),
one request per idle poll, 2,500-ID caps, batched backlog paging, the filter. ``source=
"offline_events"``: binding, reservation and confirmation, deletions, redelivery of an unconfirmed
reservation, and the refusals (webhook, plan) with messages that say what to do. The emulator's
clock is a fake one, so "the same second" is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_b24.changes import (
    MAX_IDS_PER_EVENT,
    OfflineEventsFeed,
    PollCursor,
    PollFeed,
    poll_changes,
    portal_now,
    split_changes,
)
from airflow_provider_b24.changes.offline import ensure_offline_handlers, reserve_offline_changes
from airflow_provider_b24.client import (
    Bitrix24Client,
    ClientConfig,
    LimiterRegistry,
    MemoryTokenStore,
    OAuthAuth,
    TokenPair,
    WebhookAuth,
)
from airflow_provider_b24.exceptions import Bitrix24AccessDenied
from airflow_provider_b24.testing import Bitrix24Emulator

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z: after every generated LAST_UPDATED (2024)


class Clock:
    """The emulator's clock: LAST_UPDATED of every write is this second."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def webhook_client(emu: Bitrix24Emulator) -> Bitrix24Client:
    return Bitrix24Client(
        emu.base_url,
        WebhookAuth(user_id=emu.user_id, code=emu.webhook_code),
        ClientConfig(verify=emu.ca_cert),
        logger=logging.getLogger("it.changes"),
        limiters=LimiterRegistry(),
    )


def oauth_client(emu: Bitrix24Emulator) -> Bitrix24Client:
    access, refresh = emu.issue_tokens()
    auth = OAuthAuth(
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        store=MemoryTokenStore(TokenPair(access_token=access, refresh_token=refresh)),
        oauth_server=emu.base_url,
    )
    return Bitrix24Client(emu.base_url, auth, ClientConfig(verify=emu.ca_cert), limiters=LimiterRegistry())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(bitrix24_emulator_factory: Any, clock: Clock) -> Bitrix24Emulator:
    return bitrix24_emulator_factory(activities=4000, seed=5, clock=clock)


@pytest.fixture
def client(emu: Bitrix24Emulator) -> Iterator[Bitrix24Client]:
    with webhook_client(emu) as c:
        yield c


def _now_cursor(client: Bitrix24Client) -> PollCursor:
    return PollCursor(last_updated=portal_now(client))


# -------------------------------------------------------------------------------------- poll


def test_portal_now_is_the_portal_second(client: Bitrix24Client) -> None:
    assert portal_now(client) == "2026-05-28T23:26:40+03:00"  # T0 in the portal's +03:00


def test_idle_poll_is_one_http_request(client: Bitrix24Client, emu: Bitrix24Emulator) -> None:
    cursor = _now_cursor(client)
    emu.stats_reset()
    result = poll_changes(client, cursor)
    assert result.ids == [] and result.cursor == cursor and result.requests == 1
    assert emu.stats["requests"] == 1


def test_same_second_changes_are_neither_skipped_nor_resent(
    client: Bitrix24Client, emu: Bitrix24Emulator, clock: Clock
) -> None:
    cursor = _now_cursor(client)
    emu.store.complete(9)
    emu.store.complete(5)
    first = poll_changes(client, cursor)
    assert first.ids == [5, 9]
    assert first.cursor == PollCursor("2026-05-28T23:26:40+03:00", (5, 9))
    # later in the same second: a lower ID changes, and 9 changes again (same LAST_UPDATED)
    emu.store.update(3, {"SUBJECT": "same second, lower ID"})
    emu.store.update(9, {"SUBJECT": "same second again"})
    second = poll_changes(client, first.cursor)
    assert second.ids == [3]  # 9's second change is invisible: LAST_UPDATED did not move
    assert second.cursor.ids == (3, 5, 9)
    emu.stats_reset()
    assert poll_changes(client, second.cursor).ids == []  # idle again: one request
    assert emu.stats["requests"] == 1
    # next second: 9 again is a new change
    clock.now += 1
    emu.store.update(9, {"SUBJECT": "next second"})
    third = poll_changes(client, second.cursor)
    assert third.ids == [9]
    assert third.cursor == PollCursor("2026-05-28T23:26:41+03:00", (9,))


def test_changes_across_seconds_in_order_and_the_filter(
    client: Bitrix24Client, emu: Bitrix24Emulator, clock: Clock
) -> None:
    cursor = _now_cursor(client)
    calls = [int(r["ID"]) for r in emu.store.dump()["activities"] if r["TYPE_ID"] == "2"][:3]
    others = [int(r["ID"]) for r in emu.store.dump()["activities"] if r["TYPE_ID"] != "2"][:3]
    for activity_id in calls + others:
        clock.now += 1
        emu.store.complete(activity_id)
    everything = poll_changes(client, cursor)
    assert everything.ids == sorted(calls + others)
    only_calls = poll_changes(client, cursor, filter={"TYPE_ID": 2})
    assert only_calls.ids == sorted(calls)


def test_a_bulk_change_in_one_second_is_cut_at_2500_and_continued(
    client: Bitrix24Client, emu: Bitrix24Emulator
) -> None:
    cursor = _now_cursor(client)
    for activity_id in range(1, 3001):
        emu.store.touch(activity_id)  # 3,000 changes in the same second
    first = poll_changes(client, cursor)
    assert first.capped and len(first.ids) == MAX_IDS_PER_EVENT and first.ids == list(range(1, 2501))
    second = poll_changes(client, first.cursor)
    assert second.ids == list(range(2501, 3001)) and not second.capped
    assert poll_changes(client, second.cursor).ids == []
    # the events of one poll respect the cap too
    assert [len(c.ids) for c in split_changes(range(1, 6001))] == [2500, 2500, 1000]


def test_a_backlog_across_seconds_is_read_in_chained_batches(
    client: Bitrix24Client, emu: Bitrix24Emulator, clock: Clock
) -> None:
    cursor = _now_cursor(client)
    changed = list(range(100, 2100))  # 2,000 changes, 7 per second, in shuffled ID order per second
    for index, activity_id in enumerate(reversed(changed)):
        if index % 7 == 0:
            clock.now += 1
        emu.store.touch(activity_id)
    emu.stats_reset()
    result = poll_changes(client, cursor)
    assert result.ids == changed and not result.capped
    # 1 plain pair, then 25 chained pairs (1,250 rows) per request: 1 + 2 requests
    assert result.requests == 3 and emu.stats["requests"] == 3
    assert poll_changes(client, result.cursor).ids == []


def test_poll_feed_starts_now_and_carries_the_cursor(
    client: Bitrix24Client, emu: Bitrix24Emulator, clock: Clock
) -> None:
    emu.store.complete(1)  # before the feed starts: history, never delivered
    clock.now += 1
    emu.store.complete(6)  # earlier in the second the feed starts: history too
    emu.stats_reset()
    feed = PollFeed(client)
    state = feed.start()
    assert state == {"source": "poll", "last_updated": "2026-05-28T23:26:41+03:00", "ids": [6]}
    assert emu.stats["requests"] == 1  # server.time and this second's IDs, one batch
    assert feed.poll(state).changes == []
    emu.store.complete(2)
    poll = feed.poll(state)
    assert [c.ids for c in poll.changes] == [[2]] and poll.state["ids"] == [2, 6]
    assert poll.cursor == {"last_updated": "2026-05-28T23:26:41+03:00"}
    assert (
        PollFeed(client, start_from="2026-05-28T23:26:40+03:00")
        .start()["last_updated"]
        .endswith("23:26:40+03:00")
    )


# ----------------------------------------------------------------------------- offline events


@pytest.fixture
def app_client(emu: Bitrix24Emulator) -> Iterator[Bitrix24Client]:
    with oauth_client(emu) as c:
        yield c


def test_offline_feed_binds_once_reserves_and_confirms(
    app_client: Bitrix24Client, emu: Bitrix24Emulator
) -> None:
    feed = OfflineEventsFeed(app_client)
    state = feed.start()
    assert {h["event"] for h in emu.events.handlers(f"app:{emu.client_id}")} == {
        "ONCRMACTIVITYADD",
        "ONCRMACTIVITYUPDATE",
        "ONCRMACTIVITYDELETE",
    }
    assert ensure_offline_handlers(app_client) == []  # idempotent
    emu.stats_reset()
    idle = feed.poll(state)
    assert idle.changes == [] and idle.requests == 1 and emu.stats["requests"] == 1
    new_id = emu.store.add({"SUBJECT": "new", "TYPE_ID": 6, "OWNER_ID": 1, "OWNER_TYPE_ID": 2})
    for subject in ("a", "b"):
        emu.store.update(7, {"SUBJECT": subject})
    emu.store.delete(8)
    emu.store.update(11, {"SUBJECT": "then deleted"})
    emu.store.delete(11)
    poll = feed.poll(state)
    assert [(c.ids, c.deleted_ids) for c in poll.changes] == [([7, new_id], [8, 11])]
    assert poll.reserved is not None and poll.reserved["pending"] == poll.commit_token
    assert all(r.process_id for r in emu.events.queue())  # reserved, not yet deleted
    assert feed.commit(poll) == 1
    assert emu.events.queue() == []
    assert feed.poll(poll.state).changes == []


def test_an_unconfirmed_reservation_is_delivered_again_after_a_restart(
    app_client: Bitrix24Client, emu: Bitrix24Emulator
) -> None:
    feed = OfflineEventsFeed(app_client)
    state = feed.start()
    emu.store.complete(4)
    poll = feed.poll(state)
    assert [c.ids for c in poll.changes] == [[4]]
    # "the triggerer died" after storing poll.reserved, before confirming: a new feed resumes from it
    emu.store.complete(5)  # a change during the outage
    again = OfflineEventsFeed(app_client).poll(poll.reserved or {})
    assert [c.ids for c in again.changes] == [[4]]  # the reserved change, again
    OfflineEventsFeed(app_client).commit(again)
    after = OfflineEventsFeed(app_client).poll(again.state)
    assert [c.ids for c in after.changes] == [[5]]


def test_offline_feed_keeps_only_changes_matching_the_filter(
    app_client: Bitrix24Client, emu: Bitrix24Emulator
) -> None:
    feed = OfflineEventsFeed(app_client, filter={"TYPE_ID": 2})
    state = feed.start()
    rows = emu.store.dump()["activities"]
    call = next(int(r["ID"]) for r in rows if r["TYPE_ID"] == "2")
    other = next(int(r["ID"]) for r in rows if r["TYPE_ID"] != "2")
    emu.store.complete(call)
    emu.store.complete(other)
    emu.store.delete(other + 1000)
    poll = feed.poll(state)
    assert [(c.ids, c.deleted_ids) for c in poll.changes] == [([call], [other + 1000])]


def test_offline_events_refuse_webhooks_with_a_clear_reason(client: Bitrix24Client) -> None:
    with pytest.raises(Bitrix24AccessDenied, match="needs an OAuth application connection") as info:
        OfflineEventsFeed(client).start()
    assert info.value.code == "WRONG_AUTH_TYPE" and "only applications may read offline events" in str(
        info.value
    )


def test_offline_reservation_needs_the_plan_feature(bitrix24_emulator_factory: Any) -> None:
    emu = bitrix24_emulator_factory(activities=10, offline_extended=False)
    with oauth_client(emu) as c:
        ensure_offline_handlers(c)
        with pytest.raises(Bitrix24AccessDenied, match="rest_offline_extended") as info:
            reserve_offline_changes(c)
    assert info.value.code == "WRONG_LICENSE"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_interleavings_deliver_every_version_once(bitrix24_emulator_factory: Any, seed: int) -> None:
    """Changes (single, bulk, same-second) interleaved with polls capped at 120 IDs: every
    (activity, LAST_UPDATED) version present at the end was delivered exactly once."""
    import random

    rng = random.Random(seed)
    clock = Clock()
    emu = bitrix24_emulator_factory(activities=400, seed=seed, clock=clock)
    with webhook_client(emu) as c:
        cursor = _now_cursor(c)
        delivered: list[tuple[int, str]] = []
        for _ in range(60):
            action = rng.random()
            if action < 0.4:
                for activity_id in rng.sample(range(1, 401), rng.choice([1, 3, 60, 130])):
                    emu.store.touch(activity_id)
            elif action < 0.6:
                clock.now += rng.choice([1, 1, 2])
            else:
                result = poll_changes(c, cursor, limit=120)
                versions = {i: emu.store.get(i)["LAST_UPDATED"] for i in result.ids}  # type: ignore[index]
                delivered.extend(versions.items())
                cursor = result.cursor
        for _ in range(20):  # drain
            result = poll_changes(c, cursor, limit=120)
            delivered.extend((i, emu.store.get(i)["LAST_UPDATED"]) for i in result.ids)  # type: ignore[index]
            cursor = result.cursor
        assert len(delivered) == len(set(delivered)), "a version was delivered twice"
        changed = {  # every version written since the feed started (same offset: text order is time order)
            (int(r["ID"]), r["LAST_UPDATED"])
            for r in emu.store.dump()["activities"]
            if r["LAST_UPDATED"] >= "2026-05-28T23:26:40+03:00"
        }
        assert changed <= set(delivered), f"missed: {sorted(changed - set(delivered))[:10]}"


def test_the_users_own_id_exclusions_survive_the_boundary_exclusions(
    client: Bitrix24Client, emu: Bitrix24Emulator
) -> None:
    cursor = _now_cursor(client)
    for activity_id in (3, 4, 5):
        emu.store.complete(activity_id)
    first = poll_changes(client, cursor, filter={"!@ID": [4]})
    assert first.ids == [3, 5]
    emu.store.complete(6)
    emu.store.complete(4)  # same second, excluded by the user's filter: still excluded
    assert poll_changes(client, first.cursor, filter={"!@ID": [4]}).ids == [6]
