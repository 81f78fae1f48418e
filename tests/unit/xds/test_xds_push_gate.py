"""``PushGate``: at most ``limit`` streams push at once, the queue length is reported, and a write
that stalls gives its slot back so a stuck proxy does not hold up the others."""

from __future__ import annotations

import asyncio

from pilotfish.xds.server import PushGate


def test_pushes_are_bounded_and_a_stuck_write_lets_the_others_through() -> None:
    async def body() -> None:
        lengths: list[int] = []
        gate = PushGate(limit=1, slow_after=0.05, on_length=lengths.append)
        stuck: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        order: list[str] = []

        async def push(name: str, write: asyncio.Future[None] | None) -> None:
            async with gate.slot() as slot:
                order.append(f"{name} in")
                if write is not None:
                    await slot.send(write)
                order.append(f"{name} out")

        stuck_push = asyncio.create_task(push("stuck", stuck))
        await asyncio.sleep(0)
        others = [asyncio.create_task(push(name, None)) for name in ("a", "b")]
        await asyncio.wait_for(asyncio.gather(*others), 1)  # not held up by the stuck write
        assert order[:3] == ["stuck in", "a in", "a out"] and not stuck_push.done()
        assert max(lengths) == 3 and gate.length == 1  # the stuck push still counts as queued
        stuck.set_result(None)
        await asyncio.wait_for(stuck_push, 1)
        assert gate.length == 0 and lengths[-1] == 0

    asyncio.run(body())


def test_a_prompt_write_keeps_its_slot_until_the_push_ends() -> None:
    async def body() -> None:
        gate = PushGate(limit=1, slow_after=5)
        inside: list[int] = []

        async def push() -> None:
            async with gate.slot() as slot:
                inside.append(1)
                assert sum(inside) == 1  # nobody else in the gate meanwhile
                await slot.send(asyncio.sleep(0.01))
                inside.append(-1)

        await asyncio.wait_for(asyncio.gather(*(push() for _ in range(5))), 2)

    asyncio.run(body())
