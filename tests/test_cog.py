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


# ----------------------------------------------------------------------------- the benchmark from an IN-21K folder


def _fake_imagenet21k(root, n_concepts=300, images=6, few=3):
    """A few hundred wnid folders of real ImageNet-21K synsets (not IN-1K classes nor their subsumers), each with a
    few tiny images; every 10th folder has too few; plus a folder that is no WordNet noun and a stray file."""
    from PIL import Image

    wn = wordnet()
    seen = set(imagenet1k_wnids())
    subsumers = {a for s in seen for a in wn.ancestors(s)}
    pool = [w for w in imagenet21k_wnids() if w not in seen and w not in subsumers and w in wn.index]
    picks = [pool[i] for i in np.linspace(0, len(pool) - 1, n_concepts).round().astype(int)]
    for k, w in enumerate(picks):
        (root / w).mkdir(parents=True)
        for i in range(few if k % 10 == 0 else images):
            Image.new("RGB", (6, 5), (k % 256, i * 30, 90)).save(root / w / f"{w}_{i}.JPEG", format="JPEG")
    (root / "n99999999").mkdir()  # a folder name that is no WordNet noun
    Image.new("RGB", (6, 5)).save(root / "n99999999" / "x.JPEG")
    (root / "README.txt").write_text("not a concept")
    return picks


def test_cog_levels_from_an_imagenet21k_folder_follow_the_selection_rules(tmp_path):
    from workbench import transfer as tr
    from workbench.data.cog import CogRules, cog_selection, load_cog_level

    picks = _fake_imagenet21k(tmp_path / "in21k")
    rules = CogRules(min_images=5, test_images=2, max_train_images=3, per_level=20)
    logs = []
    selection = cog_selection(tmp_path / "in21k", rules, log=logs.append)
    levels = selection["levels"]
    assert [len(level) for level in levels] == [20] * 5
    chosen = [w for level in levels for w in level]
    assert len(set(chosen)) == 100 and set(chosen) <= set(picks)
    few = {w for k, w in enumerate(picks) if k % 10 == 0}
    assert not few & set(chosen) and set(selection["dropped"]["fewer_images"]) == few  # concepts with enough images
    assert selection["dropped"]["not_a_wordnet_noun"] == ["n99999999"]
    means = selection["mean_similarity"]
    assert all(a > b for a, b in zip(means, means[1:]))  # L1 closest to ImageNet-1K
    for w in chosen:  # the per-concept split: disjoint, test first, training capped
        c = selection["concepts"][w]
        assert len(c["test"]) == 2 and len(c["train"]) == 3 and not set(c["test"]) & set(c["train"])
    # written once, then reused without listing the folder again
    assert any("listing" in m for m in logs) and list((tmp_path / "cache" / "cog").glob("selection-*.json.gz"))
    logs.clear()
    assert cog_selection(tmp_path / "in21k", rules, log=logs.append) == selection and not logs
    assert cog_selection(tmp_path / "in21k", CogRules(min_images=5, test_images=2, max_train_images=3,
                                                      per_level=10), log=logs.append)["levels"][0] != levels[0]
    data = load_cog_level(selection, 3, image_size=8)
    assert (len(data.train), len(data.test), len(data.tasks["classes"])) == (60, 40, 20)
    # read as tasks, by name: every level, and a few-shot variant
    tasks = tr.parse_tasks("cog_l1,cog_l2,cog_l3,cog_l4,cog_l5,cog_l2_1shot", data_root=tmp_path / "x")
    assert str(tasks[0].named.root) == str(tmp_path / "x" / "imagenet21k")
    tasks = tr.parse_tasks(",".join(f"{n}={tmp_path / 'in21k'}" for n in (
        "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5", "cog_l2_1shot")))
    tr.check_roots(tasks)
    datasets = tr.load_task_data(tasks, image_size=8, cog_rules=rules)
    assert sorted(datasets) == [f"cog_l{k}" for k in range(1, 6)]  # the few-shot task shares its level's images
    assert [t.shots for t in tasks] == [None] * 5 + [1] and tasks[-1].dataset == "cog_l2"
    first = datasets["cog_l1"].test[0]
    assert first[0].shape == (3, 8, 8) and int(first[1]["classes"]) == 0
    concepts = tr.concept_levels(tasks, cog_rules=rules, log=lambda *a: None)
    assert concepts.cog["levels"] == levels and [t.name for t in concepts.tasks][-5:] == [
        f"cog_l{k}" for k in range(1, 6)]


def test_cog_tasks_check_their_names_and_root(tmp_path):
    from workbench.data import DatasetNotFound, named_dataset

    with pytest.raises(ValueError, match="levels cog_l1 to cog_l5"):
        named_dataset("cog_l6")
    with pytest.raises(ValueError, match="1 to 128 images per concept"):
        named_dataset("cog_l2_256shot", data_root=tmp_path)
    (tmp_path / "imagenet21k").mkdir()
    with pytest.raises(DatasetNotFound, match="no ImageNet-21K copy at .*imagenet21k"):
        named_dataset("cog_l2", data_root=tmp_path).check()
