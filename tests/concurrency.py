"""Requests that race: the tests of rules that must hold under concurrency (throttles, enrollment-key usage)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def run_concurrently(count: int, request: Callable[[int], T]) -> list[T]:
    """``request(n)`` for n in 0..count-1 in ``count`` threads released together, each with its own database
    connection (closed when its thread ends); the answers, in the order they came."""
    barrier = threading.Barrier(count)
    answers: list[T] = []

    def one(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers.append(request(n))
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == count, f"{count - len(answers)} of {count} concurrent requests did not answer"
    return answers
