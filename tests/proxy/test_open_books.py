"""The books on a turn of the event loop's requests close together, in the next turn."""

from __future__ import annotations

import asyncio

from headroom.proxy.open_books import OpenBooks


def test_one_closing_per_turn_takes_every_request_answered_in_it():
    books = OpenBooks()
    closed: list[list[str]] = []

    async def turns() -> None:
        for request in ("a", "b", "c"):  # answered in one turn
            books.add(request, lambda _: closed.append(books.take()), None)  # type: ignore[arg-type]
        assert closed == []  # not before the turn is over
        await asyncio.sleep(0)
        books.add("d", lambda _: closed.append(books.take()), None)  # type: ignore[arg-type]
        await asyncio.sleep(0)

    asyncio.run(turns())
    assert closed == [["a", "b", "c"], ["d"]]


def test_requests_left_by_a_loop_that_stopped_close_with_the_next_loops_first():
    books = OpenBooks()
    closed: list[list[str]] = []

    def answer(request: str) -> None:
        books.add(request, lambda _: closed.append(books.take()), None)  # type: ignore[arg-type]

    loop = asyncio.new_event_loop()

    def answer_and_stop() -> None:
        answer("left")
        loop.stop()  # the closing is due in the next turn, which never comes

    loop.call_soon(answer_and_stop)
    loop.run_forever()
    loop.close()
    assert closed == []

    async def next_loop() -> None:
        answer("next")
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    assert closed == [["left", "next"]]
