"""Generation with the tiny offline pipeline: resumable after a kill, shardable, reproducible, and failing
fast on a missing model. Images are 32 px, 2 denoising steps: the machinery, not the pictures, is tested."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import workbench.generation.writer as gen
from workbench import load_data
from workbench.generation import (
    GenerateConfig,
    Shard,
    audit,
    batches,
    class_counts,
    contact_sheet,
    generate,
    plan,
    read_manifest,
    regenerate,
    shard_batches,
)
from workbench.generation.pipelines import default_resolution, load_pipeline
from workbench.generation.tiny import build_tiny_pipeline, tiny_pipeline_path

CLASSES = "n01440764,n02869837,n01443537"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models are so small that handing work to a second thread costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny pipeline saved once for this module, used as a local diffusers folder."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_pipe(tiny_dir):
    return load_pipeline(str(tiny_dir), "cpu")


def config(tiny_dir, **overrides):
    params = dict(classes=CLASSES, images_per_class=3, steps=2, resolution=32, images_per_call=2, model=str(tiny_dir),
                  device="cpu", seed=0)
    return GenerateConfig.from_params(**{**params, **overrides})


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def expected_files(cfg):
    return {f"{w}/{k:05d}.{cfg.image_format}" for w in cfg.classes for k in range(cfg.images_per_class)}


def files_in(out):
    return {f"{d.name}/{p.name}" for d in out.iterdir() if d.is_dir() for p in d.iterdir()}


def test_tiny_pipeline_is_built_once_and_loaded_like_a_checkpoint():
    folder = tiny_pipeline_path()  # under this test's own $WORKBENCH_CACHE
    for part in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                 "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"):
        assert (folder / part).is_file(), part
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert tiny_pipeline_path() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-built folder left
    pipe = load_pipeline("tiny-offline", "cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert default_resolution(pipe) == 64 and pipe.vae_scale_factor == 8
    tokens = pipe.tokenizer.tokenize("tench, cyprinid inside boathouse")
    assert "cyprinid</w>" in tokens and "boathouse</w>" in tokens
    assert pipe.tokenizer.model_max_length == 77


def test_generation_writes_an_image_folder_and_a_manifest(tmp_path, tiny_dir):
    cfg = config(tiny_dir)
    out = tmp_path / "gen"
    result = generate(cfg, out, log=None)
    assert (result.generated, result.skipped, result.planned) == (9, 0, 9)
    assert files_in(out) == expected_files(cfg)
    assert class_counts(out) == {w: 3 for w in cfg.classes}
    report = audit(out)
    assert report["images"] == report["records"] == 9
    assert not (report["unrecorded"] or report["missing"] or report["temporary"] or report["unreadable"])
    records = read_manifest(out)
    jobs = {j.file: j for j in plan(cfg)}
    for r in records:
        job = jobs[r["file"]]
        assert (r["wnid"], r["index"], r["seed"], r["prompt"]) == (job.wnid, job.index, job.seed, job.prompt)
        assert (r["guidance_scale"], r["steps"], r["resolution"], r["model"]) == (2.0, 2, 32, str(tiny_dir))
        assert pixels(out / r["file"]).shape == (32, 32, 3)
    assert len({r["seed"] for r in records}) == 9
    assert len({pixels(out / f).tobytes() for f in jobs}) == 9  # every seed its own image
    data = load_data(str(out), image_size=32)  # the other notebooks read it as it is
    assert data.tasks["classes"] == tuple(sorted(cfg.classes))
    assert len(data.train) + len(data.test) == 9
    again = generate(cfg, out, log=None)  # nothing left to do
    assert (again.generated, again.skipped) == (0, 9)


def test_a_killed_run_resumes_to_exactly_the_requested_images(tmp_path, tiny_dir, tiny_pipe, monkeypatch):
    cfg = config(tiny_dir)
    reference = tmp_path / "reference"
    generate(cfg, reference, pipe=tiny_pipe, log=None)

    out = tmp_path / "killed"

    class Killed(Exception):
        pass

    real_save, written = gen.save_image, []

    def save_then_die(image, path, format):
        if len(written) == 3:  # the 4th image: in the middle of the second batch
            raise Killed
        real_save(image, path, format)
        written.append(path)

    monkeypatch.setattr(gen, "save_image", save_then_die)
    with pytest.raises(Killed):
        generate(cfg, out, pipe=tiny_pipe, log=None)
    monkeypatch.setattr(gen, "save_image", real_save)
    assert len(files_in(out)) == 3
    manifest = gen.manifest_path(out, Shard())
    assert len(manifest.read_text().splitlines()) == 2  # the second batch's image was written, its line was not
    # what else a kill can leave: a half-written image under its temporary name, a manifest line cut short
    (out / "n02869837").mkdir(exist_ok=True)
    (out / "n02869837" / ".00001.png.k1ll3d0x.tmp").write_bytes(b"\x89PNG\r\n\x1a\n half")
    with open(manifest, "a") as f:
        f.write('{"file": "n02869837/00000.png", "wnid": "n0286')
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in written}

    result = generate(cfg, out, pipe=tiny_pipe, log=None)
    assert (result.generated, result.skipped) == (6, 3)
    assert files_in(out) == expected_files(cfg)  # no temporary file, no duplicate, nothing extra
    assert before == {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in written}  # finished images untouched
    report = audit(out)
    assert report["images"] == report["records"] == 9
    assert not (report["unrecorded"] or report["missing"] or report["temporary"] or report["unreadable"])
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["file"] for r in lines) == sorted(expected_files(cfg))  # one line per image
    assert read_manifest(out) == read_manifest(reference)
    for f in expected_files(cfg):
        assert np.array_equal(pixels(out / f), pixels(reference / f)), f


def test_two_shards_make_exactly_one_run(tmp_path, tiny_dir, tiny_pipe):
    cfg = config(tiny_dir)  # 9 images in batches of 2: 5 batches, one straddles two classes
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    generate(cfg, whole, shard=Shard(0, 1), pipe=tiny_pipe, log=None)
    r0 = generate(cfg, sharded, shard=Shard(0, 2), pipe=tiny_pipe, log=None)
    r1 = generate(cfg, sharded, shard=Shard(1, 2), pipe=tiny_pipe, log=None)
    assert (r0.generated, r1.generated) == (5, 4)
    shard_files = [{r["file"] for r in gen.read_jsonl(gen.manifest_path(sharded, Shard(i, 2)))[0]} for i in range(2)]
    assert not shard_files[0] & shard_files[1]
    assert files_in(sharded) == files_in(whole) == shard_files[0] | shard_files[1] == expected_files(cfg)
    assert read_manifest(sharded) == read_manifest(whole)
    for f in expected_files(cfg):
        assert np.array_equal(pixels(sharded / f), pixels(whole / f)), f


@pytest.mark.parametrize("n_images, batch_size, n_shards", [(9, 2, 2), (10, 3, 4), (7, 8, 3), (100, 7, 5)])
def test_shards_are_disjoint_and_cover_the_plan(n_images, batch_size, n_shards):
    jobs = list(range(n_images))
    parts = [shard_batches(batches(jobs, batch_size), Shard(i, n_shards)) for i in range(n_shards)]
    flat = [j for part in parts for b in part for j in b]
    assert sorted(flat) == jobs  # disjoint (no repeats) and complete
    assert all(b in batches(jobs, batch_size) for part in parts for b in part)  # whole batches only


def test_shard_from_the_command_line_and_from_torchrun(monkeypatch):
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "x", "1-4", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Shard.from_env() == Shard(0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert Shard.from_env() == Shard(2, 3)


def test_images_are_regenerated_exactly_from_the_manifest(tmp_path, tiny_dir, tiny_pipe):
    cfg = config(tiny_dir, prompt="name_hypernym_background", images_per_class=2)
    out = tmp_path / "gen"
    generate(cfg, out, pipe=tiny_pipe, log=None)
    for f in ("n01440764/00001.png", "n02869837/00000.png"):
        assert np.array_equal(np.asarray(regenerate(out, f, tiny_pipe)), pixels(out / f))


def test_a_folder_keeps_its_settings_but_can_grow(tmp_path, tiny_dir, tiny_pipe):
    out = tmp_path / "gen"
    generate(config(tiny_dir, images_per_class=2), out, pipe=tiny_pipe, log=None)
    with pytest.raises(ValueError, match="steps"):
        generate(config(tiny_dir, images_per_class=2, steps=3), out, pipe=tiny_pipe, log=None)
    grown = generate(config(tiny_dir, images_per_class=3, classes=CLASSES + ",n02107142"), out, pipe=tiny_pipe,
                     log=None)
    assert (grown.generated, grown.skipped) == (6, 6)
    assert class_counts(out) == {w: 3 for w in (*CLASSES.split(","), "n02107142")}
    assert audit(out)["records"] == 12


def test_jpeg_output_and_contact_sheet(tmp_path, tiny_dir, tiny_pipe):
    cfg = config(tiny_dir, image_format="jpeg", classes="n01440764,n02869837")
    out = tmp_path / "gen"
    generate(cfg, out, pipe=tiny_pipe, log=None)
    assert files_in(out) == expected_files(cfg) and all(f.endswith(".jpg") for f in files_in(out))
    assert not audit(out)["unreadable"]
    fig = contact_sheet(out, per_class=2)
    assert len(fig.axes) == 2 * (1 + 2)  # a label column and two images per class row


def test_a_missing_model_fails_at_once_naming_it(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # local_files_only alone must keep it off the network
    with pytest.raises(FileNotFoundError, match=r"not-a-real/sd-model.*hf download not-a-real/sd-model"):
        GenerateConfig.from_params(classes="n01440764", model="not-a-real/sd-model")
    with pytest.raises(FileNotFoundError, match="not-a-real/sd-model"):
        load_pipeline("not-a-real/sd-model", "cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GenerateConfig.from_params(classes="n01440764", model=str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        GenerateConfig.from_params(classes="n01440764", model=str(tmp_path))


def test_parameters_are_checked_once_with_clear_messages(tiny_dir):
    from workbench.core.params import ParameterError

    with pytest.raises(ParameterError, match="images_per_class must be an integer"):
        config(tiny_dir, images_per_class="abc")
    with pytest.raises(ValueError, match="multiple of 8"):
        config(tiny_dir, resolution=30)
    with pytest.raises(ValueError, match="scheduler"):
        config(tiny_dir, scheduler="fastest")
    with pytest.raises(ValueError, match="fp16"):
        config(tiny_dir, dtype="fp16")  # fp16 needs CUDA
    with pytest.raises(ValueError, match="strategy"):
        config(tiny_dir, prompt="photo")
    assert config(tiny_dir, classes=["n01440764"], resolution="auto").resolution is None


def test_schedulers_can_be_swapped(tmp_path, tiny_dir):
    pipe = load_pipeline(str(tiny_dir), "cpu", scheduler="ddim")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    result = generate(config(tiny_dir, scheduler="ddim", classes="n01440764", images_per_class=2), tmp_path / "g",
                      log=None)  # loads the pipeline itself
    assert result.generated == 2 and result.load_seconds > 0


def test_command_line(tmp_path, tiny_dir, capsys):
    from workbench.__main__ import main

    out = tmp_path / "cli"
    common = ["generate", "--classes", "n01440764,n02869837", "--images-per-class", "2", "--model", str(tiny_dir),
              "--resolution", "32", "--steps", "1", "--images-per-call", "1", "--device", "cpu", "--out", str(out)]
    assert main(common + ["--shard", "1/2"]) == 0
    assert main(common + ["--shard", "0/2"]) == 0
    assert class_counts(out) == {"n01440764": 2, "n02869837": 2}
    assert sorted(p.name for p in out.glob("manifest-*.jsonl")) == ["manifest-00000-of-00002.jsonl",
                                                                    "manifest-00001-of-00002.jsonl"]
    assert main(common[:-2] + ["--out", str(tmp_path / "x"), "--images-per-class", "abc"]) == 2
    assert "images_per_class must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_safety_checker_flags_reach_the_manifest(tmp_path, tiny_dir, tiny_pipe):
    class FlagFirst:  # the tiny pipeline has no safety checker: pretend one flagged each batch's first image
        def __call__(self, **kwargs):
            out = tiny_pipe(**kwargs)
            out.nsfw_content_detected = [i == 0 for i in range(len(out.images))]
            return out

    out = tmp_path / "gen"
    generate(config(tiny_dir, classes="n01440764", images_per_class=3), out, pipe=FlagFirst(), log=None)
    assert [r["nsfw"] for r in read_manifest(out)] == [True, False, True]
    assert audit(out)["nsfw_flagged"] == ["n01440764/00000.png", "n01440764/00002.png"]


@pytest.mark.slow
def test_a_hub_id_loads_from_the_local_hugging_face_cache(tmp_path, tiny_dir):
    """The path real users take: ``--model org/name`` found in the HF cache, no network. The tiny pipeline
    is laid out as the hub client caches a snapshot; a fresh process reads HF_HUB_CACHE at import."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--wb-test--tiny-sd"
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "gen"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "workbench", "generate", "--model", "wb-test/tiny-sd", "--classes", "n01440764",
           "--images-per-class", "2", "--resolution", "32", "--steps", "1", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_manifest(out)
    assert [r["model"] for r in records] == ["wb-test/tiny-sd"] * 2
    assert [r["model_revision"] for r in records] == [commit] * 2
    missing = subprocess.run(cmd[:5] + ["wb-test/absent-sd"] + cmd[6:], env=env, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and "wb-test/absent-sd" in missing.stderr and "hf download" in missing.stderr


@pytest.mark.slow
def test_two_ranks_under_torchrun_make_exactly_the_one_process_output(tmp_path, tiny_dir, tiny_pipe):
    """``torchrun --nproc_per_node 2 -m workbench generate``: each rank takes its shard from RANK/WORLD_SIZE;
    together they write exactly the files (byte for byte) and manifest records of one process."""
    cfg = config(tiny_dir)  # 9 images in 5 batches of 2
    whole, ranks = tmp_path / "whole", tmp_path / "ranks"
    generate(cfg, whole, shard=Shard(0, 1), pipe=tiny_pipe, log=None)
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "workbench",
           "generate", "--classes", CLASSES, "--images-per-class", "3", "--steps", "2", "--resolution", "32",
           "--images-per-call", "2", "--model", str(tiny_dir), "--device", "cpu", "--seed", "0", "--out", str(ranks)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert sorted(p.name for p in ranks.glob("manifest-*.jsonl")) == ["manifest-00000-of-00002.jsonl",
                                                                       "manifest-00001-of-00002.jsonl"]
    per_rank = [{r["file"] for r in gen.read_jsonl(gen.manifest_path(ranks, Shard(i, 2)))[0]} for i in range(2)]
    assert len(per_rank[0]) == 5 and len(per_rank[1]) == 4 and not per_rank[0] & per_rank[1]  # disjoint shards
    assert files_in(ranks) == files_in(whole) == expected_files(cfg)
    for f in expected_files(cfg):
        assert (ranks / f).read_bytes() == (whole / f).read_bytes(), f
    assert read_manifest(ranks) == read_manifest(whole)
    assert json.loads((ranks / "generation.json").read_text()) == json.loads((whole / "generation.json").read_text())
