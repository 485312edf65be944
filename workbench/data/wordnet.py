"""Semantic similarity on the WordNet noun hierarchy: intrinsic information content and Lin similarity.

    wn = wordnet()                                    # the whole WordNet 3.0 noun graph, shipped with the workbench
    wn.lin("n02085620", "n02085782")                  # Chihuahua vs Japanese spaniel
    sim, nearest = wn.similarity_to_set(candidates, seen)

**Information content without a corpus** (Seco, Veale and Hayes, ECAI 2004): a concept with many
hyponyms says little, a leaf says the most,

    IC(c) = 1 - log(hypo(c) + 1) / log(N)

with hypo(c) the number of distinct concepts below c and N the number of concepts in the hierarchy;
IC(leaf) = 1, IC(entity) = 0. **Lin similarity** (Lin, ICML 1998) of two concepts is the information
they share over the information they have,

    lin(a, b) = 2 IC(lcs(a, b)) / (IC(a) + IC(b)),

lcs being the most informative common subsumer (a concept subsumes itself). The graph has multiple
inheritance (a few synsets have two hypernyms); instance hypernyms (``Paris`` is an instance of
``city``) count as hypernyms, as in NLTK's noun graph.

**Similarity to a set** (CoG: a candidate concept is as close to the seen set as to its closest seen
concept) is computed for thousands of candidates at once: max over seen s of lin(c, s) equals max over
the subsumers a of c of 2 IC(a) / (IC(c) + m(a)), where m(a) is the smallest IC of a seen concept below a.
m is one pass over the seen concepts' subsumers, so the cost is (seen + candidates) x depth, not seen x
candidates.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from .imagenet import noun_hierarchy


class Hierarchy:
    """A noun hierarchy (a DAG rooted at one concept) with intrinsic IC and Lin similarity.

    ``parents`` maps every concept id to its hypernyms (instance hypernyms included); exactly one
    concept, the root, has none.
    """

    def __init__(self, parents: Mapping[str, Sequence[str]], names: Mapping[str, str] | None = None):
        self.ids = list(parents)
        self.index = {w: i for i, w in enumerate(self.ids)}
        self.names = dict(names or {})
        unknown = sorted({p for ps in parents.values() for p in ps if p not in self.index})
        if unknown:
            raise ValueError(f"hypernym(s) {unknown[:5]} are not concepts of the hierarchy")
        roots = [w for w, ps in parents.items() if not ps]
        if len(roots) != 1:
            raise ValueError(f"the hierarchy needs exactly one root, found {len(roots)}: {roots[:5]}")
        self.root = roots[0]
        parent_idx = [[self.index[p] for p in parents[w]] for w in self.ids]
        self._ancestors = _reflexive_ancestors(parent_idx)  # list of int arrays, each holding the node itself
        n = len(self.ids)
        counts = np.bincount(np.concatenate(self._ancestors), minlength=n)  # concepts at or below each node
        self.hyponyms = counts - 1
        self.ic = 1.0 - np.log(self.hyponyms + 1.0) / math.log(n) if n > 1 else np.ones(1)

    def __len__(self) -> int:
        return len(self.ids)

    def _idx(self, wnid: str) -> int:
        try:
            return self.index[wnid]
        except KeyError:
            raise KeyError(f"{wnid!r} is not a concept of this hierarchy (WordNet 3.0 noun wnids look like "
                           "n02085620)") from None

    def name(self, wnid: str) -> str:
        return self.names.get(wnid, wnid)

    def information_content(self, wnid: str) -> float:
        return float(self.ic[self._idx(wnid)])

    def ancestors(self, wnid: str) -> list[str]:
        """Every subsumer of ``wnid``, itself included (unordered)."""
        return [self.ids[i] for i in self._ancestors[self._idx(wnid)]]

    def is_ancestor(self, ancestor: str, wnid: str) -> bool:
        return self._idx(ancestor) in set(self._ancestors[self._idx(wnid)].tolist())

    def lcs(self, a: str, b: str) -> str:
        """The most informative common subsumer."""
        common = np.intersect1d(self._ancestors[self._idx(a)], self._ancestors[self._idx(b)])
        return self.ids[int(common[np.argmax(self.ic[common])])]

    def lin(self, a: str, b: str) -> float:
        ic_a, ic_b = self.ic[self._idx(a)], self.ic[self._idx(b)]
        if ic_a + ic_b == 0:  # both are the root
            return 1.0
        return float(2 * self.ic[self.index[self.lcs(a, b)]] / (ic_a + ic_b))

    def similarity_to_set(self, candidates: Iterable[str], seen: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """For each candidate: max Lin similarity to the seen concepts, and the seen concept reaching it."""
        cand = np.array([self._idx(w) for w in candidates], dtype=np.int64)
        seen_idx = np.array(sorted({self._idx(w) for w in seen}), dtype=np.int64)
        if len(seen_idx) == 0:
            raise ValueError("the seen set is empty")
        # m(a): smallest IC of a seen concept at or below a, and which seen concept that is
        pairs_a = np.concatenate([self._ancestors[s] for s in seen_idx])
        pairs_s = np.concatenate([np.full(len(self._ancestors[s]), s) for s in seen_idx])
        order = np.lexsort((pairs_s, self.ic[pairs_s], pairs_a))  # by a, then smallest IC (ties: lowest index)
        pairs_a, pairs_s = pairs_a[order], pairs_s[order]
        first = np.r_[True, pairs_a[1:] != pairs_a[:-1]]
        min_ic = np.full(len(self), np.inf)
        argmin = np.full(len(self), -1, dtype=np.int64)
        min_ic[pairs_a[first]] = self.ic[pairs_s[first]]
        argmin[pairs_a[first]] = pairs_s[first]
        if len(cand) == 0:
            return np.zeros(0), []
        # per candidate, the best subsumer a: 2 IC(a) / (IC(c) + m(a))
        lengths = np.array([len(self._ancestors[c]) for c in cand])
        anc = np.concatenate([self._ancestors[c] for c in cand])
        owner = np.repeat(np.arange(len(cand)), lengths)
        denom = self.ic[cand][owner] + min_ic[anc]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(denom > 0, 2 * self.ic[anc] / denom, 1.0)  # denom 0: root vs root
        score[~np.isfinite(min_ic[anc])] = -np.inf  # no seen concept below a
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        best = np.maximum.reduceat(score, starts)
        # position of the best subsumer in each segment (first one on ties)
        hit = score == best[owner]
        pos = np.full(len(cand), -1)
        hit_idx = np.flatnonzero(hit)[::-1]
        pos[owner[hit_idx]] = hit_idx  # reversed, so the first hit of a segment is written last
        nearest = [self.ids[argmin[anc[p]]] for p in pos]
        return best, nearest


def _reflexive_ancestors(parents: list[list[int]]) -> list[np.ndarray]:
    """Ancestors of every node (itself included), parents before children (Kahn's topological order)."""
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    for node, ps in enumerate(parents):
        for p in set(ps):
            children[p].append(node)
    waiting = [len(set(ps)) for ps in parents]
    ready = [node for node in range(n) if waiting[node] == 0]
    out: list[np.ndarray | None] = [None] * n
    while ready:
        node = ready.pop()
        ps = parents[node]
        out[node] = np.unique(np.concatenate([[node], *(out[p] for p in ps)])) if ps else np.array([node])
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if any(a is None for a in out):
        raise ValueError("the hierarchy has a cycle")
    return out  # type: ignore[return-value]


@lru_cache(maxsize=1)
def wordnet() -> Hierarchy:
    """The WordNet 3.0 noun hierarchy shipped in ``workbench/data/assets`` (82,115 synsets; built once per process)."""
    nouns = noun_hierarchy()
    return Hierarchy({w: list(hyp) + list(inst) for w, (_, hyp, inst) in nouns.items()},
                     names={w: v[0] for w, v in nouns.items()})
