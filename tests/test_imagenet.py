import json
from pathlib import Path

import pytest

from workbench.data.imagenet import (
    ENTITY,
    class_info,
    imagenet1k_wnids,
    imagenet100_wnids,
    metadata,
    noun_hierarchy,
    places365,
    resolve_classes,
)

DATA_NOUN = Path("/usr/share/wordnet/data.noun")


def test_metadata_covers_all_1000_classes_with_names_definitions_and_chains_to_entity():
    meta = metadata()
    wnids = imagenet1k_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    for k, w in enumerate(wnids):
        info = class_info(w)
        assert info.index == k
        assert info.names and all(n.strip() for n in info.names)
        assert len(info.definition) > 5
        assert info.hypernyms[-1] == ENTITY and ENTITY not in info.hypernyms[:-1]
        assert len(set(info.hypernyms)) == len(info.hypernyms)
        assert all(h in meta["synsets"] for h in info.hypernyms)


@pytest.mark.parametrize("wnid, name, ancestor", [
    ("n01440764", "tench", "fish"),
    ("n01443537", "goldfish", "fish"),
    ("n02107142", "Doberman", "dog"),
    ("n04517823", "vacuum", "home appliance"),
    ("n02869837", "bonnet", "hat"),
])
def test_known_classes(wnid, name, ancestor):
    info = class_info(wnid)
    assert info.name == name
    assert ancestor in info.hypernym_names
    assert "entity" == info.hypernym_names[-1]


def test_tench_details():
    info = class_info("n01440764")
    assert info.names == ("tench", "Tinca tinca")
    assert info.definition.startswith("freshwater dace-like game fish")
    assert info.hypernym == "cyprinid"  # the direct hypernym, used by the c, h_c prompts
    assert info.hypernyms[info.hypernym_names.index("fish")] == "n02512053"


def test_chains_follow_the_wordnet_noun_hierarchy():
    nouns = noun_hierarchy()
    assert len(nouns) == 82115  # WordNet 3.0 noun synsets
    assert nouns["n01440764"][0] == "tench" and nouns[ENTITY][1] == []
    for w in imagenet1k_wnids():
        chain = [w, *class_info(w).hypernyms]
        for child, parent in zip(chain, chain[1:]):
            _, hypernyms, instance_of = nouns[child]
            assert parent in hypernyms + instance_of


@pytest.mark.skipif(not DATA_NOUN.is_file(), reason="WordNet (apt-get install wordnet-base) not installed")
def test_committed_metadata_is_what_the_generator_writes(tmp_path):
    import importlib.util

    tool = Path(__file__).resolve().parent.parent / "tools" / "make_imagenet_metadata.py"
    spec = importlib.util.spec_from_file_location("make_imagenet_metadata", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    synsets = mod.read_wordnet_nouns(DATA_NOUN)
    fresh = json.loads(mod.one_entry_per_line(mod.build_metadata(synsets)))
    assert fresh["classes"] == metadata()["classes"]
    assert fresh["synsets"] == metadata()["synsets"]
    graph = mod.build_noun_graph(synsets)["synsets"]
    assert {w: tuple(v) for w, v in graph.items()} == noun_hierarchy()


def test_subsets_and_lists_of_wnids(tmp_path):
    in100 = resolve_classes("imagenet100")
    assert len(in100) == 100 == len(set(in100)) and in100 == imagenet100_wnids()
    assert set(in100) <= set(imagenet1k_wnids())
    assert resolve_classes("ImageNet-1K") == imagenet1k_wnids()
    assert resolve_classes("n01440764, n01443537") == ["n01440764", "n01443537"]
    assert resolve_classes(["n01443537", "n01440764"]) == ["n01443537", "n01440764"]
    listing = tmp_path / "mine.txt"
    listing.write_text("n01440764\nn02869837\n")
    assert resolve_classes(str(listing)) == ["n01440764", "n02869837"]
    with pytest.raises(ValueError, match="not wnids"):
        resolve_classes("tench")
    with pytest.raises(ValueError, match="not ImageNet-1K"):
        resolve_classes("n00001740")
    with pytest.raises(ValueError, match="more than once"):
        resolve_classes("n01440764,n01440764")
    with pytest.raises(FileNotFoundError):
        resolve_classes(str(tmp_path / "absent.txt"))


def test_places365_backgrounds():
    scenes = places365()
    assert len(scenes) == 365 == len(set(scenes))
    assert scenes[0] == "airfield" and "arena hockey" in scenes
    assert not any("/" in s or "_" in s for s in scenes)


def test_package_data_needs_no_wordnet_or_shared_folder():
    root = Path(__file__).resolve().parent.parent / "workbench"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "/usr/share/wordnet" not in text and "shared/data" not in text, path.name
    for name in ("imagenet_metadata.json", "wordnet_noun_hypernyms.json.gz", "categories_places365.txt",
                 "imagenet100_wnids.txt"):
        assert (root / "data" / "assets" / name).is_file()
