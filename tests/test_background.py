"""Work off the training thread: in order, errors brought back, and never too far behind."""

from __future__ import annotations

import threading
import time

import pytest

from vae_gumbel.background import BackgroundWriter


def test_work_runs_in_order_and_drain_waits_for_all_of_it() -> None:
    writer, done = BackgroundWriter(), []
    for i in range(5):
        writer.submit(lambda i=i: (time.sleep(0.01 * (5 - i)), done.append(i)))
    writer.drain()
    assert done == [0, 1, 2, 3, 4]
    writer.close()


def test_an_error_in_the_background_is_raised_on_the_training_thread() -> None:
    writer = BackgroundWriter()
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.drain()
    writer.close()


def test_submit_waits_while_the_writer_is_max_pending_behind() -> None:
    writer, release = BackgroundWriter(max_pending=2), threading.Event()
    writer.submit(release.wait)
    writer.submit(lambda: None)
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(timeout=0.3)
    assert third.is_alive()  # two unfinished pieces: the third waits for the first
    release.set()
    third.join(timeout=5)
    assert not third.is_alive() and len(writer.pending) <= 2
    writer.drain()
    writer.close()


def test_an_error_met_while_waiting_for_room_is_raised_by_submit() -> None:
    writer, release = BackgroundWriter(max_pending=1), threading.Event()
    writer.submit(lambda: (release.wait(), 1 / 0))
    threading.Timer(0.1, release.set).start()
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: None)
    writer.close()
