import time

import torch

from extract.stages import StageClock, stage, summary, timed

CPU = torch.device("cpu")


def test_a_stage_counts_only_while_a_clock_runs():
    clock = StageClock(CPU)
    with stage("idle"):
        time.sleep(0.01)
    with clock.running():
        for _ in range(2):
            with stage("work"):
                time.sleep(0.02)
    with stage("work"):
        time.sleep(0.05)
    assert list(clock.seconds) == ["work"]
    assert 0.04 <= clock.seconds["work"] < 0.09


def test_timed_counts_producing_items_not_consuming_them():
    def slow_items():
        for i in range(3):
            time.sleep(0.02)
            yield i

    clock = StageClock(CPU)
    seen = []
    with clock.running():
        for item in timed("decode", slow_items()):
            time.sleep(0.05)
            seen.append(item)
    assert seen == [0, 1, 2]
    assert 0.06 <= clock.seconds["decode"] < 0.14


def test_summary_orders_stages_and_gives_the_rest():
    line = summary({"decode": 1.0, "pitch": 3.0}, elapsed_s=5.0)
    assert line == "time by stage: pitch 3.0 s (60%), decode 1.0 s (20%), other 1.0 s"
