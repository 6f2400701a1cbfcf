"""Hard deadlines: the worker pool and the math verifier never hang the caller, in any thread."""

import os
import sys
import threading

import pytest

from r1kit.rewards.math import answers_match
from r1kit.rewards.pool import ERROR, OK, TIMEOUT, WorkerPool, in_worker, target_of
from r1kit.rewards.verifier import VERIFIER, MathVerifier

import hanging_rewards  # noqa: E402 - tests/rewards is on sys.path (pytest rootdir insertion)

from deadline_helpers import run_in_threads, timed, worker_restart_seconds

# "cut off within the deadline + 1 s", plus what replacing a killed worker costs here and now
SLACK_S = 1.0 + worker_restart_seconds()


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(size=2)
    yield p
    p.close()


def test_workers_start_lazily_are_reused_and_know_what_they_are(pool):
    fresh = WorkerPool(size=2)
    assert fresh.workers == 0  # nothing started before the first call
    first = fresh.call("hanging_rewards:my_pid")
    second = fresh.call("hanging_rewards:my_pid")
    assert first.status == second.status == OK
    assert first.value == second.value != os.getpid()  # one worker process, reused
    assert fresh.starts == 1
    assert fresh.call("hanging_rewards:is_worker").value is True
    assert not in_worker()
    fresh.close()
    assert fresh.workers == 0


def test_warm_starts_every_worker_before_the_first_call():
    fresh = WorkerPool(size=2)
    fresh.warm(["hanging_rewards:my_pid"])
    assert fresh.workers == 2 and fresh.starts == 2
    warmed = set(fresh.pids())
    assert len(warmed) == 2
    assert {fresh.call("hanging_rewards:my_pid").value for _ in range(3)} <= warmed
    assert fresh.starts == 2
    fresh.close()


def test_calls_take_pickled_arguments_and_callables_or_names(pool):
    value = {"ids": [1, 2, 3], "frac": (1, 2)}
    res = pool.call(hanging_rewards.echo, (value, None), {"k": b"\x00bytes"})
    assert res == (OK, ((value, None), {"k": b"\x00bytes"}), None, ())
    assert target_of(hanging_rewards.echo) == "hanging_rewards:echo"
    assert target_of(lambda: 0) is None
    with pytest.raises(ValueError, match="cannot be imported"):
        pool.call(lambda: 0)
    res = pool.call("hanging_rewards:raise_keyerror")
    assert res.status == ERROR and res.error == "KeyError: 'no such thing'"
    assert pool.call("no_such_module_xyz:f").status == ERROR


def test_a_call_that_hangs_is_killed_at_its_deadline_and_the_worker_replaced(pool):
    kills = pool.kills
    res, took = timed(pool.call, "hanging_rewards:nap", (10**6,), timeout_s=0.5)
    assert res.status == TIMEOUT and res.value is None
    assert 0.5 <= took < 0.5 + SLACK_S
    assert pool.kills >= kills + 1
    after = pool.call("hanging_rewards:nap", (0.0, "still works"))
    assert after == (OK, "still works", None, ())


@pytest.mark.parametrize(
    "target, args, message",
    [
        ("hanging_rewards:exit_with", (5,), "exited with code 5"),
        ("hanging_rewards:segfault", (), "SIGSEGV"),
        ("hanging_rewards:hog_memory", (), "MemoryError"),  # under the worker's memory cap
    ],
)
def test_a_call_that_kills_its_worker_is_an_error_and_the_next_call_works(pool, target, args, message):
    res, took = timed(pool.call, target, args, timeout_s=5.0)
    assert res.status == ERROR and message in res.error, res
    assert took < 5.0
    assert pool.call("hanging_rewards:nap", (0.0, 42)) == (OK, 42, None, ())


def test_an_exception_keeps_the_worker(pool):
    pool.call("hanging_rewards:nap", (0.0,))
    starts = pool.starts
    for _ in range(3):
        assert pool.call("hanging_rewards:raise_keyerror").status == ERROR
    assert pool.starts == starts


def test_each_call_of_a_map_has_its_own_deadline(pool):
    delays = [0.0, 10**6, 0.0, 0.0, 10**6, 0.0]
    calls = [((d, i), {}) for i, d in enumerate(delays)]
    results, took = timed(pool.map, "hanging_rewards:nap", calls, timeout_s=0.5, batch_timeout_s=30)
    assert [r.status for r in results] == [OK, TIMEOUT, OK, OK, TIMEOUT, OK]
    assert [r.value for r in results if r.status == OK] == [0, 2, 3, 5]
    assert took < 2 * 0.5 + SLACK_S


def test_the_batch_deadline_bounds_a_map_of_many_slow_calls(pool):
    calls = [((0.3, i), {}) for i in range(40)]  # 12 s of work for 2 workers
    results, took = timed(pool.map, "hanging_rewards:nap", calls, timeout_s=5.0, batch_timeout_s=1.0)
    assert took < 1.0 + SLACK_S
    statuses = [r.status for r in results]
    assert statuses.count(OK) >= 2 and statuses.count(TIMEOUT) >= 30
    assert all(r.value == i for i, r in enumerate(results) if r.status == OK)


def test_a_map_from_a_non_main_thread(pool):
    out = []
    thread = threading.Thread(
        target=lambda: out.append(pool.map("hanging_rewards:nap", [((0.0, 1), {}), ((10**6,), {})], timeout_s=0.5))
    )
    thread.start()
    thread.join(timeout=0.5 + SLACK_S + 5)
    assert not thread.is_alive()
    assert [r.status for r in out[0]] == [OK, TIMEOUT]


def test_four_threads_share_the_pool_and_each_gets_its_deadlines(pool):
    results = {}

    def work(k):
        calls = [((0.05, (k, i)), {}) for i in range(6)] + [((10**6,), {})]
        results[k] = pool.map("hanging_rewards:nap", calls, timeout_s=0.5, batch_timeout_s=20)

    took = run_in_threads(work, 4)
    assert sorted(results) == [0, 1, 2, 3]
    for k, res in results.items():
        assert [r.value for r in res[:6]] == [(k, i) for i in range(6)], res
        assert res[6].status == TIMEOUT
    # 4 hangs of 0.5 s on 2 workers and 24 short calls: far less than running them one by one
    assert took < 4 * 0.5 + 24 * 0.05 + SLACK_S + 3
    assert pool.workers <= pool.size


def test_the_worker_gets_the_callers_sys_path(pool, tmp_path):
    pool.call("hanging_rewards:nap", (0.0,))  # a worker already runs before the path changes
    (tmp_path / "r1kit_test_late_module.py").write_text("def answer():\n    return 41 + 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert pool.call("r1kit_test_late_module:answer") == (OK, 42, None, ())
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_workers(pool):
    parent_pids = {pool.call("hanging_rewards:my_pid").value}
    parent_pids |= set(pool.pids())
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report which worker answered, then leave without cleanup
        code = 1
        try:
            res = pool.call("hanging_rewards:my_pid", timeout_s=5)
            os.write(write_end, f"{res.status} {res.value} {os.getpid()}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read_end) as f:
        status_text, worker_pid, child_pid = f.read().split()
    assert os.waitstatus_to_exitcode(status) == 0
    assert status_text == OK and int(worker_pid) not in parent_pids
    # the parent's workers were not touched by the child
    assert pool.call("hanging_rewards:my_pid").value in parent_pids | set(pool.pids())
    assert pool.call("hanging_rewards:nap", (0.0, "ok")).value == "ok"


# ---- the math verifier --------------------------------------------------------------------------

ADVERSARIAL = [
    r"9^{9^{9^{9}}}",
    r"2^{2^{40}}",
    r"\binom{10^9}{500000}",
    "9" * 100_000,
    "(" * 100_000,
    r"\frac{1}{2}" * 10_000,
]


def test_adversarial_answers_are_false_within_the_deadline():
    assert answers_match(r"\frac{1}{2}", "0.5") is True  # warm: the worker has sympy loaded
    timeouts = VERIFIER.timeouts
    for answer in ADVERSARIAL:
        ok, took = timed(answers_match, answer, "5", timeout_s=0.5)
        assert ok is False and took < 0.5 + SLACK_S, (answer[:30], took)
    # The deadline really acted (sympy does hang on some of these).
    assert VERIFIER.timeouts > timeouts
    assert answers_match(r"2\sqrt{3}", r"\sqrt{12}") is True  # and the pool recovered


def test_long_inputs_reach_the_verifier_and_stay_bounded():
    # answers_match refuses answers this long before comparing; the verifier itself must cope too.
    verifier = MathVerifier()
    for answer in ("$" + "(" * 100_000 + "$", "$" + "9" * 100_000 + "$"):
        ok, took = timed(verifier.equivalent, "$5$", answer, 0.5)
        assert ok is False and took < 0.5 + SLACK_S


def test_equivalent_many_has_per_answer_and_batch_deadlines(pool):
    verifier = MathVerifier(pool=pool, target="hanging_rewards:pair_or_hang")
    pairs = [("a", "a"), ("b", "hang"), ("c", "c"), ("a", "a"), ("d", "e")]
    out, took = timed(verifier.equivalent_many, pairs, timeout_s=0.5, batch_timeout_s=20)
    assert out == [True, False, True, True, False]
    assert verifier.timeouts == 1 and verifier.errors == 0  # the repeated pair was compared once
    assert took < 0.5 + SLACK_S
    many = [(str(k), "hang") for k in range(10)]  # 10 hangs, 2 workers
    out, took = timed(verifier.equivalent_many, many, timeout_s=5.0, batch_timeout_s=1.0)
    assert out == [False] * 10 and took < 1.0 + SLACK_S
    assert verifier.timeouts == 11


def test_verifier_from_four_threads_counts_every_timeout(pool):
    verifier = MathVerifier(pool=pool, target="hanging_rewards:pair_or_hang")
    out = {}

    def work(k):
        out[k] = (verifier.equivalent(str(k), "hang", 0.5), verifier.equivalent(str(k), str(k), 5.0))

    run_in_threads(work, 4)
    assert out == {k: (False, True) for k in range(4)}
    assert verifier.timeouts == 4 and verifier.errors == 0


def test_the_real_verifier_off_the_main_thread():
    out = []
    thread = threading.Thread(target=lambda: out.append(
        (answers_match(r"\frac{3}{6}", "0.5"), answers_match(r"9^{9^{9^{9}}}", "5", timeout_s=0.5))
    ))
    thread.start()
    thread.join(timeout=0.5 + SLACK_S + 10)
    assert out == [(True, False)]
