"""The offline world's text-to-image model: shipped weights that belong to the training script's configuration,
loaded like any Stable Diffusion checkpoint, conditioned by every prompt strategy, seeded, and trained reproducibly."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data import world
from workbench.generation import GenerateConfig, generate, load_pipeline, read_manifest, regenerate
from workbench.generation.fidelity import WorldJudges, diversity, real_world_set, sample_world
from workbench.generation.prompts import BACKGROUND_PHRASES, STRATEGIES, WORLD_CLASSES, prompt_class, prompt_strategy
from workbench.generation.world_model import (
    TRAINING_FILE,
    WORLD_MODEL,
    WORLD_MODEL_CONFIG,
    build_world_pipeline,
    encode_prompts,
    file_hashes,
    identity_vae,
    train_world_model,
    world_model_path,
    write_world_tokenizer,
)

# A world model small enough to train a few steps in a test (the shipped one: WORLD_MODEL_CONFIG).
SMALL = {**WORLD_MODEL_CONFIG, "text_width": 16, "text_heads": 2, "unet_channels": [8, 16, 16], "attention_heads": 2,
         "steps": 4, "batch_size": 4, "warmup_steps": 2}


@pytest.fixture(scope="module")
def world_pipe():
    torch.set_num_threads(1)
    return load_pipeline(WORLD_MODEL, "cpu")


def _config(pipe_part) -> dict:
    return {k: v for k, v in dict(pipe_part.config).items() if not k.startswith("_")}


def test_the_shipped_weights_belong_to_the_training_script():
    """training.json records the script's configuration and every file's hash; the files are those; each part's
    configuration is the one the script builds; the tokenizer is the one it writes."""
    folder = world_model_path()
    record = json.loads((folder / TRAINING_FILE).read_text())
    assert record["config"] == WORLD_MODEL_CONFIG
    assert record["files"] == file_hashes(folder)
    assert record["start_step"] == 0 and record["history"][-1]["step"] == WORLD_MODEL_CONFIG["steps"]
    built = build_world_pipeline(WORLD_MODEL_CONFIG)
    for part in ("unet", "vae", "scheduler"):
        saved = json.loads((folder / part / ("scheduler_config.json" if part == "scheduler" else "config.json"))
                           .read_text())
        assert {k: v for k, v in saved.items() if not k.startswith("_")} == json.loads(
            json.dumps(_config(getattr(built, part)))), part
    saved_text = json.loads((folder / "text_encoder" / "config.json").read_text())
    for key, value in built.text_encoder.config.to_dict().items():
        if key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                   "max_position_embeddings"):
            assert saved_text[key] == value, key


def test_the_shipped_tokenizer_makes_every_world_word_one_token(world_pipe, tmp_path):
    write_world_tokenizer(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == \
        json.loads((world_model_path() / "tokenizer" / "vocab.json").read_text())
    tok = world_pipe.tokenizer
    for class_id in WORLD_CLASSES[::5]:
        for strategy in STRATEGIES:
            for background in BACKGROUND_PHRASES.values():
                prompt = prompt_strategy(strategy).fill(prompt_class(class_id), background)
                words = re.findall(r"[a-z]+|[^\sa-z]", prompt.lower())
                assert tok.tokenize(prompt) == [w + "</w>" for w in words], prompt
    assert "red</w>" not in tok.tokenize("grey checkerboard")  # the tiny vocabulary leaked "red" from "checkered"
    assert len(tok("red circle, " + prompt_class("red_circle").definition).input_ids) <= tok.model_max_length


def test_the_world_model_loads_like_a_stable_diffusion_checkpoint(world_pipe):
    assert type(world_pipe).__name__ == "StableDiffusionPipeline"
    assert type(world_pipe.vae).__name__ == "AutoencoderTiny" and world_pipe.vae_scale_factor == 1
    assert world_pipe.unet.config.sample_size == world.WorldConfig().image_size
    assert world_pipe.unet.config.addition_embed_type == "text"


def test_the_identity_vae_is_exact():
    vae = identity_vae(WORLD_MODEL_CONFIG["vae_scale"])
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    latents = vae.encode(x).latents * vae.config.scaling_factor
    assert (latents - x).abs().max() < 1e-6
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
    assert (decoded - x).abs().max() < 1e-5  # an 8-bit step is 2 / 255 = 0.008
    bf16 = vae.to(torch.bfloat16).decode((latents / vae.config.scaling_factor).bfloat16()).sample.float()
    assert (bf16 - x).abs().max() < 0.02  # bf16 keeps 8 bits of mantissa: about one 8-bit step


def test_the_world_model_round_trips_through_save_and_load(world_pipe, tmp_path):
    world_pipe.save_pretrained(tmp_path / "copy")
    again = load_pipeline(str(tmp_path / "copy"), "cpu")
    for part in ("unet", "text_encoder", "vae"):
        a, b = getattr(world_pipe, part).state_dict(), getattr(again, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert again.tokenizer.tokenize("magenta ring, toroid") == world_pipe.tokenizer.tokenize("magenta ring, toroid")
    kwargs = dict(prompt=["red circle"], num_inference_steps=4, guidance_scale=2.0, output_type="np")
    one = world_pipe(generator=torch.Generator().manual_seed(3), **kwargs).images
    two = again(generator=torch.Generator().manual_seed(3), **kwargs).images
    assert np.array_equal(one, two)


def test_prompts_of_each_strategy_give_different_conditioning(world_pipe):
    with torch.no_grad():
        prompts = [prompt_strategy(s)("red_circle", 0, 0) for s in STRATEGIES]
        tokens = encode_prompts(world_pipe, prompts, "cpu")
        pooled = world_pipe.unet.add_embedding(tokens)  # what the UNet adds to its time embedding
    assert len(set(prompts)) == len(STRATEGIES)
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            assert not torch.allclose(tokens[i], tokens[j]), (prompts[i], prompts[j])
            assert not torch.allclose(pooled[i], pooled[j], atol=1e-4), (prompts[i], prompts[j])


def test_a_fixed_seed_regenerates_the_same_image(world_pipe, tmp_path):
    cfg = GenerateConfig.from_params(classes="red_circle,blue_ring", images_per_class=2, steps=4, model=WORLD_MODEL,
                                     images_per_call=2, prompt="name_hypernym_background")
    generate(cfg, tmp_path / "a", pipe=world_pipe, log=None)
    generate(cfg, tmp_path / "b", pipe=world_pipe, log=None)
    for record in read_manifest(tmp_path / "a"):
        pixels = np.asarray(Image.open(tmp_path / "a" / record["file"]))
        assert pixels.shape == (32, 32, 3)
        assert np.array_equal(pixels, np.asarray(Image.open(tmp_path / "b" / record["file"])))
        assert np.array_equal(np.asarray(regenerate(tmp_path / "a", record["file"], world_pipe)), pixels)
        assert record["class_name"] in ("red circle", "blue ring") and record["model_revision"]


def test_guidance_changes_the_images(world_pipe):
    images = {g: sample_world(world_pipe, "name", g, 1, steps=4).pixels for g in (1.0, 7.5)}
    assert not torch.equal(images[1.0], images[7.5])


def test_the_world_model_refuses_imagenet_classes():
    with pytest.raises(ValueError, match="draws only the offline world's classes"):
        GenerateConfig.from_params(classes="n01440764", model=WORLD_MODEL)
    assert GenerateConfig.from_params(classes="world", model=WORLD_MODEL).classes == list(WORLD_CLASSES)


def test_training_is_seeded_and_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    train_world_model(tmp_path / "straight", SMALL, log=lambda _: None)

    class Killed(Exception):
        pass

    def die_at_step_3(pipe, step):
        if step == 3:
            raise Killed
        return {}

    with pytest.raises(Killed):  # checkpoint at step 2, killed at step 3
        train_world_model(tmp_path / "resumed", SMALL, evaluate=die_at_step_3, eval_every=3, checkpoint_every=2,
                          log=lambda _: None)
    assert (tmp_path / "resumed.checkpoint.pt").is_file() and not (tmp_path / "resumed").exists()
    lines = []
    train_world_model(tmp_path / "resumed", SMALL, log=lines.append)
    assert any("resumed from step 2" in line for line in lines)
    assert not (tmp_path / "resumed.checkpoint.pt").exists()
    a = file_hashes(tmp_path / "straight")
    b = file_hashes(tmp_path / "resumed")
    assert a == b  # the same bytes: weights, configs and tokenizer
    assert {"tokenizer/vocab.json", "tokenizer/merges.txt"} <= set(a)  # the BPE sources beside the saved tokenizer


@pytest.mark.slow
def test_the_world_model_draws_the_prompted_shapes_and_colours(world_pipe):
    """Judged by classifiers trained on real world images (specialists trained first, in this test's cache)."""
    judges = WorldJudges.load(n_train=3000, n_test=1000, device="cpu", log=lambda _: None)
    assert judges.real_top1["shape"] > 90 and judges.real_top1["colour"] > 95
    assert judges.fidelity(real_world_set(3, seed=1))["both"] > 85  # the judges on real images
    images = sample_world(world_pipe, "name_hypernym_background", 7.5, images_per_class=2, steps=20)
    fidelity = judges.fidelity(images)
    assert fidelity["shape"] >= 70 and fidelity["colour"] >= 90, fidelity
    spread = diversity(images.pixels)
    assert spread["area"] > 5 and spread["x"] > 2  # objects of several sizes in several places
