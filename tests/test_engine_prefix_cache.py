"""The cross-call prefix cache: same results as without it, bounded memory."""

import pytest
import torch

from policies.hf import HFPolicy
from policies.prefix_cache import PrefixCache
from policies.tiny import build_tiny_model

PROBLEMS = ["12+7=", "3*4=", "100-1=", "8/2="]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_tiny_model("1m", seed=1)


def _tree_rounds(policy: HFPolicy, levels: int = 3, children: int = 2) -> list:
    """Grow a tree the way a ToT round does: each level's prompts extend the last level's."""
    prompts, history = list(PROBLEMS), []
    for level in range(levels):
        results = policy.sample(prompts, n=children, max_new_tokens=8, temperature=0.8, stop=["=", "\n"], seed=level)
        history.append([[(s.text, s.token_ids, s.logprobs, s.finish_reason) for s in per] for per in results])
        prompts = [p + s.text for p, per in zip(prompts, results) for s in per][: 3 * len(PROBLEMS)]
    return history


def test_results_with_the_cache_equal_results_without(model_and_tokenizer):
    model, tok = model_and_tokenizer
    plain = _tree_rounds(HFPolicy(model, tok))
    cached_policy = HFPolicy(model, tok, prefix_cache_tokens=100_000)
    cached = _tree_rounds(cached_policy)
    assert cached_policy.engine.prefix_cache.size > 0
    for level_plain, level_cached in zip(plain, cached):
        for per_plain, per_cached in zip(level_plain, level_cached):
            for a, b in zip(per_plain, per_cached):
                assert (a[0], a[1], a[3]) == (b[0], b[1], b[3])
                assert a[2] == pytest.approx(b[2], abs=1e-4)


def test_cached_prefix_is_reused_and_matches_a_fresh_prefill(model_and_tokenizer):
    model, tok = model_and_tokenizer
    policy = HFPolicy(model, tok, prefix_cache_tokens=10_000)
    (first,), = policy.sample(["12+7="], max_new_tokens=10, temperature=0)
    extended = "12+7=" + first.text
    ids = policy.encode_prompt(extended)
    matched, _ = policy.engine.prefix_cache.match(ids)
    assert matched >= len(ids) - 1  # prompt and generated tokens (all but the last) are cached
    (again,), = policy.sample([extended], max_new_tokens=10, temperature=0)
    (fresh,), = HFPolicy(model, tok).sample([extended], max_new_tokens=10, temperature=0)
    assert again.token_ids == fresh.token_ids
    assert again.logprobs == pytest.approx(fresh.logprobs, abs=1e-4)


def test_memory_bound_is_respected_with_evictions(model_and_tokenizer):
    model, tok = model_and_tokenizer
    bound = 60
    policy = HFPolicy(model, tok, prefix_cache_tokens=bound)
    cache = policy.engine.prefix_cache
    for seed in range(4):
        policy.sample(PROBLEMS, n=3, max_new_tokens=12, temperature=1.0, seed=seed)
        assert cache.size <= bound
        held = sum(len(node.tokens) for node in cache._nodes())
        assert held == cache.size
        assert all(k.shape[1] == len(node.tokens) for node in cache._nodes() for k, _ in node.kv)
    assert cache.evictions > 0


def test_weight_updates_invalidate_the_cache(model_and_tokenizer):
    model, tok = build_tiny_model("1m", seed=2)
    policy = HFPolicy(model, tok, prefix_cache_tokens=10_000)
    policy.sample(["12+7="], max_new_tokens=5, temperature=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
        model.model.layers[0].self_attn.v_proj.weight.mul_(-1.0)
    (after,), = policy.sample(["12+7="], max_new_tokens=5, temperature=0)
    (fresh,), = HFPolicy(model, tok).sample(["12+7="], max_new_tokens=5, temperature=0)
    assert after.logprobs == pytest.approx(fresh.logprobs, abs=1e-4)


def _kv_from(n: int, base: int = 0):
    """`insert`'s KV source for n tokens whose keys are base, base + 1, ..."""
    keys, values = torch.arange(base, base + n).float().view(1, n, 1), torch.zeros(1, n, 1)
    return lambda start: [(keys[:, start:], values[:, start:])]


def test_radix_tree_splits_and_matches_partial_edges():
    cache = PrefixCache(max_tokens=100)
    cache.insert([1, 2, 3, 4], _kv_from(4, 0))
    cache.insert([1, 2, 9], _kv_from(3, 10))
    assert cache.size == 5  # [1, 2] shared, then [3, 4] and [9]
    matched, got = cache.match([1, 2, 3, 7])
    assert matched == 3 and got[0][0].flatten().tolist() == [0, 1, 2]
    matched, got = cache.match([1, 2, 9, 9])
    assert matched == 3 and got[0][0].flatten().tolist() == [0, 1, 12]
    assert cache.match([5]) == (0, [])


def test_lru_evicts_the_least_recently_used_branch():
    cache = PrefixCache(max_tokens=6)
    cache.insert([1, 2, 3], _kv_from(3))
    cache.insert([4, 5, 6], _kv_from(3))
    cache.match([1, 2, 3])  # touch the first branch
    cache.insert([7, 8], _kv_from(2))
    assert cache.size <= 6
    assert cache.match([1, 2, 3])[0] == 3
    assert cache.match([4, 5, 6])[0] < 3


class WalkingCache(PrefixCache):
    """The reference eviction: walk the tree for its leaves at every insert, evict the least
    recently used first (the entry just inserted last)."""

    def _evict(self, protect):
        while self._over():
            leaves = sorted((n for n in self._nodes() if not n.children), key=lambda n: n.last_used)
            leaf = next((n for n in leaves if n is not protect), protect)
            del leaf.parent.children[leaf.tokens[0]]
            self.size -= len(leaf.tokens)
            self.bytes -= sum(k.nbytes + v.nbytes for k, v in leaf.kv)


def _contents(cache: PrefixCache) -> set[tuple[int, ...]]:
    """Every cached root-to-leaf sequence."""
    out, stack = set(), list(cache._root.children.values())
    while stack:
        node = stack.pop()
        stack.extend(node.children.values())
        if not node.children:
            ids, up = [], node
            while up.parent is not None:
                ids[:0] = up.tokens
                up = up.parent
            out.add(tuple(ids))
    return out


def test_the_lasting_leaf_heap_evicts_what_a_walk_of_the_tree_would(monkeypatch):
    """Random search-like traffic (shared prefixes, splits, touches, a full cache): after
    every call the heap-based cache holds exactly what the walking reference holds, and it
    walks the tree only to compact its heap, not at every insert (the old eviction walked at
    every insert of a full cache: quadratic in the cache's size)."""
    rng = torch.Generator().manual_seed(0)
    fast, slow = PrefixCache(max_tokens=60, max_bytes=200), WalkingCache(max_tokens=60, max_bytes=200)
    walks = []
    original = PrefixCache._nodes
    monkeypatch.setattr(PrefixCache, "_nodes", lambda self: (walks.append(self), original(self))[1])
    sequences = [[1]]
    for step in range(3000):
        base = sequences[int(torch.randint(len(sequences), (1,), generator=rng))]
        ids = base[: int(torch.randint(1, len(base) + 1, (1,), generator=rng))]
        ids = ids + torch.randint(1, 4, (int(torch.randint(0, 6, (1,), generator=rng)),), generator=rng).tolist()
        if torch.rand(1, generator=rng) < 0.3:
            assert fast.match(ids)[0] == slow.match(ids)[0]
        else:
            fast.insert(ids, _kv_from(len(ids)))
            slow.insert(ids, _kv_from(len(ids)))
            sequences = (sequences + [ids])[-50:]
        assert fast.size <= 60 and fast.bytes <= 200
        assert (fast.size, fast.bytes) == (slow.size, slow.bytes) and _contents(fast) == _contents(slow), step
    walks = [w for w in walks if w is fast]
    assert fast.evictions > 500
    assert len(walks) < fast.evictions / 20


def _held_bytes(cache: PrefixCache) -> int:
    """Bytes of every storage the cache's tensors keep alive (a view keeps its whole base)."""
    storages = {}
    for node in cache._nodes():
        for k, v in node.kv:
            for t in (k, v):
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def test_byte_bound_holds_in_memory_actually_held_after_evictions(model_and_tokenizer):
    model, tok = model_and_tokenizer
    bound = 0.25  # MiB: ~40 tokens of the 1m model's KV (6 KiB per token)
    policy = HFPolicy(model, tok, prefix_cache_tokens=100_000, prefix_cache_mb=bound)
    cache = policy.engine.prefix_cache
    splits = 0
    for seed in range(3):
        prompts = list(PROBLEMS)
        for level in range(2):  # children share their parent's prompt: edges get split
            results = policy.sample(prompts, n=3, max_new_tokens=10, temperature=1.0, seed=10 * seed + level, stop=["="])
            prompts = [p + s.text for p, per in zip(prompts, results) for s in per][:8]
            splits += sum(len(node.children) > 1 for node in cache._nodes())
            assert 0 < cache.bytes <= bound * 2**20
            assert _held_bytes(cache) == cache.bytes
    assert cache.evictions > 0 and splits > 0


def test_default_tiny_policy_config_turns_the_cache_on(tmp_path):
    """The knobs of conf/policy/tiny.yaml are HFPolicy options and switch the bounded cache on."""
    from omegaconf import OmegaConf

    engine = OmegaConf.load("conf/policy/tiny.yaml").engine
    model, tok = build_tiny_model("1m")
    HFPolicy(model, tok).save(tmp_path)
    policy = HFPolicy.from_pretrained(tmp_path, **engine)
    cache = policy.engine.prefix_cache
    assert cache.max_tokens == engine.prefix_cache_tokens and cache.max_bytes == engine.prefix_cache_mb * 2**20
    assert policy.engine.prefill_tokens == engine.prefill_tokens
