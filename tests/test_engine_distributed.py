"""Two CPU processes under torchrun (gloo) give the same metrics as one process.

A module fixture starts one torchrun launch for a group of runs (``dist_helpers.TorchrunMany``:
the single-label runs, the multi-label runs) and, meanwhile, the same runs in this process; each
method is compared in its own test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dist_helpers import TorchrunMany, once_per_run
from longtail.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _bench_args(cfg: Path, out: Path) -> list[str]:
    return ["bench", str(cfg), "--out", str(out), "--no-reference", "--jobs", "1"]


Runs = tuple[Path, subprocess.CompletedProcess[str], dict[str, int]]


def _once(
    tmp_path_factory: pytest.TempPathFactory, name: str, configs: dict[str, dict[str, Any]]
) -> Runs:
    """:func:`_launch_and_one_process` once per pytest run (xdist workers share it)."""
    root, out = once_per_run(tmp_path_factory, name, lambda d: _launch_and_one_process(configs, d))
    proc = subprocess.CompletedProcess([], out["returncode"], "", out["stderr"])
    return root, proc, out["single"]


def _launch_and_one_process(configs: dict[str, dict[str, Any]], root: Path) -> dict[str, Any]:
    """Every config under one torchrun launch (``root/NAME/ddp``) and, meanwhile, in this process
    (``root/NAME/single``): the launch's exit code and error output, the one-process exit codes."""
    runs, paths = [], {}
    for name, raw in configs.items():
        (root / name).mkdir()
        cfg = root / name / "c.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        runs.append(_bench_args(cfg, root / name / "ddp"))
        paths[name] = cfg
    launch = TorchrunMany(runs, root / "launch")
    single = {
        name: main([*_bench_args(cfg, root / name / "single"), "--no-progress"])
        for name, cfg in paths.items()
    }
    proc = launch.wait()
    return {"returncode": proc.returncode, "stderr": proc.stderr, "single": single}


SINGLE_LABEL_METHODS = ["drw", "cb-resample", "crt"]


def _data_dir() -> Path:
    return Path(os.environ.get("LONGTAIL_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def single_label_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    """One torchrun launch: the MLP methods, then (when the data are there) the CNN with batch
    norm; and the same runs in one process."""
    # MLP without batch norm, no augmentation: the union of the two per-process batches of a step
    # is the single-process batch, and DDP averages the two mean gradients, so training matches
    configs: dict[str, dict[str, Any]] = {
        "mlp": {
            "name": "ddp",
            "methods": SINGLE_LABEL_METHODS,
            "seeds": [0],
            "data": {"dataset": "digits", "imbalance_factor": 10},
            "model": {"arch": "mlp", "hidden": [32]},
            "train": {
                "epochs": 4,
                "batch_size": 32,
                "lr": 0.05,
                "eval_every": 2,
                "num_threads": 1,
            },
        }
    }
    fmnist = _data_dir() / "fashion-mnist"
    if fmnist.is_dir():
        configs["bn"] = {
            "name": "ddp_bn",
            "methods": ["erm"],
            "seeds": [0],
            "data": {
                "dataset": "fashion-mnist",
                "data_dir": str(fmnist),
                "imbalance_factor": 10,
                "max_per_class": 60,
            },
            "model": {"arch": "cnn", "channels": [4, 8]},
            "train": {
                "epochs": 3,
                "batch_size": 32,
                "lr": 0.05,
                "eval_every": 0,
                "num_threads": 1,
            },
        }
    return _once(tmp_path_factory, "ddp_single_label", configs)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("method", SINGLE_LABEL_METHODS)
def test_two_processes_match_one(single_label_runs: Runs, method: str) -> None:
    """Also for a two-stage method (crt: the erm stage, then the classifier on frozen features)."""
    root, proc, single = single_label_runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert single["mlp"] == 0
    ddp, one = root / "mlp" / "ddp", root / "mlp" / "single"
    a = json.loads((ddp / method / "seed_0" / "result.json").read_text())
    b = json.loads((one / method / "seed_0" / "result.json").read_text())
    run = json.loads((ddp / "run.json").read_text())
    assert run["world_size"] == 2
    for key, value in b["metrics"].items():
        assert a["metrics"][key] == pytest.approx(value, abs=0.02), key
    # the confusion matrix is summed over both shards of the test set: all test images counted
    assert sum(map(sum, a["details"]["confusion"])) == sum(map(sum, b["details"]["confusion"]))
    wa = torch.load(ddp / method / "seed_0" / "model.pt", weights_only=True)
    wb = torch.load(one / method / "seed_0" / "model.pt", weights_only=True)
    for k in wb:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k


MULTI_LABEL_CASES = [("asl", 0.0), ("rfs", 0.0), ("hill", 0.3)]


@pytest.fixture(scope="module")
def multi_label_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Runs:
    """One torchrun launch: the multi-label methods of each hidden-label fraction (a data
    setting, so a config per fraction); and the same runs in one process."""
    from test_engine_fixtures import write_mulan

    folder = write_mulan(tmp_path_factory.mktemp("toy") / "toy", n_train=96, n_test=200)
    configs = {}
    for hide in sorted({h for _, h in MULTI_LABEL_CASES}):
        configs[f"hide{hide}"] = {
            "name": "ddp_ml",
            "task": "multi-label",
            "methods": [m for m, h in MULTI_LABEL_CASES if h == hide],
            "seeds": [0],
            "data": {
                "dataset": "mulan",
                "data_dir": str(folder),
                "imbalance_factor": None,
                "hide_fraction": hide,
            },
            "model": {"arch": "mlp", "hidden": [16]},
            "train": {
                "epochs": 3,
                "batch_size": 32,
                "lr": 0.05,
                "eval_every": 1,
                "num_threads": 1,
            },
        }
    return _once(tmp_path_factory, "ddp_multi_label", configs)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize(("method", "hide"), MULTI_LABEL_CASES)
def test_two_processes_match_one_multilabel(
    multi_label_runs: Runs,
    method: str,
    hide: float,
) -> None:
    """Multi-label (repeat-factor sampling, hidden labels): two processes train and evaluate like
    one; mAP gathers every test example's scores from both shards. With hidden labels each process
    averages its loss over its own known entries (as any masked loss under DDP), so the weights
    match only approximately and the metrics are compared."""
    root, proc, single = multi_label_runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert single[f"hide{hide}"] == 0
    ddp, one = root / f"hide{hide}" / "ddp", root / f"hide{hide}" / "single"
    a = json.loads((ddp / method / "seed_0" / "result.json").read_text())
    b = json.loads((one / method / "seed_0" / "result.json").read_text())
    wa = torch.load(ddp / method / "seed_0" / "model.pt", weights_only=True)
    wb = torch.load(one / method / "seed_0" / "model.pt", weights_only=True)
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wb)
    assert diff <= (1e-4 if hide == 0 else 2e-2), f"largest weight difference {diff:.3g}"
    # mAP ranks the scores; the F1 scores threshold them at 0.5, where an example whose probability
    # sits at the threshold can flip with the last bits of the weights: a looser tolerance there
    for key, value in b["metrics"].items():
        tol = 0.02 if key == "mAP" else 0.05
        assert a["metrics"][key] == pytest.approx(value, abs=tol), (key, diff)
    assert len(a["details"]["per_label_ap"]) == 4


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_with_batch_norm_match_one(
    single_label_runs: Runs,
) -> None:
    """The CNN has batch norm: synchronised over the 2 processes it steps like one process.

    (With per-process batch statistics the weights differ by ~4e-2 after 3 epochs; synchronised,
    by ~3e-4, float64 statistics against float32.)
    """
    fmnist = _data_dir() / "fashion-mnist"
    if not fmnist.is_dir():
        pytest.skip(f"Fashion-MNIST not found at {fmnist} (set LONGTAIL_DATA_DIR)")
    root, proc, single = single_label_runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert single["bn"] == 0
    ddp, one = root / "bn" / "ddp", root / "bn" / "single"
    wa = torch.load(ddp / "erm" / "seed_0" / "model.pt", weights_only=True)
    wb = torch.load(one / "erm" / "seed_0" / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for k in wb:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=3e-3), k
    a = json.loads((ddp / "erm" / "seed_0" / "result.json").read_text())
    b = json.loads((one / "erm" / "seed_0" / "result.json").read_text())
    for key, value in b["metrics"].items():
        assert a["metrics"][key] == pytest.approx(value, abs=0.01), key


def test_backend_for_device() -> None:
    """CUDA: nccl for GPU tensors and gloo for the CPU metric states; CPU: gloo."""
    from longtail.engine.distributed import backend_for

    assert backend_for(torch.device("cuda", 0)) == "cpu:gloo,cuda:nccl"
    assert backend_for(torch.device("cuda")) == "cpu:gloo,cuda:nccl"
    assert backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize(
    ("device", "backend"),
    [(torch.device("cuda", 0), "cpu:gloo,cuda:nccl"), (torch.device("cpu"), "gloo")],
)
def test_init_distributed_passes_the_backend(
    monkeypatch: pytest.MonkeyPatch, device: torch.device, backend: str
) -> None:
    from longtail.engine.distributed import init_distributed

    calls: dict[str, Any] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda **kw: calls.setdefault("init", kw)
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    assert init_distributed(device) is True
    assert calls["init"] == {"backend": backend}
    assert calls.get("set_device") == (device if device.type == "cuda" else None)


# ---- logs that only some ranks write -------------------------------------------------------------


def _uneven_logs_worker(rank: int, port: int, outdir: str) -> None:
    from dist_helpers import gloo_group
    from longtail.engine.tasks import Batch, StepOutput
    from longtail.engine.trainer import Trainer
    from longtail.tracks.single_label import METHODS
    from longtail.tracks.single_label.task import SingleLabelTask
    from test_engine_fixtures import tiny_config, tiny_vectors

    class Uneven(SingleLabelTask):
        def training_step(self, model: Any, batch: Batch, epoch: int, step: int) -> StepOutput:
            out = super().training_step(model, batch, epoch, step)
            # a key only rank 0 logs, and one both log with different values
            out.logs = {"both": float(rank)} | ({"rank0_only": 5.0} if rank == 0 else {})
            return out

    with gloo_group(rank, port):
        data = tiny_vectors()
        cfg = tiny_config(epochs=2, batch_size=16)
        result = Trainer(Uneven(METHODS["erm"], data, cfg), data, cfg, seed=0).fit()
        assert result is not None
        torch.save(result.history, Path(outdir) / f"h{rank}.pt")


@pytest.mark.distributed
@pytest.mark.slow
def test_a_key_logged_on_one_rank_does_not_hang(tmp_path: Path) -> None:
    from dist_helpers import run_two_processes

    run_two_processes(_uneven_logs_worker, tmp_path)
    h0 = torch.load(tmp_path / "h0.pt", weights_only=False)
    h1 = torch.load(tmp_path / "h1.pt", weights_only=False)

    def strip(h: list[dict[str, float]]) -> list[dict[str, float]]:
        timing = ("epoch_seconds", "eval_seconds")
        return [{k: v for k, v in row.items() if k not in timing} for row in h]

    assert strip(h0) == strip(h1)  # every rank logs the same, reduced row
    for row in h0:
        assert row["train_both"] == pytest.approx(0.5)  # mean of ranks 0 and 1
        assert row["train_rank0_only"] == pytest.approx(5.0)  # mean over the ranks that logged it


def test_a_torchrun_rank_of_the_command_leaves_without_finalization(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``longtail`` command (``main()`` without arguments) that left a process group ends
    through ``exit_rank`` with its exit code (no interpreter finalization, where gloo's worker
    threads can abort the process: see ``exit_rank``): after a user's error (2), an interrupt
    (130), a bug (1, its traceback printed first); a call from Python (``main([...])``) and a
    command without a group return their code or raise as before."""
    from longtail import cli
    from longtail.engine import distributed as D

    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    def interrupted(*_a: Any) -> int:
        raise KeyboardInterrupt

    def bug(*_a: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(D, "exit_rank", fake_exit)
    monkeypatch.setattr(D, "cleanup_distributed", lambda: True)
    monkeypatch.setattr(sys, "argv", ["longtail", "methods", "--task", "nope"])
    with pytest.raises(SystemExit):
        cli.main()
    assert exits == [2]  # the error's exit code, after its one line
    assert cli.main(["methods"]) == 0 and exits == [2]
    monkeypatch.setattr(sys, "argv", ["longtail", "methods"])
    with monkeypatch.context() as m:
        m.setattr(cli, "_dispatch", interrupted)
        with pytest.raises(SystemExit):
            cli.main()
        assert exits == [2, 130]
        m.setattr(cli, "_dispatch", bug)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main()
        assert exits == [2, 130, 1]
        assert "RuntimeError: a bug" in capsys.readouterr().err
        with pytest.raises(RuntimeError, match="a bug"):  # from Python: raised as before
            cli.main(["methods"])
    monkeypatch.setattr(D, "cleanup_distributed", lambda: False)
    assert cli.main() == 0 and exits == [2, 130, 1]


def test_exit_rank_flushes_and_exits_with_the_code() -> None:
    code = (
        "import sys; from longtail.engine.distributed import exit_rank; "
        "print('out', end=''); print('err', end='', file=sys.stderr); exit_rank(3)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "err")
