# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · A synthetic ImageNet clone with Stable Diffusion
#
# *Do we still need real images?* ImageNet-SD (Sariyildiz et al., *Fake it till you make it: Learning transferable
# representations from synthetic ImageNet clones*, CVPR 2023) generates an ImageNet clone with Stable Diffusion,
# trains on it, and evaluates on real images. This notebook makes such a clone: for every class (a WordNet id),
# `images_per_class` images from a text prompt built from the class's WordNet metadata, written as an ImageFolder
# (`<out_dir>/<wnid>/<index>.png`) that the other notebooks read directly (`data = out_dir`), with a manifest that
# records, for every image, the class, prompt, seed, guidance, steps and model, so any image can be regenerated.
#
# > **The default run clones the offline world.** Without network there is no Stable Diffusion here, so the default
# > `model = "world-offline"` is the workbench's own text-to-image model of the offline world (32x32 images of one
# > shape in one colour on a grey background), a Stable Diffusion pipeline in every respect but its size, shipped with
# > the package and loaded by the same `from_pretrained` call. Its classes (`classes = "world"`) are the world's
# > 36 colour-shape pairs, and the world's shapes are WordNet nouns, so every ImageNet-SD prompt means something
# > here: `red circle, ellipse inside grey noise`. Classifiers trained on real world images then judge the clone.
# > A real ImageNet clone needs real weights, e.g.
# > `papermill 01_synthetic_imagenet.ipynb out.ipynb -p model stable-diffusion-v1-5/stable-diffusion-v1-5 -p classes imagenet100 -p images_per_class 1300 -p steps 50`
# > on a GPU, with the checkpoint in your local Hugging Face cache (`hf download stable-diffusion-v1-5/stable-diffusion-v1-5`
# > on a machine with network). Nothing is downloaded here; a missing model fails at once and says how to get it.
# > (`model = "tiny-offline"` is a tiny Stable Diffusion pipeline with random weights: noise, a test of the machinery.)
#
# Rerunning with the same `out_dir` resumes: finished images are kept, the missing ones generated. Settings
# that would change existing images are refused; `overwrite = True` deletes them and starts over.
#
# For a full clone, use the command line on several GPUs or machines; each run takes a disjoint shard, and
# rerunning resumes:
# `python -m workbench generate --classes imagenet100 --images-per-class 1300 --out data/in100-sd --shard 0/4`
# (or `torchrun --nproc-per-node 8 -m workbench generate ...`).

# %% tags=["parameters"]
classes = "world"                      # imagenet100, imagenet1k, wnids (comma-separated or a YAML list), a .txt file;
                                       # or world (the offline world's 36 colour-shape classes) or some of them
                                       # (red_circle)
prompt = "name_hypernym_background"    # a strategy (name, name_hypernym, name_definition, name_hypernym_background) or
                                       # a template such as 'a photo of a {name}'
images_per_class = 8                   # images of each class (of every clone, and of 06's real set)
guidance_scale = 2.0                   # classifier-free guidance; low gives more diverse images (ImageNet-SD)
steps = 20                             # denoising steps (25-50 for a Stable Diffusion model)
model = "world-offline"                # the text-to-image model: 'world-offline' (the offline world's, shipped), a
                                       # Hugging Face id in the local cache (e.g.
                                       # stable-diffusion-v1-5/stable-diffusion-v1-5), a diffusers folder, or
                                       # 'tiny-offline' (random weights)
scheduler = "default"                  # the checkpoint's own (default) or another sampler (default, ddim, pndm, euler,
                                       # euler_a, dpm++, unipc, lms)
resolution = "auto"                    # image side in pixels, a multiple of 8; auto: the model's own
negative_prompt = ""                   # what the images should not show
seed = 0                               # the seed everything random derives from (weights, data order, sampling); with
                                       # repeats, the first of the seeds
images_per_call = "auto"               # images per pipeline call; auto: 72 with 'world-offline', 8 with any other model
device = "auto"                        # "auto": CUDA when present (under torchrun, the rank's own GPU); or cpu, cuda,
                                       # cuda:1
dtype = "auto"                         # auto: fp16 on CUDA, fp32 on CPU (auto, fp32, fp16, bf16)
image_format = "png"                   # png (lossless) or jpg
overwrite = False                      # True: delete the run already in out_dir and start over
out_dir = "runs/01_synthetic_imagenet"  # the folder of this run's artifacts: summary.json, figures, tables, checkpoints

# %%
import workbench as wb

cfg, out = wb.GenerateConfig.from_notebook(globals())  # every parameter checked first; overwrite clears out_dir
cfg

# %% [markdown]
# ## The classes
#
# Each ImageNet class is a WordNet noun synset: its names (lemmas), its definition, and a chain of hypernyms up to
# *entity*. A world class is a colour and a shape, and each shape is a WordNet noun too (circle, square, triangle,
# rhombus, plus sign, ring): its names, hypernym and definition make the prompts, and its backgrounds are the world's
# training backgrounds (the held-out stripes and checker stay unseen). All of it ships with the workbench
# (`workbench/data/assets`: `imagenet_metadata.json` and `world_shapes.json`, generated from timm's class lists and
# WordNet 3.0 by `tools/make_imagenet_metadata.py`), so nothing else is needed at run time.

# %%
import time

from IPython.display import Markdown, display

t_start = time.time()
dev = wb.pick_device(cfg.device)
print(f"{cfg.describe(dev)}; writing to {out.resolve()}")
display(Markdown(wb.generation.class_table(cfg.classes, limit=12)))

# %% [markdown]
# ## Prompts
#
# The four prompt strategies of ImageNet-SD, for the first class: the class name `c`; `c, h_c` with its
# hypernym, which tells apart classes that share a name (*crane* the bird, *crane* the machine); `c, d_c` with
# its definition; and `c, h_c inside b` with a background `b` drawn per image from the 365 Places365 scenes (for the
# world: its four training backgrounds).
# Backgrounds come from a seed derived from (`seed`, wnid, image index): every prompt can be rebuilt.
# The strategy chosen by `prompt` is marked.

# %%
display(Markdown(wb.generation.strategy_table(cfg.prompt, cfg.classes[0], per_class=3, seed=cfg.seed)))
chosen = wb.generation.example_prompts(cfg.prompt, cfg.classes[:6], 2, cfg.seed)
print("chosen strategy, first prompts of each class:")
for w, ps in chosen.items():
    print(f"  {w}: {' | '.join(ps)}")

# %% [markdown]
# ## The model
#
# A hub id is read from the local Hugging Face cache only (`local_files_only`); a folder is read as it is. The
# world model is a folder inside the package (`workbench/generation/assets/world-offline`, written by
# `tools/train_world_model.py`): a CLIP tokenizer in which every word of the world's prompts is one token, a 2-layer
# CLIP text encoder, a UNet in pixel space (the prompt is pooled into its time embedding and read by cross-attention
# at 8x8), the identity as its VAE (diffusers' `AutoencoderTiny` with no blocks: exact), and DPM-Solver++ on a
# cosine v-prediction schedule. The tiny offline pipeline is built on first use from configs (random weights).

# %%
t0 = time.time()
pipe = wb.generation.load_pipeline(cfg.model, dev, cfg.dtype, cfg.scheduler)
sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
side = cfg.resolution or wb.generation.default_resolution(pipe)
print(f"{type(pipe).__name__} loaded in {time.time() - t0:.1f}s; scheduler {type(pipe.scheduler).__name__}; "
      + ", ".join(f"{k} {v / 1e6:.2f}M parameters" for k, v in sizes.items()) + f"; images of {side}x{side} px")

# %% [markdown]
# ## Generation
#
# One pipeline call per batch; every image has its own seed (CPU generators: the same noise on any device).
# Images are written under a temporary name and renamed, then their manifest lines are appended: rerunning this
# cell (or the notebook, or the command line) skips finished images and never leaves a half-written file.

# %%
result = wb.generate(cfg, out, pipe=pipe)
print(f"{result.generated} images generated in {result.seconds:.1f}s ({result.images_per_s:.2f} images/s), "
      f"{result.skipped} already there")

# %% [markdown]
# ## Contact sheet
#
# One row per class, its first images; for the world, one row per shape with its colours left to right (red,
# yellow, green, cyan, blue, magenta: two images each). With a real checkpoint each row should show the class; with
# `tiny-offline` these are noise by construction (random weights).

# %%
fig = wb.generation.contact_sheet(out, cfg.classes, per_class=8, max_classes=16)
wb.save_figure(fig, out / "contact_sheet.png")
wb.show(fig)

# %% [markdown]
# ## What is on disk
#
# Images per class, and the manifest checked against the files (every image has one record, every record one
# image, no temporary file left, every image decodes). The folder is a plain ImageFolder: `wb.load_data(out_dir)`
# reads it, as the distillation notebook does with `data = out_dir`.

# %%
counts = wb.generation.class_counts(out)
check = wb.generation.audit(out)
display(Markdown(wb.generation.counts_table(out, cfg.classes, limit=20)))
missing = {w: cfg.images_per_class - counts.get(w, 0) for w in cfg.classes if counts.get(w, 0) < cfg.images_per_class}
print(f"{sum(counts.values())} images in {len(counts)} classes; classes short of {cfg.images_per_class}: {missing or 'none'}")
print("manifest:", {k: (v if isinstance(v, int) else len(v)) for k, v in check.items()})
assert not missing and not (check["unrecorded"] or check["missing"] or check["temporary"] or check["unreadable"])
records = wb.generation.read_manifest(out)
print("a manifest record:", records[0])
data = wb.load_data(str(out), image_size=side)
print(data.describe())

# %% [markdown]
# ## What the clone is worth: fidelity and diversity
#
# Classifiers trained on real world images judge every image: the two offline specialists (`world_shape` sees only
# luminance edges, `world_colour` only colours), each with a linear probe fitted on 6,000 real images. **Fidelity**
# is the share of images whose judged shape and colour are the prompted ones (the judges' own top-1 on real test
# images bounds it). **Diversity** is the spread of what the prompt does not fix: object size and position,
# background brightness and texture, against real images. Then a sample of every prompt strategy at a low and a
# high guidance scale (ImageNet-SD's 2 and Stable Diffusion's usual 7.5): guidance trades diversity for fidelity.
# (For ImageNet classes the judges have nothing to say: this cell reports that and moves on.)

# %%
report = wb.generation.clone_report(cfg, out, pipe, judges=wb.generation.WorldJudges.load)
display(Markdown(wb.generation.report_tables(report)))

# %%
summary = {
    "classes": len(cfg.classes),
    "images_per_class": cfg.images_per_class,
    "images": sum(counts.get(w, 0) for w in cfg.classes),
    "counts": {w: counts.get(w, 0) for w in cfg.classes},
    "config": cfg.to_dict(),
    "resolution": side,
    "random_weights": cfg.random_weights,
    "example_prompts": chosen,
    "generated": result.generated,
    "skipped": result.skipped,
    "images_per_s": round(result.images_per_s, 3),
    "manifest": {"records": check["records"], "unrecorded": len(check["unrecorded"]), "missing": len(check["missing"]),
                 "temporary": len(check["temporary"]), "unreadable": len(check["unreadable"]),
                 "nsfw_flagged": len(check["nsfw_flagged"])},
    "contact_sheet": str(out / "contact_sheet.png"),
    "fidelity": report,
    "runtime_s": round(time.time() - t_start, 1),
}
wb.save_json(summary, out / "summary.json")
print(f"summary written to {out / 'summary.json'} (runtime {summary['runtime_s']}s)")
