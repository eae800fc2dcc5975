"""Run configuration: typed sections, YAML loading and validation.

A configuration is a YAML mapping with the sections below (every key is optional; the defaults are the
bundled digits benchmark). It is loaded with ``yaml.safe_load`` and validated before any work starts:
an unknown key, a value of the wrong type or a value out of range raises :class:`ConfigError` (a
``ValueError``) whose message names the dotted key, e.g. ``train.lr``. A setting that would be
silently ignored is an error too (``train.milestones`` without ``train.schedule: step``,
``data.max_per_class`` without ``data.imbalance_factor``, except for ``fashion-pairs``); what depends on the data (``train.augment``
and ``model.arch: cnn`` / ``resnet32`` need images) is checked by :func:`check_config_against_data`
once the data is loaded.

.. code-block:: yaml

    name: digits_lt            # run-folder prefix and report title
    task: single-label
    methods: all               # or a list of registry names (see `longtail methods`)
    seeds: [0, 1, 2]
    method_params:             # per-method hyper-parameter overrides
      la-loss: {tau: 1.5}
    data:
      dataset: digits          # digits | fashion-mnist | fashion-pairs | mnist | kmnist | idx
                               # | cifar10 | cifar100 | image-folder | table | mat
      data_dir: null
      imbalance_factor: 10     # n_max / n_min of the exponential or step profile; null = as is
      profile: exp
      subset_seed: 0           # seed of the long-tailed subset (fixed across training seeds)
      max_per_class: null      # fashion-pairs: also the pool per pair class (default 600)
      class_order: fixed       # fixed (class 0 the head) | random (permuted per training seed)
      test_fraction: 0.5       # digits only: stratified, balanced test split
      pair_test_per_class: 100 # fashion-pairs only: balanced test images per pair class
      balanced_reference: false
    model:
      arch: auto               # auto | linear | mlp | cnn | resnet32
      hidden: [128]
      channels: [16, 32, 64]
      convs_per_stage: 1
      dropout: 0.0
    train:
      epochs: 30
      batch_size: 64
      lr: 0.1
      ...
    metrics:
      shot_mode: terciles      # terciles | thresholds
      n_bins: 15

:func:`load_config` also accepts overrides (the command line's ``--epochs`` and friends) as dotted keys.

A file may extend others (``extends: base.yaml``, or mmengine's ``_base_``): mappings merge key by
key, anything else is replaced, ``_delete_: true`` replaces a mapping (:mod:`.files`).

The package, one concern a module: :mod:`.schema` (the dataclasses and their metadata),
:mod:`.coerce` (a mapping checked against the annotations), :mod:`.checks` (settings that must agree,
and the checks once the data are loaded), :mod:`.files` (YAML files, bundled configs, ``extends``),
:mod:`.load` (:func:`load_config`, overrides, :func:`save_config`).
"""

from __future__ import annotations

from longtail.engine.config.checks import check_config_against_data, check_teacher_model
from longtail.engine.config.files import bundled_config_names, bundled_config_path
from longtail.engine.config.load import config_from_dict, config_to_dict, load_config, save_config
from longtail.engine.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    MetricsConfig,
    ModelConfig,
    TrainConfig,
    option,
    option_meta,
    section_schemas,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "MetricsConfig",
    "ModelConfig",
    "TrainConfig",
    "bundled_config_names",
    "bundled_config_path",
    "check_config_against_data",
    "check_teacher_model",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "option",
    "option_meta",
    "save_config",
    "section_schemas",
]
