"""Multi-teacher distillation (UNIC: Sariyildiz et al., ECCV 2024), one teacher being the special case.

    cfg = DistillConfig(teachers=["world_colour", "world_shape"])
    run = distill(cfg, data, teachers, out_dir="runs/03")   # trains, checkpoints, returns history
    run = distill(cfg, data, teachers, out_dir="runs/03")   # after a crash: resumes where it stopped

The training loop reads top to bottom: teachers encode the batch without autograd; their CLS and
patch features are standardized with running statistics; the student's blocks feed the ladder of
projectors; the per-(teacher, image) losses go through teacher dropping; one optimizer step.

With an ``out_dir`` the run checkpoints every ``ckpt_every`` steps (or every epoch) into
``out_dir/checkpoints/step_<n>/`` (``workbench.checkpoint``), and a rerun with the same ``out_dir``
resumes from the newest one: on CPU the resumed run ends with the very same weights as an
uninterrupted one. Another configuration in that ``out_dir`` is refused unless ``overwrite=True``.
The finished student goes to ``out_dir/checkpoint/`` (``load_student``).

Under torchrun (``python -m workbench distill``, which joins the process group) the same loop runs on
every rank (``workbench.distributed``): ``batch_size`` is the global batch, split evenly over the ranks;
statistics, teacher dropping and metrics are computed over the global batch, so N ranks train as one
process would; rank 0 alone writes checkpoints, ``metrics.jsonl`` and logs.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .checkpoint import Checkpoints, TrainState, load_train_state, save_train_state
from .distributed import World, current_world, wrap_ddp
from .io import atomic_folder, load_tensors, save_json, save_tensors, save_text
from .ladder import make_ladder, select_blocks
from .live import MetricsLog
from .losses import distillation_loss, teacher_losses
from .params import ParameterError
from .runs import OutDirError
from .standardize import batch_weight, make_standardizer
from .students import Student
from .teachers import Teacher


@dataclass
class DistillConfig:
    teachers: list[str] = field(default_factory=lambda: ["world_colour", "world_shape"])
    student: str = "wb_vitc_tiny_patch8_32"
    data: str = "world"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    tdrop_p: float = 0.5
    ladder: str | list[int] = "all"
    standardize: str = "running"
    image_size: int | None = None  # student input size; None: the student's own (its images are resized to it)
    seed: int = 0
    device: str = "auto"
    fused_ladder: bool = True  # the ladder as batched matrix products (same function as one MLP per block)
    torch_compile: bool = False  # torch.compile student + ladder (worth it for long GPU runs; compiling takes minutes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_params(cls, **params) -> "DistillConfig":
        """Validate notebook / command-line parameters (strings from ``papermill -p`` included)."""
        from .params import as_bool, as_choice, as_float, as_int, as_ladder, as_list, with_defaults
        from .standardize import STANDARDIZERS
        from .students import check_student_name, student_geometry
        from .teachers import check_teacher_names

        p = with_defaults(cls, params, "distillation")
        image_size = p["image_size"]
        image_size = None if image_size in (None, "", "auto", "None", 0, "0") else as_int(image_size, "image_size", minimum=1)
        cfg = cls(
            teachers=check_teacher_names(as_list(p["teachers"], "teachers")),
            student=check_student_name(str(p["student"])),
            data=str(p["data"]),
            epochs=as_int(p["epochs"], "epochs", minimum=1),
            batch_size=as_int(p["batch_size"], "batch_size", minimum=1),
            lr=as_float(p["lr"], "lr", low=0.0),
            weight_decay=as_float(p["weight_decay"], "weight_decay", low=0.0),
            warmup_frac=as_float(p["warmup_frac"], "warmup_frac", low=0.0, high=1.0),
            grad_clip=as_float(p["grad_clip"], "grad_clip", low=0.0),
            tdrop_p=as_float(p["tdrop_p"], "tdrop_p", low=0.0, high=1.0),
            ladder=as_ladder(p["ladder"]),
            standardize=as_choice(p["standardize"], "standardize", STANDARDIZERS),
            image_size=image_size,
            seed=as_int(p["seed"], "seed", minimum=0),
            device=str(p["device"]),
            fused_ladder=as_bool(p["fused_ladder"], "fused_ladder"),
            torch_compile=as_bool(p["torch_compile"], "torch_compile"),
        )
        if cfg.lr == 0:
            raise ParameterError("lr must be > 0")
        size, patch, depth = student_geometry(cfg.student, cfg.image_size)
        if size % patch:
            raise ParameterError(
                f"image_size {size} is not a multiple of the patch size {patch} of student {cfg.student!r}: use "
                f"{max(patch, size // patch * patch)} or {(size // patch + 1) * patch} (or 'auto' for the student's own)")
        try:
            select_blocks(cfg.ladder, depth)
        except ValueError as err:
            raise ParameterError(str(err)) from None
        pick_device(cfg.device)
        return cfg

    def results_key(self) -> dict:
        """What decides the results, for comparing runs: everything but how it runs (a run may resume elsewhere,
        compiled or not). The ladder layout stays: the optimizer state of one does not load into the other."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_ONLY}


EXECUTION_ONLY = ("device", "torch_compile")


def check_global_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise ParameterError(f"batch_size {batch_size} (the global batch) does not split evenly over {world.size} "
                             f"processes: use a multiple of {world.size}")


def check_batch_size(batch_size: int, n_train: int, data_name: str) -> None:
    if batch_size > n_train:
        raise ParameterError(
            f"batch_size {batch_size} is larger than the training split of {data_name!r} ({n_train} images): "
            f"lower batch_size (e.g. -p batch_size {max(1, n_train // 4)}) or use more training images")


def pick_device(device: str = "auto") -> torch.device:
    """Pick the device once: ``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


class UNIC(nn.Module):
    """Student encoder + expendable ladder + per-teacher, per-token-type standardizers."""

    def __init__(self, student: Student, teacher_dims: dict[str, int], teacher_grids: dict[str, tuple[int, int]],
                 ladder: str | list[int] = "all", standardize: str = "running", fused_ladder: bool = True):
        super().__init__()
        self.student = student
        self.teacher_grids = dict(teacher_grids)
        self.ladder = make_ladder(student.embed_dim, student.depth, teacher_dims, select_blocks(ladder, student.depth),
                                  fused=fused_ladder)
        self.std_cls = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})
        self.std_patch = nn.ModuleDict({t: make_standardizer(standardize, d) for t, d in teacher_dims.items()})

    def forward(self, images):
        return self.ladder(self.student(images), self.student.grid, self.teacher_grids)

    @torch.no_grad()
    def targets(self, teacher_feats: dict, update_weight: float | None, all_sum: Callable | None = None):
        """Standardize teacher features; update the running statistics first when training (over every
        rank's batch with ``all_sum``, the sum over ranks)."""
        out = {}
        for t, f in teacher_feats.items():
            if update_weight is not None:
                self.std_cls[t].update(f.cls, update_weight, all_sum)
                self.std_patch[t].update(f.patch, update_weight, all_sum)
            out[t] = (self.std_cls[t](f.cls.float()), self.std_patch[t](f.patch.float()))
        return out


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class DistillRun:
    model: UNIC
    history: list[dict]
    checkpoint: Path | None  # out_dir/checkpoint: the finished student (None without out_dir)
    runtime_s: float  # training time, over every (re)start
    skipped: list[str] = field(default_factory=list)  # unreadable training files, each once ("path: reason")
    resumed_from: int | None = None  # the step this call resumed from, None for a fresh start


def _lr_at(step: int, total: int, cfg: DistillConfig) -> float:
    warmup = max(1, int(cfg.warmup_frac * total))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def teacher_feature_shapes(teachers: dict[str, Teacher], images: torch.Tensor) -> tuple[dict, dict]:
    with torch.inference_mode():
        feats = {t: m(images) for t, m in teachers.items()}
    return {t: f.cls.shape[-1] for t, f in feats.items()}, {t: f.grid for t, f in feats.items()}


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def distill_step(model: UNIC, teachers: dict[str, Teacher], images: torch.Tensor, stats_weight: float,
                 drop_p: float, generator: torch.Generator | None, amp, world=None, forward=None):
    """Forward half of one training step: returns the loss, the (T, B) losses and the coefficients.

    Distributed: ``world`` (``workbench.distributed.World``) and ``forward``, the model wrapped in
    DistributedDataParallel (its gradients are averaged over the ranks)."""
    with torch.inference_mode(), amp:  # teachers never build autograd state
        feats = {t: m(images) for t, m in teachers.items()}
    targets = model.targets(feats, update_weight=stats_weight, all_sum=world.all_sum if world else None)
    with amp:
        preds = (forward or model)(images)
    losses = teacher_losses(preds, targets)  # (T, B), float32
    loss, coeffs = distillation_loss(losses, drop_p, generator, world)
    return loss, losses, coeffs


def distill(cfg: DistillConfig, data, teachers: dict[str, Teacher], out_dir: str | Path | None = None,
            callback: Callable[[dict], None] | None = None, log_every: int = 10, log=print,
            ckpt_every: int = 0, keep: int = 3, overwrite: bool = False) -> DistillRun:
    """Train the student; with ``out_dir``, checkpoint every ``ckpt_every`` steps (0: every epoch), keep the
    newest ``keep``, and resume from the newest on a rerun (``overwrite=True`` starts over instead)."""
    device = pick_device(cfg.device)
    world = current_world()
    check_global_batch(cfg.batch_size, world)
    check_batch_size(cfg.batch_size, len(data.train) - len(data.train) % world.size, data.name)
    log = log if world.main else (lambda *_: None)
    torch.manual_seed(cfg.seed)
    teachers = {t: m.to(device) for t, m in teachers.items()}
    dims, grids = teacher_feature_shapes(teachers, data.first_image("train").to(device))
    student = Student(cfg.student, img_size=cfg.image_size)
    model = UNIC(student, dims, grids, cfg.ladder, cfg.standardize, cfg.fused_ladder).to(device)
    if cfg.torch_compile:
        model.compile()  # in place: the state dict keeps its keys
    forward = wrap_ddp(model, device, world)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    amp = autocast_for(device)
    gen = torch.Generator().manual_seed(cfg.seed)  # teacher dropping
    # with N ranks an epoch leaves out its last n mod N images (every rank must make the same steps)
    steps_per_epoch = math.ceil((len(data.train) - len(data.train) % world.size) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch

    out_dir = Path(out_dir) if out_dir is not None else None
    ckpts = Checkpoints(out_dir / "checkpoints", keep) if out_dir is not None else None
    meta = {"config": cfg.to_dict(), "teacher_grids": grids, "data": data.fingerprint}
    # loading restores the random generators too: nothing may draw from them between here and the loop.
    # Every rank loads the same checkpoint; rank 0 first, which alone removes leftovers (and, with
    # overwrite, the old run) before the others read
    with world.main_first():
        state = resume(ckpts, model, opt, {"teacher_drop": gen}, meta, overwrite and world.main, log) if ckpts else None
    resumed_from = state.step if state is not None else None
    state = state or TrainState()
    saving = ckpts is not None and world.main
    metrics = MetricsLog(out_dir / "metrics.jsonl", start_step=state.step) if saving else None
    if callback is not None and world.main:
        for record in state.history:  # a resumed run's plot starts with what was recorded before
            callback(record)

    def checkpoint() -> Path:
        def write(folder):
            save_checkpoint(model, cfg, folder, extra={**meta, "step": state.step, "epoch": state.epoch})
            save_train_state(folder, state, opt, {"teacher_drop": gen})

        state.train_s = time.time() - t0
        path = ckpts.save(state.step, write)
        save_history(state.history, out_dir / "history.jsonl")
        return path

    t0 = time.time() - state.train_s
    model.train()
    while state.epoch < cfg.epochs:
        loader = data.loader("train", cfg.batch_size // world.size, shuffle=True, seed=cfg.seed, epoch=state.epoch,
                             start=state.batch * cfg.batch_size, rank=world.rank, world_size=world.size)
        for batch in loader:
            state.batch += 1
            state.note_skipped(batch.skipped)
            if batch.images is None:
                if world.size > 1:  # the other ranks would wait for this one's gradients forever
                    raise ValueError(f"rank {world.rank}: no image of a batch is readable ({'; '.join(batch.skipped[:3])}); "
                                     "a distributed run needs a readable image in every batch: remove the broken files")
                continue
            step = state.step
            images = batch.images.to(device, non_blocking=True)
            lr = _lr_at(step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr

            loss, losses, coeffs = distill_step(model, teachers, images, batch_weight(step, total), cfg.tdrop_p, gen, amp,
                                                world, forward)
            global_loss = world.all_sum(loss.detach().clone()) / world.size  # a NaN on any rank stops every rank

            if not torch.isfinite(global_loss):
                bad = [t for t, row in zip(teachers, losses) if not torch.isfinite(row).all()]
                last = ckpts.latest() if ckpts is not None else None
                raise NonFiniteLoss(
                    f"non-finite loss at step {step} (epoch {state.epoch + 1}), teacher(s) {bad or list(teachers)}; "
                    f"last good checkpoint: {last or 'none yet'}. Lower lr or check the teachers' features "
                    f"(a rerun in the same out_dir would resume from that checkpoint: change the configuration "
                    f"with overwrite=True or another out_dir)."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            state.step += 1

            if step % log_every == 0 or step == total - 1:
                n = len(teachers)  # over the global batch: sums of every rank
                sums = world.all_sum(torch.cat([losses.detach().sum(1), coeffs.sum(1), losses.new_tensor([losses.shape[1]])]))
                per_teacher, alphas = (sums[:n] / sums[-1]).tolist(), sums[n:2 * n].tolist()
                record = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, "loss": global_loss.item(),
                          "time_s": time.time() - t0,
                          **{f"loss/{t}": v for t, v in zip(teachers, per_teacher)},
                          **{f"alpha/{t}": a for t, a in zip(teachers, alphas)}}
                state.history.append(record)
                if metrics is not None:
                    metrics.append(record)
                if callback is not None and world.main:
                    callback(record)
            if saving and ckpt_every and state.step % ckpt_every == 0:
                checkpoint()
        state.epoch, state.batch = state.epoch + 1, 0
        if saving and (not ckpt_every or state.epoch == cfg.epochs):
            checkpoint()
        last_loss = f"loss {state.history[-1]['loss']:.4f}" if state.history else "no readable batch"
        unreadable = f"; {len(state.skipped)} unreadable image(s) skipped so far" if state.skipped else ""
        log(f"epoch {state.epoch}/{cfg.epochs}: {last_loss} ({time.time() - t0:.0f}s){unreadable}")

    model.eval()
    final = out_dir / "checkpoint" if out_dir is not None else None
    if final is not None and world.main:
        if not (final / "config.json").is_file():
            with atomic_folder(final) as tmp:
                save_checkpoint(model, cfg, tmp, extra={**meta, "step": state.step, "epoch": state.epoch,
                                                        "unreadable_images": state.skipped})
        save_history(state.history, out_dir / "history.jsonl")
    return DistillRun(model, state.history, final, time.time() - t0, state.skipped, resumed_from)


def resume(ckpts: Checkpoints, model: UNIC, opt, generators: dict, meta: dict, overwrite: bool, log=print
           ) -> TrainState | None:
    """Load the newest readable checkpoint of this run into ``model``, ``opt`` and ``generators``.

    Refuses checkpoints of another configuration or other data (unless ``overwrite``, which deletes them)."""
    out_dir = ckpts.root.parent
    if overwrite:
        for p in (ckpts.root, out_dir / "checkpoint"):
            shutil.rmtree(p, ignore_errors=True)
        (out_dir / "history.jsonl").unlink(missing_ok=True)
        return None
    for leftover in ckpts.remove_partial():
        log(f"removed {leftover.name}: a checkpoint whose writing was interrupted")
    for leftover in [*out_dir.glob(".history.jsonl.*.tmp"), *out_dir.glob(".checkpoint.*.tmp")]:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()  # other writes cut short
    found = ckpts.all()
    if not found:
        if (out_dir / "checkpoint" / "config.json").is_file():
            raise OutDirError(f"{out_dir} holds a finished student (checkpoint/) but no training state to resume "
                              "from (checkpoints/ was removed): load it with load_student, or pass overwrite=True "
                              "to train again")
        return None
    want = {k: v for k, v in json.loads(json.dumps(meta["config"])).items() if k != "device"}
    errors = []
    for path in reversed(found):  # newest first; an unreadable one falls back to the one before
        try:
            have = json.loads((path / "config.json").read_text())
            same = {k: v for k, v in have.get("config", {}).items() if k != "device"}
            if same != want or have.get("data") != meta["data"]:
                diff = [f"{k}: checkpoint {same.get(k)!r}, this run {v!r}" for k, v in want.items() if same.get(k) != v]
                if have.get("data") != meta["data"]:
                    diff.append("the training data differ (other images, labels or split)")
                raise OutDirError(f"{out_dir} holds checkpoints of another run ({'; '.join(diff)}). Rerun with that "
                                  "configuration to resume it, use another out_dir, or pass overwrite=True to start over.")
            model.load_state_dict(_model_state(path))
            state, _ = load_train_state(path, opt, generators)
        except OutDirError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # JSONDecodeError is a ValueError
            errors.append(f"{path.name}: {type(err).__name__}: {err}")
            log(f"checkpoint {path} is unreadable ({type(err).__name__}); trying the one before")
            continue
        done = " (training already finished)" if state.epoch >= meta["config"]["epochs"] else ""
        log(f"resumed from step {state.step} (epoch {min(state.epoch + 1, meta['config']['epochs'])}, "
            f"batch {state.batch}) of {path}{done}")
        return state
    raise OutDirError(f"no checkpoint in {ckpts.root} could be loaded ({'; '.join(errors)}); pass overwrite=True "
                      "to start over")


def _model_state(folder: Path) -> dict[str, torch.Tensor]:
    student = {f"student.{k}": v for k, v in load_tensors(folder / "student.safetensors").items()}
    return {**student, **load_tensors(folder / "projectors.safetensors")}


def save_history(history: list[dict], path: Path) -> None:
    save_text("".join(json.dumps(r) + "\n" for r in history), path)


def save_checkpoint(model: UNIC, cfg: DistillConfig, folder: Path, extra: dict | None = None) -> Path:
    """``student.safetensors`` (the encoder you keep), ``projectors.safetensors`` (ladder and
    standardization statistics, dropped after training) and ``config.json``. Each file is atomic;
    config.json is written last, so a folder with a config always holds complete weights."""
    folder = Path(folder)
    state = model.state_dict()
    save_tensors({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}, folder / "student.safetensors")
    save_tensors({k: v for k, v in state.items() if not k.startswith("student.")}, folder / "projectors.safetensors")
    save_json({"config": cfg.to_dict(), "teacher_grids": model.teacher_grids, **(extra or {})}, folder / "config.json")
    return folder


def find_checkpoint(folder: str | Path) -> Path:
    """A checkpoint folder: ``folder`` itself, ``folder/checkpoint`` (a finished run's out_dir), or the newest
    ``folder/checkpoints/step_*`` (a run still training, or killed)."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    if (folder / "checkpoint" / "config.json").is_file():
        return folder / "checkpoint"
    latest = Checkpoints(folder / "checkpoints").latest()
    if latest is not None:
        return latest
    raise FileNotFoundError(f"no distillation checkpoint in {folder} (expected config.json and student.safetensors, "
                            "or an out_dir holding checkpoint/ or checkpoints/)")


def load_student(folder: str | Path, device: str | torch.device = "cpu") -> Student:
    """Rebuild the distilled student encoder from a checkpoint folder or a run's out_dir (projectors are not needed)."""
    folder = find_checkpoint(folder)
    cfg = json.loads((folder / "config.json").read_text())["config"]
    student = Student(cfg["student"], img_size=cfg.get("image_size"))
    student.load_state_dict(load_tensors(folder / "student.safetensors"))
    return student.to(device).eval()
