"""precision: bf16 only where the device has it natively and it is faster for the run's models; a timed "auto"
run is the run it chose; a bf16 step agrees with the fp32 step within bf16's rounding."""
import time

import pytest
import torch

import workbench as wb
from workbench.core import precision as prec
from workbench.core.files import load_tensors
from workbench.distillation import DistillConfig, distill

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WORKBENCH_NATIVE_BF16")  # the processor's flags decide (patched below)
    return tmp_path / "cache"


def test_the_override_of_the_flags(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    monkeypatch.setenv("WORKBENCH_NATIVE_BF16", "0")
    assert not prec.native_bf16(CPU) and prec.resolve_precision("auto", CPU, lambda p: 1 / 0) == "fp32"
    monkeypatch.setenv("WORKBENCH_NATIVE_BF16", "1")
    assert prec.native_bf16(CPU)


def timed(seconds: dict[str, float]):
    """A trial whose calls are recorded, and time_trials patched to report ``seconds``."""
    calls = []

    def trial(p):
        calls.append(p)

    return trial, calls, lambda t, candidates, steps=3: {p: seconds[p] for p in candidates if not t(p)}


@pytest.mark.parametrize("flags, seconds, chosen", [
    (set(), {"fp32": 1.0, "bf16": 0.5}, "fp32"),                    # no native bf16: never timed, fp32
    ({"avx512_bf16"}, {"fp32": 1.0, "bf16": 0.5}, "bf16"),          # native and twice as fast
    ({"amx_bf16"}, {"fp32": 1.0, "bf16": 0.99}, "fp32"),            # native, but not 5 % faster
    ({"avx512_bf16"}, {"fp32": 0.7, "bf16": 1.0}, "fp32"),          # native, slower (a small model, few tokens)
])
def test_auto_takes_bf16_only_where_native_and_faster(cache, monkeypatch, flags, seconds, chosen):
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": flags | {"sse2"})
    trial, calls, fake = timed(seconds)
    monkeypatch.setattr(prec, "time_trials", fake)
    assert prec.resolve_precision("auto", CPU, trial, {"model": "m"}, log=lambda *_: None) == chosen
    assert bool(calls) == bool(flags)  # timed only where bf16 is native
    calls.clear()
    assert prec.resolve_precision("auto", CPU, trial, {"model": "m"}, log=lambda *_: None) == chosen
    assert not calls  # decided once per machine and shapes, then read back
    assert prec.resolve_precision("fp32", CPU, trial, {}) == "fp32" and prec.resolve_precision("bf16", CPU) == "bf16"


def test_the_choice_depends_on_the_shapes_and_bad_values_are_refused(cache, monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    answers = iter([{"fp32": 1.0, "bf16": 0.5}, {"fp32": 0.5, "bf16": 1.0}])
    monkeypatch.setattr(prec, "time_trials", lambda t, c, steps=3: next(answers))
    assert prec.resolve_precision("auto", CPU, lambda p: None, {"tokens": 196}, log=lambda *_: None) == "bf16"
    assert prec.resolve_precision("auto", CPU, lambda p: None, {"tokens": 16}, log=lambda *_: None) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        prec.resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        prec.autocast("half", CPU)


def test_the_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "sse2"} <= prec.cpu_flags(str(info))
    assert prec.cpu_flags(str(tmp_path / "none")) == set()


def test_a_bf16_step_agrees_with_the_fp32_step():
    """One UNIC training step (forward, backward) of a small student and two teachers: the loss within 2 % and the
    gradients' direction within a few degrees; bf16 keeps 8 bits of mantissa, 0.4 % per rounding."""
    from workbench.distillation import UNIC, distill_forward, teacher_feature_shapes

    torch.manual_seed(0)
    teachers = wb.build_teachers(["world_colour", "world_shape"], pretrained=False)
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dims, grids = teacher_feature_shapes(teachers, images[:1])
    model = UNIC(wb.models.Student("wb_vit_tiny_patch4_32"), dims, grids)
    results = {}
    for p in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        loss, _, _ = distill_forward(model, teachers, images, None, 0.0, None, prec.autocast(p, CPU))
        loss.backward()
        grads = torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])
        results[p] = (loss.item(), grads)
    (l32, g32), (l16, g16) = results["fp32"], results["bf16"]
    assert abs(l16 - l32) / l32 < 0.02
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99


def test_a_timed_auto_run_is_the_run_it_chose(cache, monkeypatch, tmp_path):
    """The timing steps draw no random number the run sees and leave no gradient: auto that chose fp32 ends with
    the weights of a run told fp32."""
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    timings = []
    real = prec.time_trials

    def slow_bf16(trial, candidates, steps=3):
        timings.append(real(trial, candidates, steps=1))
        return {"fp32": 1.0, "bf16": 2.0}

    monkeypatch.setattr(prec, "time_trials", slow_bf16)
    data = wb.load_data("world", n_train=32, n_test=8)
    students = {}
    for p in ("auto", "fp32"):
        cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16, n_train=32, n_test=8,
                            precision=p)
        torch.manual_seed(0)
        teachers = wb.build_teachers(cfg.teachers, pretrained=False)
        run = distill(cfg, data, teachers, out_dir=tmp_path / p, log=lambda *_: None)
        assert run.precision == "fp32"
        students[p] = load_tensors(run.student_folder / "student.safetensors")
    assert timings, "auto was not timed"
    assert all(torch.equal(students["auto"][k], v) for k, v in students["fp32"].items())


def test_timing_a_classifier_draws_nothing_the_run_sees(cache, monkeypatch):
    """05 and 06 resolve "auto" once before their students train: the timing builds and steps a classifier of
    their own, and the global generator is where it was."""
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    monkeypatch.setattr(prec, "time_trials", lambda t, c, steps=3: {p: (t(p), {"fp32": 1.0, "bf16": 0.5}[p])[1]
                                                                    for p in c})
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    chosen = wb.models.classifier_precision("auto", build=lambda: wb.models.make_classifier(
        "wb_vit_tiny_patch8_32", "random", 6), batch_size=4, input_size=32, device="cpu", name="tiny",
        log=lambda *_: None)
    assert chosen == "bf16" and torch.equal(torch.random.get_rng_state(), before)


def test_a_timing_on_a_busy_machine_decides_this_run_only(cache, monkeypatch):
    """A process that got little CPU while it timed (other jobs had the cores: here it sleeps) keeps no decision:
    the next run times again."""
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    calls = []

    def starved(trial, candidates, steps=3):
        calls.append(1)
        time.sleep(0.2)
        return {"fp32": 1.0, "bf16": 0.5}

    monkeypatch.setattr(prec, "time_trials", starved)
    for n in (1, 2):
        assert prec.resolve_precision("auto", CPU, lambda p: None, {"m": 1}, log=lambda *_: None) == "bf16"
        assert len(calls) == n  # timed again: nothing was kept
    assert not list(cache.glob("precision/*.json"))


def test_timing_keeps_the_fastest_step_of_each(monkeypatch):
    """Another job can only slow a step down: of the alternating rounds, the fastest of each precision counts."""
    clock = iter([0.0, 1.0, 10.0, 10.5, 20.0, 29.0, 30.0, 30.2])  # fp32 1.0, bf16 0.5, fp32 9.0, bf16 0.2
    monkeypatch.setattr(prec.time, "perf_counter", lambda: next(clock))
    assert prec.time_trials(lambda p: None, ("fp32", "bf16"), steps=2) == {"fp32": 1.0, "bf16": pytest.approx(0.2)}


def test_a_resumed_auto_run_computes_as_it_started(cache, monkeypatch, tmp_path):
    """auto in a run that resumes takes the precision its checkpoint recorded, without timing: the machine's load
    (or its decision cache) may have changed since, the run may not."""
    monkeypatch.setattr(prec, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    timed_calls = []

    def answer(seconds):
        def fake(trial, candidates, steps=3):
            timed_calls.append(seconds)
            return seconds
        return fake

    data = wb.load_data("world", n_train=32, n_test=8)
    cfg = DistillConfig(student="wb_vit_tiny_patch8_32", epochs=1, batch_size=16, n_train=32, n_test=8)
    monkeypatch.setattr(prec, "time_trials", answer({"fp32": 1.0, "bf16": 0.5}))
    first = distill(cfg, data, wb.build_teachers(cfg.teachers, pretrained=False), out_dir=tmp_path / "run",
                    log=lambda *_: None)
    assert first.precision == "bf16" and len(timed_calls) == 1
    for path in cache.glob("precision/*.json"):
        path.unlink()  # the machine's decision is gone (or would now say fp32): the run keeps bf16
    monkeypatch.setattr(prec, "time_trials", answer({"fp32": 0.5, "bf16": 1.0}))
    again = distill(cfg, data, wb.build_teachers(cfg.teachers, pretrained=False), out_dir=tmp_path / "run",
                    log=lambda *_: None)
    assert again.precision == "bf16" and len(timed_calls) == 1
