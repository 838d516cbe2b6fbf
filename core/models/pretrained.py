"""Pretrained backbone weights: timm's own hub weights (through the Hugging Face cache) or a local file.

Hub weights come from `timm.create_model(..., pretrained=True)`, so the model's pretrained_cfg picks
the file and huggingface_hub's cache (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, TIMM_USE_OLD_CACHE) is
honoured: a machine or cluster that has the weights once never downloads them again. The file is
fetched first with a progress callback (the engine turns it into DataProgress events); then timm
loads it strictly, so every backbone tensor is known to come from the checkpoint.

Anything that stops the weights from loading is a `PretrainedError` with one line saying which
weights, where they were looked for and the ways out. There is never a silent fall-back to random
weights: random init happens only when `pretrained` is off.
"""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

Progress = Callable[[int, int, str], None]
"""progress(done, total, description): MB downloaded so far of the file's size."""

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
                "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""File names of the timm / Hugging Face checkpoint layouts, in timm's order of preference."""
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")
WRAPPER_KEYS = ("state_dict", "model", "model_state", "module", "state_dict_ema", "model_ema")
"""Training checkpoints nest the weights under one of these (medcls's own last.pt/best.pt: `model`)."""
PREFIXES = ("module.", "backbone.", "_orig_mod.")
"""DataParallel, medcls's Classifier and torch.compile wrap the backbone's key names in these."""
HEAD_NAMES = ("classifier", "fc", "head", "head_dist")
"""Top-level classifier modules a checkpoint may carry beyond the backbone (an ImageNet head, medcls's own
head): dropped, since medcls adds its own. Any other tensor the backbone has no place for is refused."""
EXIT_CODE = 2
"""The CLI's exit code for a PretrainedError: the run cannot start with this configuration."""


class PretrainedError(RuntimeError):
    """Weights were asked for and cannot be loaded; the message is one line with the way out."""


@dataclass(frozen=True)
class HubWeights:
    """Where timm gets a model's default pretrained weights."""

    model: str
    tag: str
    hf_hub_id: Optional[str]
    filename: Optional[str]
    url: Optional[str]

    def describe(self) -> str:
        if self.hf_hub_id:
            return f"hf hub {self.hf_hub_id}" + (f" ({self.filename})" if self.filename else "")
        return f"url {self.url}" if self.url else "none"


def hub_weights(timm_name: str) -> Optional[HubWeights]:
    """The default pretrained weights timm would load for this model, or None if it has none."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return None
    return HubWeights(model=timm_name, tag=cfg.tag or "", hf_hub_id=cfg.hf_hub_id,
                      filename=cfg.hf_hub_filename, url=cfg.url)


def hub_cache_dir() -> str:
    """The Hugging Face hub cache huggingface_hub uses (HF_HUB_CACHE, else $HF_HOME/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unavailable_message(weights: HubWeights, cause: Optional[BaseException] = None) -> str:
    """One line: which weights, where they were looked for, why, and the three ways out."""
    cache = hub_cache_dir()
    if weights.hf_hub_id:
        repo_dir = "models--" + weights.hf_hub_id.split("@")[0].replace("/", "--")
        where = f"not in the Hugging Face cache {cache} ({repo_dir})"
        copy = f"copy {repo_dir} from a machine that has it into {cache} (or point HF_HOME at a shared cache)"
    else:
        where = f"not in the torch hub cache {torch.hub.get_dir()}"
        copy = f"copy the file into {torch.hub.get_dir()}/checkpoints"
    why = "offline (HF_HUB_OFFLINE=1)" if _offline() else "could not be downloaded"
    detail = f": {_first_line(cause)}" if cause is not None and not _offline() else ""
    return (f"pretrained: {weights.model} weights ({weights.describe()}) are {where} and {why}{detail}. "
            f"Ways out: connect to the internet once (later runs use the cache); {copy}; or pass "
            f"--pretrained_path FILE with a local checkpoint. --no_pretrained trains from random weights on purpose")


def _reporting_tqdm(progress: Progress, description: str):
    """A huggingface_hub tqdm class that also reports each update (the CLI keeps its own bar)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ReportingTqdm(hf_tqdm):
        def update(self, n: float = 1) -> Optional[bool]:
            # Own byte count: a disabled bar (HF_HUB_DISABLE_PROGRESS_BARS, no terminal) keeps self.n at 0.
            self.reported = getattr(self, "reported", getattr(self, "n", 0) or 0) + (n or 0)
            if self.total:
                progress(int(self.reported) >> 20, max(1, int(self.total) >> 20), description)
            return super().update(n)

    return ReportingTqdm


def fetch_hub_weights(weights: HubWeights, progress: Optional[Progress] = None) -> Optional[str]:
    """Make sure the weights file is in the HF cache (download once, with progress); its local path.

    Mirrors timm's choice of file: the pretrained_cfg's hf_hub_filename, else model.safetensors with
    pytorch_model.bin as the fall-back. Models whose weights live only at a URL are left to timm.
    """
    if not weights.hf_hub_id:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
    )

    repo, _, revision = weights.hf_hub_id.partition("@")
    names = [weights.filename] if weights.filename else ["model.safetensors", "pytorch_model.bin"]
    description = f"downloading {weights.model} weights {weights.hf_hub_id} (MB)"
    tqdm_class = _reporting_tqdm(progress, description) if progress else None
    cause: Optional[BaseException] = None
    for name in names:
        try:
            return hf_hub_download(repo, name, revision=revision or None, tqdm_class=tqdm_class,
                                   library_name="timm")
        except RemoteEntryNotFoundError as err:  # online: this repo has the other file
            cause = err
        except (LocalEntryNotFoundError, EntryNotFoundError) as err:  # offline or unreachable, not cached
            cause = err
        except (HfHubHTTPError, OSError, ConnectionError, ValueError) as err:
            raise PretrainedError(unavailable_message(weights, err)) from None
    raise PretrainedError(unavailable_message(weights, cause))


def ensure_hub_weights(timm_name: str, progress: Optional[Progress] = None) -> HubWeights:
    """The model's hub weights are in the cache (downloaded now if needed), or a PretrainedError.

    The engine calls this before the data work, so a missing download fails in seconds, not after
    an hour of decoding images.
    """
    weights = hub_weights(timm_name)
    if weights is None:
        raise PretrainedError(
            f"pretrained: timm has no pretrained weights for {timm_name}. Pass --pretrained_path FILE with a "
            f"checkpoint of this architecture, or --no_pretrained to train from random weights on purpose")
    path = fetch_hub_weights(weights, progress)
    if path is not None:
        check_hub_file(weights, Path(path))
    return weights


_CHECKED: set = set()
"""(path, size, mtime) of hub files already read and found sound in this process (the engine checks before
the data work, then builds the model: the file is read once)."""


def check_hub_file(weights: HubWeights, path: Path) -> None:
    """The cached hub file is a regular, readable weights file with finite values, or a PretrainedError.

    Checked before the data work: a FIFO would block timm's open for ever, and a damaged or replaced file
    (garbage, a link to /etc/passwd or /dev/zero, NaN weights) must not fail only after the data scan.
    """
    where = f"pretrained: {weights.model} weights ({weights.describe()}) in the Hugging Face cache: {path}"
    way_out = "delete that cache entry to download it again, or pass --pretrained_path FILE"
    try:
        st = os.stat(path)  # follows the snapshot's symlink to its blob
    except OSError as err:
        raise PretrainedError(f"{where} cannot be read ({err.strerror or err}); {way_out}") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, device or socket)"
        raise PretrainedError(f"{where} is {kind}; {way_out}")
    try:
        state = read_state_dict(path, origin=where)
    except PretrainedError as err:
        raise PretrainedError(f"{err}; {way_out}") from None
    bad = first_nonfinite(state)
    if bad is not None:
        raise PretrainedError(f"{where} holds non-finite values (NaN or inf) in {bad}; {way_out}")
    _CHECKED.add(key)


def create_pretrained_backbone(timm_name: str, in_chans: int = 3, progress: Optional[Progress] = None,
                               **kwargs: Any) -> nn.Module:
    """timm backbone with its default pretrained weights, loaded strictly, classifier removed."""
    import timm

    weights = ensure_hub_weights(timm_name, progress)
    try:
        # Default num_classes = the checkpoint's, so timm loads strictly: a missing or unexpected key fails
        # here instead of being skipped. The classifier goes afterwards; medcls adds its own head.
        backbone = timm.create_model(timm_name, pretrained=True, in_chans=in_chans, **kwargs)
    except (OSError, ConnectionError) as err:
        raise PretrainedError(unavailable_message(weights, err)) from None
    except (RuntimeError, KeyError, ValueError) as err:
        raise PretrainedError(f"pretrained: {weights.model} weights ({weights.describe()}) in {hub_cache_dir()} "
                              f"do not fit the model ({_first_line(err)}); delete that cache entry to download "
                              f"it again, or pass --pretrained_path FILE") from None
    backbone.reset_classifier(0)
    return backbone


# ---------------------------------------------------------------------------- local files
def resolve_weights_file(path: str | Path) -> Path:
    """A weights file, or the checkpoint inside a timm/HF folder (save_for_hf, a snapshot, a hub repo)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise PretrainedError(f"pretrained_path: file not found: {p}")
    folder = p
    if (p / "snapshots").is_dir():  # a hub cache repo folder models--org--name
        ref = p / "refs" / "main"
        snapshots = sorted(s for s in (p / "snapshots").iterdir() if s.is_dir())
        rev = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
        if rev and (p / "snapshots" / rev).is_dir():
            folder = p / "snapshots" / rev
        elif len(snapshots) == 1:
            folder = snapshots[0]
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise PretrainedError(
        f"pretrained_path: no weights file in folder {folder} (looked for {', '.join(WEIGHT_FILES)}"
        f"{' and found several: ' + ', '.join(f.name for f in found) if found else ''}); pass the file itself")


def read_state_dict(path: Path, origin: Optional[str] = None) -> dict[str, torch.Tensor]:
    """Tensors by name from a .safetensors or torch file (weights_only: a pickle never runs code).
    `origin` starts each error line (default `pretrained_path: PATH`)."""
    where = origin or f"pretrained_path: {path}"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read for ever
            raise PretrainedError(f"{where} is not a regular file (a pipe, device or socket)")
    except OSError as err:
        raise PretrainedError(f"{where} cannot be read ({err.strerror or err})") from None
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        kind = "safetensors" if path.suffix == ".safetensors" else "torch (.pth/.bin/.pt)"
        raise PretrainedError(f"{where} is not a {kind} weights file that can be read safely "
                              f"({type(err).__name__}: {_first_line(err, 120)})") from None
    for _ in range(3):
        if isinstance(state, Mapping):
            inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = inner
    if not isinstance(state, Mapping):
        raise PretrainedError(f"{where} holds a {type(state).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PretrainedError(f"{where} holds no tensors (keys: {', '.join(map(str, list(state)[:5]))})")
    return strip_wrapper_prefixes(tensors)


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> dict:
    """Key names without the wrappers' prefixes, stacked in any order (`_orig_mod.module.x`, `module._orig_mod.x`)."""
    def strip(key: str) -> str:
        while True:
            bare = next((key[len(p):] for p in prefixes if key.startswith(p)), None)
            if bare is None:
                return key
            key = bare

    return {strip(str(k)): v for k, v in state.items()}


def _model_filter(backbone: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own checkpoint filter for the architecture (original layouts, pos-embed/window resize)."""
    filter_fn = getattr(sys.modules.get(type(backbone).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        filtered = filter_fn(dict(state), backbone)
    except Exception:  # noqa: BLE001 - a filter that cannot handle this file leaves it as it was
        return state
    return filtered if isinstance(filtered, dict) and filtered else state


@dataclass(frozen=True)
class LoadReport:
    """How a checkpoint fitted the backbone (num_batches_tracked counters are not counted)."""

    matched: int
    total: int
    missing: list
    wrong_shape: list


def match_state_dict(backbone: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict, LoadReport]:
    """The checkpoint tensors that fit the backbone by name and shape, and the counts."""
    own = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    fitting, missing, wrong = {}, [], []
    for key, value in own.items():
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(value.shape):
            wrong.append(f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}")
        else:
            fitting[key] = state[key]
    return fitting, LoadReport(len(fitting), len(own), missing, wrong)


def first_nonfinite(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Name of the first floating tensor holding a NaN or inf, or None: such weights never train."""
    for key, value in state.items():
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            return key
    return None


def unexpected_keys(backbone: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Checkpoint tensors the backbone has no place for, beyond a classifier head: another (deeper)
    architecture whose every tensor of ours happens to fit, e.g. resnet34 weights for a resnet18."""
    known = set(backbone.state_dict()) | {name for name, _ in backbone.named_buffers()}
    cls = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier")
    heads = set(HEAD_NAMES) | ({cls} if isinstance(cls, str) else set(cls or ()))
    return [k for k in state if k not in known and not any(k == h or k.startswith(h + ".") for h in heads)]


def load_local_weights(backbone: nn.Module, path: str | Path, timm_name: str = "") -> LoadReport:
    """Load a local checkpoint into the backbone; every backbone tensor must come from the file, and
    every file tensor (but a classifier head) must have its place in the backbone."""
    file = resolve_weights_file(path)
    state = _model_filter(backbone, read_state_dict(file))
    fitting, report = match_state_dict(backbone, state)
    name = timm_name or type(backbone).__name__
    if report.matched < report.total:
        details = []
        if report.missing:
            details.append(f"{len(report.missing)} missing, e.g. {report.missing[0]}")
        if report.wrong_shape:
            details.append(f"{len(report.wrong_shape)} with another shape, e.g. {report.wrong_shape[0]}")
        raise PretrainedError(
            f"pretrained_path: {file} does not fit {name}: {report.matched} of {report.total} backbone tensors "
            f"matched ({'; '.join(details)}). Pass a checkpoint of this architecture, or --no_pretrained")
    extra = unexpected_keys(backbone, state)
    if extra:
        raise PretrainedError(
            f"pretrained_path: {file} does not fit {name}: it holds {len(extra)} tensor(s) {name} has no place "
            f"for, e.g. {', '.join(extra[:3])} (another architecture?). Pass a checkpoint of this architecture, "
            "or --no_pretrained")
    own = backbone.state_dict()
    bad = first_nonfinite({k: v for k, v in state.items() if k in own})  # what loads; a dropped head is not used
    if bad is not None:
        raise PretrainedError(f"pretrained_path: {file} holds non-finite values (NaN or inf) in {bad}; "
                              "such weights cannot train. Pass a sound checkpoint, or --no_pretrained")
    buffers_only = {k: v for k, v in state.items() if k.endswith("num_batches_tracked") and k in own}
    backbone.load_state_dict({**fitting, **buffers_only}, strict=False)
    return report


def weights_note(cfg: Any, timm_name: str) -> str:
    """Where the run's starting weights come from, for the run's notes (CLI, app, metrics.jsonl)."""
    if cfg.pretrained_path:
        return f"weights: {cfg.pretrained_path} (--pretrained_path)"
    if not cfg.pretrained:
        return "weights: random init (pretrained: false); the LR tips assume pretrained weights"
    weights = hub_weights(timm_name)
    return f"weights: timm pretrained {weights.describe() if weights else timm_name} from {hub_cache_dir()}"


def seed_hub_cache(weights: HubWeights, state: Mapping[str, torch.Tensor], cache_dir: Optional[str | Path] = None,
                   revision: str = "0" * 40) -> Path:
    """Store a state dict in the HF cache layout timm reads (models--org--name/snapshots/REV/model.safetensors
    plus refs/main), so an offline machine loads it as the hub weights. Used by the tests and bench."""
    from safetensors.torch import save_file

    if not weights.hf_hub_id:
        raise PretrainedError(f"pretrained: {weights.model} weights are not on the Hugging Face hub")
    repo = Path(cache_dir or hub_cache_dir()) / ("models--" + weights.hf_hub_id.split("@")[0].replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    path = snapshot / (weights.filename or "model.safetensors")
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(dict(state), path)
    return path
