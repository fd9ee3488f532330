"""repbench.extract.feeds: batch plans within the token budget, with little padding."""

import numpy as np

from repbench.extract.feeds import plan_batches


def test_plan_batches_respects_budget_and_covers_everything():
    lengths = np.array([5, 30, 7, 12, 30, 1, 9])
    batches = plan_batches(lengths, token_budget=40, max_batch_size=4, batch_size=None)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for b in batches:
        assert len(b) * lengths[b].max() <= 40 or len(b) == 1
    assert lengths[batches[0][0]] == 30  # longest first
    fixed = plan_batches(lengths, token_budget=1, max_batch_size=1, batch_size=3)
    assert [len(b) for b in fixed] == [3, 3, 1]


def test_plan_batches_limits_padding_waste():
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, 513, size=2000)
    plain = plan_batches(lengths, 65536, 1024, None, max_waste=1.0)
    tight = plan_batches(lengths, 65536, 1024, None)

    def waste(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)

    assert waste(tight) < 0.06 < waste(plain)
    for plan in (plain, tight):
        assert sorted(np.concatenate(plan).tolist()) == list(range(2000))
        assert all(len(b) * lengths[b].max() <= 65536 for b in plan)
    assert all(len(b) * lengths[b].max() >= 16384 or lengths[b].min() >= 0.95 * lengths[b].max() or b is tight[-1]
               for b in tight)
