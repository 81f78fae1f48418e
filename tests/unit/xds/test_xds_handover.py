"""``Handover``: snapshots published on the translation thread reach streams on the event loop
in order, in batches (one wake-up of the loop for everything published while it was busy)."""

from __future__ import annotations

import asyncio
import threading

from pilotfish.xds.cache import Snapshot
from pilotfish.xds.server import Handover


def snapshot() -> Snapshot:
    return Snapshot.of(())


def test_snapshots_published_while_the_loop_is_busy_arrive_in_order_in_one_wake_up() -> None:
    async def body() -> None:
        handover = Handover().bind(asyncio.get_running_loop())
        published = [snapshot() for _ in range(1000)]
        got: list[tuple[int, Snapshot]] = []
        done = asyncio.Event()

        def deliver_to(stream: int) -> object:
            def deliver(s: Snapshot) -> None:
                got.append((stream, s))
                if len(got) == len(published):
                    done.set()

            return deliver

        streams = [deliver_to(i) for i in range(len(published))]

        def publish() -> None:
            for i, s in enumerate(published):
                handover.put(streams[i], s)  # type: ignore[arg-type]

        worker = threading.Thread(target=publish)
        worker.start()
        worker.join()  # the loop was blocked meanwhile: everything waits for one drain
        await asyncio.wait_for(done.wait(), 5)
        assert got == list(enumerate(published))
        assert handover.drains == 1

    asyncio.run(body())


def test_a_publication_after_a_drain_schedules_another() -> None:
    async def body() -> None:
        handover = Handover().bind(asyncio.get_running_loop())
        got: list[Snapshot] = []
        both = asyncio.Event()

        def deliver(s: Snapshot) -> None:
            got.append(s)
            if len(got) == 2:
                both.set()

        first, second = snapshot(), snapshot()
        handover.put(deliver, first)
        await asyncio.sleep(0)
        assert got == [first]
        threading.Thread(target=handover.put, args=(deliver, second)).start()
        await asyncio.wait_for(both.wait(), 5)
        assert got == [first, second]
        assert handover.drains == 2

    asyncio.run(body())


def test_a_closed_loop_drops_deliveries_instead_of_raising_on_the_publisher() -> None:
    loop = asyncio.new_event_loop()
    handover = Handover().bind(loop)
    loop.close()
    handover.put(lambda s: None, snapshot())  # the server is gone: nothing to deliver to
    assert handover.drains == 0
