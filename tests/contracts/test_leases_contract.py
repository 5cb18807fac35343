"""The Leases port's contract, for every storage."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.factories import T0

LATER = T0 + timedelta(seconds=45)


async def test_a_free_lease_is_taken(storage: Any) -> None:
    assert await storage.leases().take("statistics", "p-1", T0, LATER)


async def test_a_held_lease_is_not_taken_by_another_until_its_time_ends(storage: Any) -> None:
    leases = storage.leases()
    await leases.take("statistics", "p-1", T0, LATER)
    assert not await leases.take("statistics", "p-2", T0, LATER)
    assert not await leases.take("statistics", "p-2", LATER - timedelta(microseconds=1), LATER)
    assert await leases.take("statistics", "p-2", LATER, LATER + timedelta(seconds=45))
    assert not await leases.take("statistics", "p-1", LATER, LATER + timedelta(seconds=45))


async def test_the_holder_extends_its_lease(storage: Any) -> None:
    leases = storage.leases()
    await leases.take("statistics", "p-1", T0, LATER)
    extended = LATER + timedelta(seconds=30)
    assert await leases.take("statistics", "p-1", T0 + timedelta(seconds=30), extended)
    assert not await leases.take("statistics", "p-2", LATER, extended)
    assert await leases.take("statistics", "p-2", extended, extended + timedelta(seconds=45))


async def test_leases_of_other_names_are_held_apart(storage: Any) -> None:
    leases = storage.leases()
    await leases.take("statistics", "p-1", T0, LATER)
    assert await leases.take("reports", "p-2", T0, LATER)


async def test_a_released_lease_is_taken_at_once(storage: Any) -> None:
    leases = storage.leases()
    await leases.take("statistics", "p-1", T0, LATER)
    await leases.release("statistics", "p-1")
    assert await leases.take("statistics", "p-2", T0, LATER)


async def test_only_the_holder_releases_a_lease(storage: Any) -> None:
    leases = storage.leases()
    await leases.take("statistics", "p-1", T0, LATER)
    await leases.release("statistics", "p-2")
    await leases.release("reports", "p-1")
    assert not await leases.take("statistics", "p-2", T0, LATER)


async def test_of_concurrent_takes_one_gets_the_lease(storage: Any) -> None:
    leases = storage.leases()
    taken = await asyncio.gather(
        *(leases.take("statistics", f"p-{n}", T0, LATER) for n in range(8))
    )
    assert sorted(taken) == [False] * 7 + [True]
