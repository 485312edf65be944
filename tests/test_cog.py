"""WordNet information content, Lin similarity and concept-generalization levels."""
import math

import numpy as np
import pytest

from workbench.data.cog import cog_levels, level_table
from workbench.data.imagenet import imagenet1k_wnids, imagenet21k_wnids
from workbench.data.wordnet import Hierarchy, wordnet

# entity -> animal -> dog -> {poodle, terrier}; animal -> cat; entity -> artifact -> car
SMALL = {"entity": [], "animal": ["entity"], "artifact": ["entity"], "dog": ["animal"], "cat": ["animal"],
         "poodle": ["dog"], "terrier": ["dog"], "car": ["artifact"]}


def test_intrinsic_information_content_by_hand():
    h = Hierarchy(SMALL)
    # IC(c) = 1 - log(hypo(c) + 1) / log(8): 8 concepts; hyponyms entity 7, animal 4, dog 2, artifact 1
    assert h.information_content("entity") == pytest.approx(0.0)
    assert h.information_content("poodle") == pytest.approx(1.0)
    assert h.information_content("dog") == pytest.approx(0.4716792, abs=1e-6)  # 1 - ln 3 / ln 8
    assert h.information_content("animal") == pytest.approx(0.2260246, abs=1e-6)  # 1 - ln 5 / ln 8
    assert h.information_content("artifact") == pytest.approx(0.6666667, abs=1e-6)  # 1 - ln 2 / ln 8


def test_lin_similarity_matches_a_hand_computed_value():
    h = Hierarchy(SMALL)
    # lin(poodle, cat): lcs animal, 2 * 0.2260246 / (1 + 1)
    assert h.lin("poodle", "cat") == pytest.approx(0.2260246, abs=1e-6)
    # lin(poodle, terrier): lcs dog
    assert h.lin("poodle", "terrier") == pytest.approx(0.4716792, abs=1e-6)
    # lin(dog, poodle): dog subsumes poodle, 2 * 0.4716792 / (0.4716792 + 1) = 0.6410072
    assert h.lin("dog", "poodle") == pytest.approx(0.6410072, abs=1e-6)
    assert h.lin("poodle", "car") == pytest.approx(0.0)  # only the root in common
    assert h.lin("cat", "cat") == pytest.approx(1.0)
    assert h.lcs("poodle", "terrier") == "dog"


def test_multiple_inheritance_counts_each_hyponym_once():
    h = Hierarchy({**SMALL, "robodog": ["dog", "car"]})  # 9 concepts; robodog below both dog and car
    assert h.hyponyms[h.index["entity"]] == 8  # robodog reached twice, counted once
    assert h.hyponyms[h.index["dog"]] == 3 and h.hyponyms[h.index["car"]] == 1
    # lcs(robodog, terrier) is dog (IC 1 - ln 4 / ln 9), not the root
    assert h.lcs("robodog", "terrier") == "dog"
    assert h.lin("robodog", "terrier") == pytest.approx(1 - math.log(4) / math.log(9), abs=1e-9)


def test_bad_hierarchies_are_refused():
    with pytest.raises(ValueError, match="one root"):
        Hierarchy({"a": [], "b": []})
    with pytest.raises(ValueError, match="not concepts"):
        Hierarchy({"a": [], "b": ["zzz"]})
    with pytest.raises(ValueError, match="cycle"):
        Hierarchy({"root": [], "a": ["root", "b"], "b": ["a"]})


def test_similarity_to_set_equals_the_brute_force_max():
    rng = np.random.default_rng(0)
    parents = {"n0": []}
    for i in range(1, 300):  # a random DAG: each node 1-2 parents among earlier nodes
        k = 1 + int(rng.random() < 0.2)
        parents[f"n{i}"] = sorted({f"n{j}" for j in rng.integers(0, i, size=k)})
    h = Hierarchy(parents)
    ids = list(parents)
    seen = list(rng.choice(ids, 25, replace=False))
    cands = [w for w in ids if w not in seen]
    sim, nearest = h.similarity_to_set(cands, seen)
    for c, s, n in zip(cands, sim, nearest):
        brute = max(h.lin(c, x) for x in seen)
        assert s == pytest.approx(brute, abs=1e-12)
        assert n in seen and h.lin(c, n) == pytest.approx(brute, abs=1e-12)


def test_levels_on_a_small_hierarchy():
    h = Hierarchy({**SMALL, "lapdog": ["dog"], "kitten": ["cat"], "truck": ["artifact"], "bus": ["artifact"],
                   "rock": ["entity"]})
    levels = cog_levels(["poodle", "cat"], ["terrier", "lapdog", "kitten", "truck", "bus", "rock", "dog", "poodle"],
                        n_levels=3, hierarchy=h)
    assert levels.dropped["seen"] == ["poodle"]
    assert levels.dropped["subsumes_a_seen_concept"] == ["dog"]  # it contains the seen poodle
    # 13 concepts. IC: leaves 1, cat 1 - ln 2 / ln 13 = 0.729762, dog 1 - ln 4 / ln 13 = 0.459524.
    # kitten: lin to cat 2 * 0.729762 / 1.729762 = 0.843771; terrier, lapdog: lin to poodle 0.459524;
    # truck, bus, rock share only the root with the seen set: 0. Ties go by name.
    assert levels.levels == [["kitten", "lapdog"], ["terrier", "bus"], ["rock", "truck"]]
    assert levels.similarity["kitten"] == pytest.approx(0.843771, abs=1e-6)
    assert levels.nearest_seen["kitten"] == "cat" and levels.nearest_seen["terrier"] == "poodle"
    assert levels.mean_similarity == pytest.approx([(0.843771 + 0.459524) / 2, 0.459524 / 2, 0.0], abs=1e-6)


@pytest.fixture(scope="module")
def in1k_levels():
    return cog_levels(imagenet1k_wnids(), imagenet21k_wnids())


def test_imagenet_levels_have_equal_size_and_decreasing_similarity(in1k_levels):
    sizes = [len(lv) for lv in in1k_levels.levels]
    assert len(sizes) == 5 and len(set(sizes)) == 1 and sizes[0] > 3000
    means = in1k_levels.mean_similarity
    assert all(a > b for a, b in zip(means, means[1:])), means
    seen = set(imagenet1k_wnids())
    ranked = [w for lv in in1k_levels.levels for w in lv]
    assert len(set(ranked)) == len(ranked) and not seen & set(ranked)
    # ranking is monotone across level boundaries
    for upper, lower in zip(in1k_levels.levels, in1k_levels.levels[1:]):
        assert min(in1k_levels.similarity[w] for w in upper) >= max(in1k_levels.similarity[w] for w in lower)
    assert "| L5 |" in level_table(in1k_levels)


@pytest.mark.parametrize("wnid, name, allowed", [
    ("n02086753", "King Charles spaniel", (1, 2)),  # dog breeds missing from ImageNet-1K
    ("n02094721", "Manchester terrier", (1, 2)),
    ("n02089725", "American foxhound", (1, 2)),
    ("n04959061", "achromia", (4, 5)),  # an attribute: the absence of colour
    ("n10380126", "optimist", (4, 5)),  # a kind of person, not an object ImageNet-1K shows
    ("n08249459", "concert band", (4, 5)),  # a group of people
])
def test_hand_checked_concepts_land_where_expected(in1k_levels, wnid, name, allowed):
    wn = wordnet()
    assert wn.name(wnid) == name
    assert wnid not in imagenet1k_wnids()
    assert in1k_levels.level_of(wnid) in allowed


def test_a_smaller_benchmark_spans_each_level_evenly(in1k_levels):
    small = cog_levels(imagenet1k_wnids(), imagenet21k_wnids(), per_level=50)
    assert [len(lv) for lv in small.levels] == [50] * 5
    for full, part in zip(in1k_levels.levels, small.levels):
        assert part[0] == full[0] and part[-1] == full[-1] and set(part) <= set(full)
    with pytest.raises(ValueError, match="per_level"):
        cog_levels(imagenet1k_wnids(), imagenet21k_wnids(), per_level=10**6)


def test_ancestors_of_seen_concepts_are_not_candidates(in1k_levels):
    dog = "n02084071"  # contains the 118 ImageNet-1K dog breeds
    assert in1k_levels.level_of(dog) is None
    assert dog in in1k_levels.dropped["subsumes_a_seen_concept"]


def test_unknown_wnids_are_refused():
    with pytest.raises(ValueError, match="not in the hierarchy"):
        cog_levels(["n02084071"], ["n99999999", "n02085620"])
