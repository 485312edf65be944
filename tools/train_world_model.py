"""Train the offline world's text-to-image model and write it into the package (one command, seeded).

    python tools/train_world_model.py                 # workbench/generation/assets/world-offline (~1 h, 2 cores)
    python tools/train_world_model.py --out /tmp/wm   # elsewhere

The configuration is ``workbench.generation.world_model.WORLD_MODEL_CONFIG`` (architecture, schedule, recipe,
seed); ``training.json`` in the written folder records it with the run's figures and every file's hash, which
``tests/test_world_model.py`` checks against the shipped weights. A killed run resumes from its last checkpoint
(``<out>.checkpoint.pt``) when started again. Figures: fidelity (shape and colour judged by classifiers trained
on real world images) of images sampled every ``--eval-every`` steps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from workbench.generation.fidelity import SWEEP_GUIDANCE, WorldJudges
from workbench.generation.world_model import WORLD_MODEL_CONFIG, train_world_model, world_model_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(world_model_path()), help="the diffusers folder to write")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between fidelity measurements (0: end)")
    parser.add_argument("--eval-images", type=int, default=2, help="images per class and guidance per measurement")
    parser.add_argument("--final-eval-images", type=int, default=8, help="the same, for the finished model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    judges = WorldJudges.load(log=print)

    def evaluate(pipe, step):
        n = args.final_eval_images if step == WORLD_MODEL_CONFIG["steps"] else args.eval_images
        return judges.fidelity_of_pipeline(pipe, images_per_class=n, guidance_scales=SWEEP_GUIDANCE)

    train_world_model(Path(args.out), WORLD_MODEL_CONFIG, evaluate=evaluate,
                      eval_every=args.eval_every or WORLD_MODEL_CONFIG["steps"])


if __name__ == "__main__":
    main()
