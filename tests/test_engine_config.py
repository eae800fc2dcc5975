"""Config loading and validation: every bad value is an error that names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from longtail.engine.config import (
    Config,
    ConfigError,
    bundled_config_names,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, raw: Any) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_defaults_are_the_digits_benchmark() -> None:
    cfg = config_from_dict({})
    assert isinstance(cfg, Config)
    assert cfg.data.dataset == "digits"
    assert cfg.seeds == [0, 1, 2]
    assert cfg.methods == "all"


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {"name": "x", "methods": ["erm", "la-loss"], "method_params": {"la-loss": {"tau": 1.5}}}
    )
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert again.method_params == {"la-loss": {"tau": 1.5}}


@pytest.mark.parametrize("name", ["digits_lt", "fashion_mnist_lt", "fashion_mnist_lt_if10"])
def test_bundled_configs_load(name: str) -> None:
    assert name in bundled_config_names()
    cfg = load_config(name, {"data.data_dir": "/nonexistent"})
    assert cfg.name


@pytest.mark.parametrize("name", ["fashion_mnist_lt.yaml", "fashion_mnist_lt_if10.yaml"])
def test_repo_configs_load_and_match_bundled(name: str) -> None:
    repo = REPO_ROOT / "configs" / name
    cfg = load_config(repo)
    assert cfg.data.dataset == "fashion-mnist"
    assert config_to_dict(cfg) == config_to_dict(load_config(Path(name).stem))


def test_none_loads_bundled_digits() -> None:
    assert load_config(None).name == "digits_lt"


def test_overrides_are_validated() -> None:
    assert load_config(None, {"train.epochs": 3}).train.epochs == 3
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(None, {"train.epochs": 0})


def test_yaml_exponent_string_is_a_float(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  weight_decay: 1e-4\n")
    assert load_config(p).train.weight_decay == pytest.approx(1e-4)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config("nope.yaml")


# ---- one test per error case --------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"'epochs': unknown key"):
        config_from_dict({"epochs": 3})


def test_unknown_nested_key() -> None:
    with pytest.raises(ConfigError, match=r"'train\.learning_rate': unknown key"):
        config_from_dict({"train": {"learning_rate": 0.1}})


def test_section_must_be_mapping() -> None:
    with pytest.raises(ConfigError, match=r"'train': expected a mapping"):
        config_from_dict({"train": 3})


def test_wrong_type_int() -> None:
    with pytest.raises(ConfigError, match=r"'train\.epochs': expected an integer"):
        config_from_dict({"train": {"epochs": "ten"}})


def test_float_for_int() -> None:
    with pytest.raises(ConfigError, match=r"'train\.batch_size': expected an integer"):
        config_from_dict({"train": {"batch_size": 32.5}})


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match=r"'train\.epochs': expected an integer"):
        config_from_dict({"train": {"epochs": True}})


def test_wrong_type_float() -> None:
    with pytest.raises(ConfigError, match=r"'train\.lr': expected a number"):
        config_from_dict({"train": {"lr": "fast"}})


def test_wrong_type_bool() -> None:
    with pytest.raises(ConfigError, match=r"'train\.augment': expected true/false"):
        config_from_dict({"train": {"augment": "yes"}})


def test_wrong_type_list() -> None:
    with pytest.raises(ConfigError, match=r"'seeds': expected a list"):
        config_from_dict({"seeds": 3})


def test_wrong_type_list_item() -> None:
    with pytest.raises(ConfigError, match=r"'model\.hidden\[1\]': expected an integer"):
        config_from_dict({"model": {"hidden": [64, "x"]}})


def test_null_not_allowed() -> None:
    with pytest.raises(ConfigError, match=r"'train\.lr': must not be null"):
        config_from_dict({"train": {"lr": None}})


def test_lr_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'train\.lr': must be > 0"):
        config_from_dict({"train": {"lr": 0.0}})


def test_momentum_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'train\.momentum': must be < 1"):
        config_from_dict({"train": {"momentum": 1.0}})


def test_imbalance_factor_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'data\.imbalance_factor': must be >= 1"):
        config_from_dict({"data": {"imbalance_factor": 0.5}})


def test_test_fraction_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'data\.test_fraction': must be < 1"):
        config_from_dict({"data": {"test_fraction": 1.0}})


def test_negative_seed() -> None:
    with pytest.raises(ConfigError, match=r"'seeds\[0\]': must be >= 0"):
        config_from_dict({"seeds": [-1]})


def test_non_finite_float() -> None:
    with pytest.raises(ConfigError, match=r"'train\.weight_decay': must be finite"):
        config_from_dict({"train": {"weight_decay": float("nan")}})


def test_bad_choice() -> None:
    with pytest.raises(ConfigError, match=r"'train\.schedule': must be one of"):
        config_from_dict({"train": {"schedule": "linear"}})


def test_bad_dataset() -> None:
    with pytest.raises(ConfigError, match=r"'data\.dataset': must be one of"):
        config_from_dict({"data": {"dataset": "imagenet"}})


def test_unknown_method() -> None:
    with pytest.raises(ConfigError, match=r"'methods\[1\]': unknown method 'nope'"):
        config_from_dict({"methods": ["erm", "nope"]})


def test_methods_string_must_be_all() -> None:
    with pytest.raises(ConfigError, match=r"'methods': expected 'all'"):
        config_from_dict({"methods": "some"})


def test_empty_methods() -> None:
    with pytest.raises(ConfigError, match=r"'methods': must not be empty"):
        config_from_dict({"methods": []})


def test_duplicate_seeds() -> None:
    with pytest.raises(ConfigError, match=r"'seeds': duplicate"):
        config_from_dict({"seeds": [0, 0]})


def test_method_params_unknown_method() -> None:
    with pytest.raises(ConfigError, match=r"'method_params\.nope'"):
        config_from_dict({"method_params": {"nope": {"tau": 1.0}}})


def test_method_params_unknown_parameter() -> None:
    with pytest.raises(ConfigError, match=r"'method_params\.la-loss\.gamma': unknown"):
        config_from_dict({"method_params": {"la-loss": {"gamma": 1.0}}})


def test_method_params_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"'method_params\.focal\.gamma': expected a number"):
        config_from_dict({"method_params": {"focal": {"gamma": "two"}}})


def test_method_params_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'method_params\.cb-softmax\.beta': must be < 1"):
        config_from_dict({"method_params": {"cb-softmax": {"beta": 1.0}}})


def test_method_params_log_end_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"'method_params\.el\.log_end': must be > 0"):
        config_from_dict({"method_params": {"el": {"log_end": 0.0}}})


def test_warmup_not_below_epochs() -> None:
    with pytest.raises(ConfigError, match=r"'train\.warmup_epochs': must be < train\.epochs"):
        config_from_dict({"train": {"epochs": 3, "warmup_epochs": 3}})


def test_milestone_beyond_epochs() -> None:
    with pytest.raises(ConfigError, match=r"'train\.milestones\[0\]'"):
        config_from_dict({"train": {"epochs": 3, "schedule": "step", "milestones": [5]}})


def test_milestones_not_increasing() -> None:
    with pytest.raises(ConfigError, match=r"'train\.milestones': must be increasing"):
        config_from_dict({"train": {"epochs": 9, "schedule": "step", "milestones": [5, 2]}})


def test_milestones_need_the_step_schedule() -> None:
    assert config_from_dict({"train": {"epochs": 9, "schedule": "step", "milestones": [3]}})
    with pytest.raises(ConfigError, match=r"'train\.milestones': only used by train\.schedule"):
        config_from_dict({"train": {"epochs": 9, "milestones": [3]}})


def test_max_per_class_needs_an_imbalance_factor() -> None:
    assert config_from_dict({"data": {"imbalance_factor": 5, "max_per_class": 50}})
    with pytest.raises(ConfigError, match=r"'data\.max_per_class': only used with"):
        config_from_dict({"data": {"imbalance_factor": None, "max_per_class": 50}})
    # fashion-pairs: max_per_class is also the pool size per pair class, used without a profile
    pairs = {"dataset": "fashion-pairs", "data_dir": "/x", "imbalance_factor": None}
    assert config_from_dict({"data": {**pairs, "max_per_class": 50}})


def test_resnet32_dropout_is_applied() -> None:
    import torch

    from longtail.engine.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", (3, 8, 8), 4, dropout=0.5, head="linear")
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_augment_needs_images() -> None:
    from longtail.engine.config import check_config_against_data

    cfg = config_from_dict({"train": {"augment": True}})
    check_config_against_data(cfg, is_image=True, num_classes=10)
    with pytest.raises(ConfigError, match=r"'train\.augment': .*not images"):
        check_config_against_data(cfg, is_image=False, num_classes=10)
    check_config_against_data(config_from_dict({}), is_image=False, num_classes=10)


@pytest.mark.parametrize("arch", ["cnn", "resnet32"])
def test_image_arch_needs_images(arch: str) -> None:
    from longtail.engine.config import check_config_against_data

    cfg = config_from_dict({"model": {"arch": arch}})
    check_config_against_data(cfg, is_image=True, num_classes=10)
    with pytest.raises(ConfigError, match=rf"'model\.arch': {arch} needs images"):
        check_config_against_data(cfg, is_image=False, num_classes=10)


@pytest.mark.parametrize("arch", ["auto", "mlp"])
def test_vector_arch_accepts_vectors(arch: str) -> None:
    from longtail.engine.config import check_config_against_data

    cfg = config_from_dict({"model": {"arch": arch}})
    check_config_against_data(cfg, is_image=False, num_classes=10)
    check_config_against_data(cfg, is_image=True, num_classes=10)


def test_data_needs_two_classes() -> None:
    from longtail.engine.config import check_config_against_data

    with pytest.raises(ConfigError, match=r"'data\.dataset': .*1 class"):
        check_config_against_data(config_from_dict({}), is_image=False, num_classes=1)


def test_data_dir_required_for_files() -> None:
    with pytest.raises(ConfigError, match=r"'data\.data_dir': required"):
        config_from_dict({"data": {"dataset": "fashion-mnist"}})


def test_bad_name() -> None:
    with pytest.raises(ConfigError, match=r"'name'"):
        config_from_dict({"name": "a/b"})


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(_write(tmp_path, [1, 2]))


def test_invalid_yaml(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ---- extends: a config built on others ------------------------------------------------------------


def _yaml(path: Path, raw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


BASE = {
    "name": "base",
    "methods": ["erm", "la-loss", "focal"],
    "method_params": {"la-loss": {"tau": 1.5}},
    "train": {"epochs": 5, "lr": 0.05, "milestones": [2, 4], "schedule": "step"},
    "model": {"arch": "mlp", "hidden": [64, 32]},
}


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    _yaml(tmp_path / "base.yaml", BASE)
    child = _yaml(
        tmp_path / "child.yaml",
        {
            "extends": "base.yaml",
            "name": "child",
            "methods": ["erm"],
            "method_params": {"focal": {"gamma": 1.0}},
            "train": {"lr": 0.2, "milestones": [3]},
            "model": {"hidden": [16]},
        },
    )
    cfg = load_config(child)
    assert cfg.name == "child" and cfg.methods == ["erm"]  # scalars and lists: replaced
    assert cfg.method_params == {"la-loss": {"tau": 1.5}, "focal": {"gamma": 1.0}}  # merged
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.schedule) == (5, 0.2, "step")
    assert cfg.train.milestones == [3] and cfg.model.hidden == [16] and cfg.model.arch == "mlp"


def test_a_child_that_sets_nothing_equals_its_base(tmp_path: Path) -> None:
    base = _yaml(tmp_path / "base.yaml", BASE)
    child = _yaml(tmp_path / "sub" / "child.yaml", {"extends": "../base.yaml"})
    assert load_config(child) == load_config(base)
    assert config_to_dict(load_config(child)) == config_to_dict(load_config(base))


def test_mmengine_base_spelling_and_a_list_of_bases(tmp_path: Path) -> None:
    _yaml(tmp_path / "base.yaml", BASE)
    _yaml(tmp_path / "fast.yaml", {"train": {"epochs": 6, "lr": 0.3}, "seeds": [7]})
    child = _yaml(
        tmp_path / "child.yaml", {"_base_": ["base.yaml", "fast.yaml"], "train": {"lr": 0.01}}
    )
    cfg = load_config(child)  # later bases win, the child over all of them
    assert cfg.name == "base" and cfg.seeds == [7]
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.milestones) == (6, 0.01, [2, 4])
    both = _yaml(tmp_path / "both.yaml", {"extends": "base.yaml", "_base_": "fast.yaml"})
    with pytest.raises(ConfigError, match="either 'extends' or '_base_'"):
        load_config(both)


def test_a_chain_of_three(tmp_path: Path) -> None:
    _yaml(tmp_path / "a.yaml", BASE)
    _yaml(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b", "train": {"epochs": 8}})
    c = _yaml(tmp_path / "c.yaml", {"extends": "b.yaml", "train": {"lr": 0.3}})
    cfg = load_config(c)
    assert (cfg.name, cfg.train.epochs, cfg.train.lr, cfg.model.hidden) == ("b", 8, 0.3, [64, 32])


def test_a_cycle_names_the_files(tmp_path: Path) -> None:
    _yaml(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    _yaml(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b"})
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    _yaml(tmp_path / "self.yaml", {"extends": "self.yaml"})
    with pytest.raises(ConfigError, match=r"cycle: .*self\.yaml -> .*self\.yaml"):
        load_config(tmp_path / "self.yaml")


def test_a_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    _yaml(tmp_path / "root.yaml", BASE)
    _yaml(tmp_path / "left.yaml", {"extends": "root.yaml", "seeds": [1]})
    _yaml(tmp_path / "right.yaml", {"extends": "root.yaml", "train": {"epochs": 9}})
    top = _yaml(tmp_path / "top.yaml", {"extends": ["left.yaml", "right.yaml"]})
    cfg = load_config(top)
    assert cfg.seeds == [1] and cfg.train.epochs == 9


def test_a_missing_base_is_named(tmp_path: Path) -> None:
    child = _yaml(tmp_path / "child.yaml", {"extends": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"child\.yaml: extends 'nowhere\.yaml': no such file"):
        load_config(child)
    bad = _yaml(tmp_path / "bad.yaml", {"extends": 3})
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'extends': expected a config file"):
        load_config(bad)


def test_a_bundled_config_name_is_a_base(tmp_path: Path) -> None:
    child = _yaml(tmp_path / "child.yaml", {"extends": "digits_lt", "train": {"epochs": 3}})
    cfg = load_config(child)
    assert cfg.train.epochs == 3 and cfg.data.dataset == "digits"
    assert cfg.train.lr == load_config(None).train.lr


def test_errors_name_the_file_that_set_the_key(tmp_path: Path) -> None:
    base = _yaml(tmp_path / "base.yaml", {**BASE, "train": {"lr": -1}})
    child = _yaml(tmp_path / "child.yaml", {"extends": "base.yaml", "name": "child"})
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert str(err.value) == f"config key 'train.lr' (set in {base}): must be > 0.0, got -1.0"
    _yaml(tmp_path / "ok.yaml", BASE)
    child = _yaml(tmp_path / "child2.yaml", {"extends": "ok.yaml", "methods": ["erm", "nope"]})
    with pytest.raises(ConfigError, match=rf"'methods\[1\]' \(set in {child}\): unknown method"):
        load_config(child)
    # a one-file config keeps its messages; a key set by an override names no file
    with pytest.raises(ConfigError, match=r"^config key 'train\.lr': must be > 0"):
        load_config(base)
    with pytest.raises(ConfigError, match=r"^config key 'train\.lr': must be > 0"):
        load_config(tmp_path / "child2.yaml", {"train.lr": 0.0, "methods": ["erm"]})


def test_delete_replaces_a_mapping(tmp_path: Path) -> None:
    _yaml(tmp_path / "base.yaml", BASE)
    child = _yaml(
        tmp_path / "child.yaml",
        {
            "extends": "base.yaml",
            "method_params": {"_delete_": True, "focal": {"gamma": 1.0}},
            "train": {"_delete_": True, "epochs": 3},
        },
    )
    cfg = load_config(child)
    assert cfg.method_params == {"focal": {"gamma": 1.0}}  # la-loss's tau dropped
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.milestones) == (3, 0.1, [])  # defaults
    bad = _yaml(tmp_path / "bad.yaml", {"extends": "base.yaml", "train": {"_delete_": "yes"}})
    with pytest.raises(ConfigError, match=r"'train\._delete_' \(set in .*bad\.yaml\): expected"):
        load_config(bad)


def test_overrides_apply_after_the_merge(tmp_path: Path) -> None:
    _yaml(tmp_path / "base.yaml", BASE)
    child = _yaml(tmp_path / "child.yaml", {"extends": "base.yaml", "train": {"epochs": 6}})
    cfg = load_config(child, {"train.epochs": 7, "model.hidden": [8]})
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.hidden) == (7, 0.05, [8])


def test_save_config_writes_one_self_contained_file(tmp_path: Path) -> None:
    _yaml(tmp_path / "base.yaml", BASE)
    child = _yaml(tmp_path / "child.yaml", {"extends": "base.yaml", "train": {"epochs": 6}})
    cfg = load_config(child)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    (tmp_path / "base.yaml").unlink()  # the run folder does not need the base
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert "extends" not in saved and saved["train"]["lr"] == 0.05
    assert load_config(tmp_path / "run" / "config.yaml") == cfg


def test_extends_is_read_from_files_only() -> None:
    with pytest.raises(ConfigError, match=r"'extends': only read from a config file"):
        config_from_dict({"extends": "base.yaml"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fashion_mnist_lt_if10.yaml", {"name": "fashion_mnist_lt_if10", "imbalance_factor": 10}),
        (
            "fashion_mnist_lt_60ep.yaml",
            {"seeds": [0, 1], "epochs": 60, "warmup_epochs": 5, "eval_every": 10},
        ),
        ("fashion_mnist_lt_random_order.yaml", {"class_order": "random"}),
        (
            "m2m_fashion_mnist_lt.yaml",
            {
                "methods": [
                    "erm",
                    "drs",
                    "smote",
                    "cb-resample",
                    "ldam-drw",
                    "la-loss",
                    "m2m",
                    "m2m-ldam-drw",
                ]
            },
        ),
        (
            "sla_fashion_mnist.yaml",
            {"imbalance_factor": 1, "max_per_class": 500, "balanced_reference": False},
        ),
    ],
)
def test_shrunk_repo_configs_keep_their_expansion(name: str, expected: dict[str, Any]) -> None:
    """The Fashion-MNIST-LT variants extend configs/fashion_mnist_lt.yaml: the keys they change,
    the base's recipe for the rest (as when every file spelled out every key)."""
    path = REPO_ROOT / "configs" / name
    assert "extends: fashion_mnist_lt.yaml" in path.read_text()
    got = config_to_dict(load_config(path))
    flat = {**got, **got["data"], **got["train"]}
    assert {k: flat[k] for k in expected} == expected
    base = config_to_dict(load_config(REPO_ROOT / "configs" / "fashion_mnist_lt.yaml"))
    assert (
        got["model"]
        == base["model"]
        == {
            "arch": "cnn",
            "hidden": [128],
            "channels": [16, 32, 64],
            "convs_per_stage": 1,
            "dropout": 0.0,
            "factory": None,
            "kwargs": {},
        }
    )
    same = {"lr": 0.1, "batch_size": 128, "augment": True, "crop_padding": 2, "num_threads": 1}
    assert {k: got["train"][k] for k in same} == same
    assert (got["data"]["dataset"], got["data"]["data_dir"]) == (
        "fashion-mnist",
        "../shared/data/fashion-mnist",
    )


def test_the_balanced_teacher_config_extends_the_distillation_one() -> None:
    base = config_to_dict(load_config(REPO_ROOT / "configs" / "distill_fashion_mnist_lt.yaml"))
    got = config_to_dict(
        load_config(REPO_ROOT / "configs" / "distill_fashion_mnist_lt_balanced_teacher.yaml")
    )
    assert got["distill"]["teacher"]["method"] == "la-loss"
    assert got["distill"]["teacher"]["model"] == base["distill"]["teacher"]["model"]
    assert got["distill"]["teacher"]["model"]["channels"] == [32, 64, 128]
    rest = {k: v for k, v in got.items() if k not in ("name", "methods", "distill")}
    assert rest == {k: v for k, v in base.items() if k not in ("name", "methods", "distill")}


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path: Path) -> None:
    """Every config in configs/ passes validation (the tune and full-data configs included); the
    templates for a user's own data are given a path, as their comments say."""
    overrides = {"data.data_dir": "/your/folder", "data.path": "/your/file.csv"}
    raw = yaml.safe_load(path.read_text())
    dataset = (raw.get("data") or {}).get("dataset")
    needs = {"image-folder": "data.data_dir", "image-manifest": "data.path", "table": "data.path"}
    cfg = load_config(
        path, {needs[dataset]: overrides[needs[dataset]]} if dataset in needs else None
    )
    assert cfg.name and cfg.methods


def test_open_set_full_data_config_is_the_protocol_with_every_training_image() -> None:
    full = config_to_dict(load_config(REPO_ROOT / "configs" / "openset_fashion_mnist_full.yaml"))
    small = config_to_dict(load_config(REPO_ROOT / "configs" / "openset_fashion_mnist.yaml"))
    assert full["data"]["imbalance_factor"] is None and full["data"]["max_per_class"] is None
    for section in ("data", "name"):
        full.pop(section), small.pop(section)
    # a validation score every 2 epochs, for tune's pruning: not part of what is trained
    assert full["train"].pop("eval_every") == 2
    small["train"].pop("eval_every")
    assert full == small  # splits, methods, temperatures, network, epochs: unchanged
