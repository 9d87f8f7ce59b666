"""A radix tree of KV segments keyed by token ids, bounded in tokens and in bytes, LRU.

In a search round every child prompt is its parent's prompt plus one generated step, and
the parent's KV was computed in the previous round. Keeping that KV lets the next round
prefill only the new suffix. Entries are per-sequence KV (one tensor pair per layer, shape
[kv_heads, tokens, head_dim]); a node holds the segment for the token ids on its edge.
Every segment owns its storage (inserts and edge splits copy), so the bytes counted are
the bytes held, and evicting a node frees its memory.

Eviction pops least-recently-used leaves off a heap that lives as long as the tree: a touch
or a new leaf pushes an entry, and an entry is stale (skipped) once its node was touched
again, gained a child or left the tree. A full cache thus evicts in O(log n) per insert; a
heap rebuilt from a walk of the tree at every insert made a 1,024-problem ToT round spend
half its time walking the tree (benchmarks/README.md).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [heads, tokens, dim]


class _Node:
    __slots__ = ("tokens", "kv", "children", "parent", "last_used")

    def __init__(self, tokens: tuple[int, ...], kv: KV, parent: "_Node | None"):
        self.tokens = tokens
        self.kv = kv
        self.children: dict[int, _Node] = {}
        self.parent = parent
        self.last_used = 0


class PrefixCache:
    """Longest-prefix lookup of cached KV; never holds more than `max_tokens` tokens nor
    more than `max_bytes` bytes of KV (None: no byte bound)."""

    def __init__(self, max_tokens: int, max_bytes: int | None = None):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 or None, got {max_bytes}")
        self.max_tokens, self.max_bytes = max_tokens, max_bytes
        self.size = 0  # tokens held
        self.bytes = 0  # bytes of KV held
        self.evictions = 0
        self._clock = itertools.count(1)
        self.clear()

    def clear(self) -> None:
        self._root = _Node((), [], None)
        self.size = self.bytes = 0
        self._nodes_held = 0
        self._leaves: list[tuple[int, int, _Node]] = []  # (last_used, tie-break, node); stale entries skipped

    def match(self, ids: list[int]) -> tuple[int, KV]:
        """The longest cached prefix of `ids`: its length and its KV (concatenated per layer)."""
        node, matched, segments = self._root, 0, []
        tick = next(self._clock)
        while matched < len(ids):
            child = node.children.get(ids[matched])
            if child is None:
                break
            common = _common_length(child.tokens, ids[matched:])
            segments.append([(k[:, :common], v[:, :common]) for k, v in child.kv])
            self._touch(child, tick)
            matched += common
            if common < len(child.tokens):
                break
            node = child
        if not segments:
            return 0, []
        layers = zip(*segments)
        return matched, [(torch.cat([k for k, _ in layer], 1), torch.cat([v for _, v in layer], 1)) for layer in layers]

    def insert(self, ids: list[int], kv_from: Callable[[int], KV]) -> None:
        """Remember the KV of `ids`, then evict to bound. `kv_from(start)` gives the KV of
        ids[start:] (per layer, covering at least those tokens); it is called only for
        the part the tree lacks, so a caller never gathers KV the tree already holds."""
        ids = ids[: self.max_tokens]
        node, pos, tick = self._root, 0, next(self._clock)
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                count = len(ids) - pos
                segment = [(k[:, :count].clone(), v[:, :count].clone()) for k, v in kv_from(pos)]
                child = node.children[ids[pos]] = _Node(tuple(ids[pos:]), segment, node)
                self._nodes_held += 1
                self._touch(child, tick)
                self.size += count
                self.bytes += _nbytes(segment)
                node = child
                break
            common = _common_length(child.tokens, ids[pos:])
            if common < len(child.tokens):
                self._split(child, common)
            self._touch(child, tick)
            node, pos = child, pos + common
        self._evict(protect=node)

    def _split(self, node: _Node, at: int) -> None:
        """Cut `node`'s edge after `at` tokens; the tail becomes its only child. Both halves
        are copied: a view would keep the whole old segment alive after either is evicted."""
        tail = _Node(node.tokens[at:], [(k[:, at:].clone(), v[:, at:].clone()) for k, v in node.kv], node)
        tail.children, tail.last_used = node.children, node.last_used
        for grandchild in tail.children.values():
            grandchild.parent = tail
        node.tokens, node.kv = node.tokens[:at], [(k[:, :at].clone(), v[:, :at].clone()) for k, v in node.kv]
        node.children = {tail.tokens[0]: tail}
        self._nodes_held += 1
        if not tail.children:
            self._push(tail)

    def _touch(self, node: _Node, tick: int) -> None:
        node.last_used = tick
        if not node.children:
            self._push(node)

    def _push(self, leaf: _Node) -> None:
        """Offer `leaf` for eviction at its current `last_used`; when stale entries
        outnumber the live nodes, rebuild the heap from the tree (amortised O(1))."""
        heapq.heappush(self._leaves, (leaf.last_used, next(self._clock), leaf))
        if len(self._leaves) > 2 * self._nodes_held + 64:
            self._leaves = [(n.last_used, next(self._clock), n) for n in self._nodes() if not n.children]
            heapq.heapify(self._leaves)

    def _current(self, entry: tuple[int, int, _Node]) -> bool:
        """Whether a heap entry still names a leaf of the tree at its recorded use."""
        last_used, _, node = entry
        return (node.parent is not None and not node.children and node.last_used == last_used
                and node.parent.children.get(node.tokens[0]) is node)

    def _evict(self, protect: _Node) -> None:
        """Drop least-recently-used leaves until the bound holds; `protect` (the entry just
        inserted) goes last, only when no other leaf is left."""
        deferred = []
        while self._over():
            if self._leaves:
                entry = heapq.heappop(self._leaves)
            elif deferred:
                entry = deferred.pop()
            else:
                break
            if not self._current(entry):
                continue
            leaf = entry[2]
            if leaf is protect and self._leaves:
                deferred.append(entry)
                continue
            parent = leaf.parent
            del parent.children[leaf.tokens[0]]
            self.size -= len(leaf.tokens)
            self.bytes -= _nbytes(leaf.kv)
            leaf.parent, leaf.kv = None, []  # stale heap entries must not keep its KV alive
            self._nodes_held -= 1
            self.evictions += 1
            if parent is not self._root and not parent.children:
                self._push(parent)
        for entry in deferred:
            heapq.heappush(self._leaves, entry)

    def _over(self) -> bool:
        return self.size > self.max_tokens or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def _nodes(self):
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            yield node


def _nbytes(kv: KV) -> int:
    return sum(k.nbytes + v.nbytes for k, v in kv)


def _common_length(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
