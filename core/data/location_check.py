"""Is the data where the config says? A quick look (folder and label file), no image is read.

Resolving a config never needs the data (`presets show nih`, `--print-config`, the picker's
values and tips); training does. The picker runs this check as the user types a data dir, and
`medcls train` runs it before starting, so a wrong folder is one line naming `data_dir` instead
of an empty live screen. The label-file lookups are the data sources' own functions.
"""
from __future__ import annotations

from pathlib import Path

from core.config.train_config import ConfigError, TrainConfig

FIELD_PREFIXES = ("data_dir:", "label_file:", "csv:")


def check_data_location(config: TrainConfig) -> None:
    """Raise ConfigError naming data_dir (or label_file/csv) when training could not find its data."""
    from core.data.base import DataError

    if config.dataset == "synthetic":
        return
    try:
        _check(config)
    except DataError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(FIELD_PREFIXES) else f"data_dir: {message}") from None


def _check(config: TrainConfig) -> None:
    from core.data import records
    from core.data.base import DataError

    if config.dataset == "csv":
        if not (config.csv or config.label_file):
            raise DataError("csv: --dataset csv needs --csv FILE (columns: path, label[, domain, patient, split])")
        path = records.resolve_in(config.csv or config.label_file, config.data_dir)
        if not path.is_file():
            raise DataError(f"csv: file not found: {path}")
        if config.data_dir and not Path(config.data_dir).expanduser().is_dir():
            raise DataError(f"data_dir: folder not found: {Path(config.data_dir).expanduser()}")
        return
    if not config.data_dir:
        raise DataError(f"data_dir: --dataset {config.dataset} needs --data_dir pointing at the downloaded data")
    root = records.require_data_dir(config, config.dataset, "")
    if config.dataset == "nih":
        from core.data.nih import find_label_file

        find_label_file(root, config.label_file)
    elif config.dataset == "covidx":
        from core.data.covidx import find_label_files

        find_label_files(root, config.label_file)
    elif config.dataset == "vinbigdata":
        from core.data.vinbigdata import find_label_file as find_vin

        find_vin(root, config.label_file)
    elif config.dataset == "folder":
        classes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(classes) < 2:
            raise DataError(f"{root}: expected at least 2 class sub-folders, found "
                            f"{sorted(p.name for p in classes) or 'none'}")
