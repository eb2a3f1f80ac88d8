"""Work off the training thread: in order, errors brought back, and never too far behind."""

from __future__ import annotations

import threading
import time

import pytest

from vae_gumbel.background import MAX_WRITER_THREADS, BackgroundWriter, writer_threads
from vae_gumbel.threads import usable_cores
from vae_gumbel.timeline import TIMELINE, WRITER_CATCH_UP


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


def test_the_timeline_counts_how_long_submit_waited_for_the_writer_to_catch_up() -> None:
    TIMELINE.start()
    writer = BackgroundWriter(max_pending=1)
    writer.submit(time.sleep, 0.2)
    writer.submit(lambda: None)  # waits for the sleep
    writer.drain()
    writer.close()
    assert 0.1 < TIMELINE.seconds[WRITER_CATCH_UP] < 5


def test_an_error_met_while_waiting_for_room_is_raised_by_submit() -> None:
    writer, release = BackgroundWriter(max_pending=1), threading.Event()
    writer.submit(lambda: (release.wait(), 1 / 0))
    threading.Timer(0.1, release.set).start()
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: None)
    writer.close()


def test_a_lane_runs_in_order_while_another_lane_goes_ahead() -> None:
    writer, release, done = BackgroundWriter(threads=2), threading.Event(), []
    writer.submit(lambda: (release.wait(5), done.append("lane 0, first")), lane=0)
    writer.submit(lambda: done.append("lane 0, second"), lane=0)
    writer.submit(lambda: done.append("lane 1"), lane=1)
    deadline = time.monotonic() + 5
    while "lane 1" not in done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == ["lane 1"]  # not held up by lane 0, whose second piece waits for its first
    release.set()
    writer.drain()
    assert done == ["lane 1", "lane 0, first", "lane 0, second"]
    writer.close()


def test_a_lanes_submit_puts_work_into_that_lane() -> None:
    writer, threads = BackgroundWriter(threads=3), []
    for lane in (0, 1, 2, 4):
        writer.lane(lane)(lambda: threads.append(threading.current_thread().name))
    writer.drain()
    assert threads[1] == threads[3] != threads[0] != threads[2]  # lanes 1 and 4 share a thread
    writer.close()


def test_training_on_a_cpu_writes_on_one_thread_and_on_a_gpu_on_several() -> None:
    assert writer_threads("cpu", members=64) == 1
    assert writer_threads("cuda", members=1) == 1
    assert writer_threads("cuda", members=64) == max(1, min(MAX_WRITER_THREADS, usable_cores() - 1))
