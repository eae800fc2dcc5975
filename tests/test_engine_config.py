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
