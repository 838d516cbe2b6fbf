"""XDomainMix (Liu et al., IJCAI 2024, arXiv 2405.08586): cross-domain feature augmentation.

The backbone's last feature map Z is split per sample into four channel groups by how much each
channel drives the class and the domain prediction (importance = spatial mean of gradient x
activation): class-specific = above the per-sample median of class importance, domain-specific =
above the per-sample quantile tau of domain importance (tau 0.9 -> 0.5 by 0.1 every K steps,
then back to 0.9). Augmented features keep the anchor's domain-generic parts and swap domain-
specific ones across domains, each component taken with its owner's own masks:
    Z~ = l1 csds_i + (1-l1) csds_j + l2 cgds_i + (1-l2) cgds_k + csdg_i + cgdg_i,
j = same class / other domain, k = other class / other domain (partners.py), l1, l2 ~ U(0,1) per
sample, and with probability p (once per batch) the csds terms are dropped. After an ERM warm-up
the loss is 0.5 * L(head(Z)) + 0.5 * L(head(Z~)); the target of Z~ is the anchor's. The domain head
is Linear(C, D) on the spatial mean of Z.detach(), trained every step with its own optimizer, so
it never sends gradients into the backbone. Everything is batched: no per-sample Python loops.

The domain head follows the authors' code by default (`xdm_domain_update: after_step`): it is
trained once per optimizer step, after the model's update, on the features the updated backbone
gives for the same images (one extra forward pass without gradients), by Adam at the main LR and
weight decay. `xdm_domain_update: same_pass` (ours) trains it on this pass's features before the
update, without the extra pass; `xdm_domain_lr` set gives it its own Adam LR and no weight decay.

Multi-label rule (ours; the paper is single-label):
  * "same class" = the same finding set (all-negative images match each other), "other class" =
    a different set: a partner with an extra finding would carry that finding's features into the
    class-specific mix while the anchor's labels are kept;
  * the ground-truth logit is sum_c (2 y_c - 1) z_c, the logit of each finding's true state, so
    negative findings (most NIH labels) shape class importance too; with positives only an
    all-negative image would have zero importance everywhere and no class-specific channels;
  * Z~ keeps the anchor's multi-hot target.
Soft targets (after PipMix in `xdomainmix+pipmix`) use sum_c t_c z_c (single-label) or the
signed sum with t; partners are searched on the un-mixed labels.

`mixup_prob` gates the augmented term per batch and `mixup_alpha` > 0 replaces U(0,1) by
Beta(alpha, alpha) for l1, l2 (0 keeps the paper's uniform). Under autocast the class gradient
comes in the autocast dtype; importances, quantiles and the domain head run in float32.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from core.augment import BatchStrategy, register_strategy
from core.augment.feature_maps import channel_mean, feature_layout, per_channel, per_sample
from core.augment.mixup import Mixup, batch_is_mixed, draw_beta, mix_alpha
from core.augment.partners import other_class_partners, same_class_partners
from core.augment.pipmix import PipMix, single_domain_note

TAU_START, TAU_STOP, TAU_DELTA = 0.9, 0.5, 0.1


def tau_at(steps_since_warmup: int, every: int) -> float:
    """Domain-specific quantile: 0.9, 0.8, ..., 0.5 for `every` steps each, then again from 0.9."""
    levels = int(round((TAU_START - TAU_STOP) / TAU_DELTA)) + 1
    return round(TAU_START - TAU_DELTA * ((max(0, steps_since_warmup) // every) % levels), 6)


def ground_truth_score(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Summed ground-truth logits (see the multi-label rule in the module docstring)."""
    if targets.ndim == 1:
        return logits.gather(1, targets.long()[:, None]).sum()
    t = targets.to(logits.dtype)
    return ((2 * t - 1) * logits).sum() if multi_label else (t * logits).sum()


def class_importance(feats: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, multi_label: bool,
                     layout: str) -> torch.Tensor:
    """(N, C): spatial mean of d(GT logits)/dZ * Z. Keeps the graph for the main backward."""
    (grad,) = torch.autograd.grad(ground_truth_score(logits, targets, multi_label), feats, retain_graph=True)
    return channel_mean(grad.float() * feats.detach().float(), layout)


def split_channels(class_imp: torch.Tensor, domain_imp: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(class-specific, domain-specific) boolean (N, C) masks from per-sample thresholds."""
    cs = class_imp > torch.quantile(class_imp, 0.5, dim=1, keepdim=True)
    ds = domain_imp > torch.quantile(domain_imp, tau, dim=1, keepdim=True)
    return cs, ds


def mix_features(feats: torch.Tensor, cs: torch.Tensor, ds: torch.Tensor, j: torch.Tensor, k: torch.Tensor,
                 lam1: torch.Tensor, lam2: torch.Tensor, keep_csds: bool, layout: str) -> torch.Tensor:
    """Z~ of the module docstring; masks (N, C), partners and lambdas (N,)."""
    dt = feats.dtype
    csds = feats * per_channel(cs & ds, layout).to(dt)
    cgds = feats * per_channel(~cs & ds, layout).to(dt)
    l1 = per_sample(lam1.to(feats.device, dt), feats.ndim)
    l2 = per_sample(lam2.to(feats.device, dt), feats.ndim)
    out = feats * per_channel(~ds, layout).to(dt) + l2 * cgds + (1 - l2) * cgds[k]
    if keep_csds:
        out = out + l1 * csds + (1 - l1) * csds[j]
    return out


class DomainHead(nn.Module):
    """Linear(C, D) on the spatial mean of the features. C is only known at the first batch, so the
    layer is created then (or by load_state_dict from the checkpoint's shapes on resume)."""

    def __init__(self, num_domains: int):
        super().__init__()
        self.num_domains = num_domains
        self.register_module("linear", None)
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # follows .to(device)

    def forward(self, vec: torch.Tensor) -> torch.Tensor:
        if self.linear is None:
            self.linear = nn.Linear(vec.shape[1], self.num_domains).to(vec.device)
        return self.linear(vec)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight = state_dict.get(prefix + "linear.weight")
        if self.linear is None and weight is not None:
            self.linear = nn.Linear(weight.shape[1], weight.shape[0]).to(self._anchor.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _classifier(model: nn.Module) -> nn.Module:
    net = getattr(model, "module", model)  # DDP
    if not all(hasattr(net, a) for a in ("features", "pool", "head")):
        raise TypeError("XDomainMix needs a core.models.build.Classifier (features / pool / head); "
                        f"got {type(net).__name__}")
    return net


class XDomainMix(BatchStrategy):
    name = "xdomainmix"

    def __init__(self, num_classes: int, num_domains: int, multi_label: bool, warmup_steps: int = 3000,
                 discard_prob: float = 0.2, tau_every: int = 100, domain_lr: Optional[float] = None,
                 lam_alpha: Optional[float] = None, prob: float = 1.0, pixel_mix: Optional[PipMix] = None,
                 main_lr: float = 1e-3, main_weight_decay: float = 0.0, domain_update: str = "after_step"):
        if tau_every < 1:
            raise ValueError(f"xdm_tau_step_every: must be >= 1 (got {tau_every})")
        self.num_classes, self.num_domains, self.multi_label = num_classes, num_domains, multi_label
        self.warmup_steps, self.discard_prob, self.tau_every = warmup_steps, discard_prob, tau_every
        self.domain_lr, self.lam_alpha, self.prob = domain_lr, lam_alpha, prob
        if domain_update not in ("after_step", "same_pass"):
            raise ValueError(f"xdm_domain_update: must be after_step or same_pass (got {domain_update!r})")
        self.domain_update = domain_update
        # the authors: Adam(domain head, lr=main LR, weight_decay=main decay); ours: own LR, no decay
        self.domain_adam = ((domain_lr, 0.0) if domain_lr is not None else (main_lr, main_weight_decay))
        self._pending: list[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], str]] = []
        """after_step: this step's (images, domains, frozen features or None, layout), one per micro-batch."""
        self.pixel_mix = pixel_mix
        self.domain_head = DomainHead(num_domains)
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._pending_optimizer_state: Optional[dict] = None
        self.record = False
        """Tests set this to keep the last batch's masks, partners and lambdas in `last_info`."""
        self.last_info: dict = {}
        self.notes = [f"XDomainMix: ERM warm-up for {warmup_steps} steps, then 0.5 x loss(original features) "
                      f"+ 0.5 x loss(cross-domain mixed features); domain head trained on detached features "
                      + ("after each model update (as the authors)" if domain_update == "after_step"
                         else "of the same pass, before the update")]

    # ---- engine interface
    def modules(self) -> list[nn.Module]:
        return [self.domain_head]

    def state_dict(self) -> dict:
        """The domain optimizer's state; after a load and before the first step, the loaded state (a
        checkpoint written then must not drop it)."""
        if self._optimizer is None:
            return {"domain_optimizer": self._pending_optimizer_state}
        return {"domain_optimizer": self._optimizer.state_dict()}

    def begin_step(self) -> None:
        self._pending = []

    def after_optimizer_step(self, model) -> None:
        """after_step mode: one domain-head step on the updated backbone's features of this step's images."""
        pending, self._pending = self._pending, []
        if self.domain_update != "after_step" or not pending:
            return
        net = _classifier(model)
        n_total = sum(int(d.shape[0]) for _, d, _, _ in pending)
        opt = self._domain_optimizer()
        opt.zero_grad(set_to_none=True)
        for images, domains, frozen, layout in pending:
            if frozen is None:
                with torch.no_grad():
                    frozen = net.features(images)
            with torch.autocast(device_type=frozen.device.type, enabled=False):
                dlogits = self.domain_head(channel_mean(frozen.detach().float(), layout))
                loss = F.cross_entropy(dlogits, domains) * (domains.shape[0] / n_total)
                loss.backward(inputs=list(self.domain_head.parameters()))
        opt.step()

    def load_state_dict(self, state: dict) -> None:
        self._pending_optimizer_state = state.get("domain_optimizer")

    def training_loss(self, model, criterion, images, targets, domains, step):
        net = _classifier(model)
        loss_targets = targets
        if self.pixel_mix is not None:
            images, loss_targets = self.pixel_mix.mix(images, targets, domains)
        feats = self._features(net, images)
        layout = feature_layout(feats, getattr(net, "backbone", None))
        logits = net.head(net.pool(feats))
        loss = criterion(logits, loss_targets)
        augment = step >= self.warmup_steps and batch_is_mixed(self.prob)
        domain_imp = self._domain_step(feats, domains, layout, want_importance=augment,
                                       train=self.domain_update == "same_pass")
        if self.domain_update == "after_step":
            # a frozen backbone gives the same features after the update: keep them, skip the extra pass
            frozen = feats.detach() if getattr(net, "linear_probe", False) else None
            self._pending.append((images.detach(), domains, frozen, layout))
        if not augment:
            self.last_info = {}
            return loss, logits
        class_imp = class_importance(feats, logits, loss_targets, self.multi_label, layout)
        tau = tau_at(step - self.warmup_steps, self.tau_every)
        cs, ds = split_channels(class_imp, domain_imp, tau)
        j = same_class_partners(targets, domains)
        k = other_class_partners(targets, domains)
        lam = (torch.rand(2, feats.shape[0]) if self.lam_alpha is None
               else draw_beta(self.lam_alpha, 2 * feats.shape[0]).view(2, -1))
        keep_csds = bool(torch.rand(()) >= self.discard_prob)
        mixed = mix_features(feats, cs, ds, j, k, lam[0], lam[1], keep_csds, layout)
        aug_logits = net.head(net.pool(mixed))
        if self.record:
            self.last_info = {"feats": feats.detach(), "tau": tau, "cs": cs, "ds": ds, "j": j, "k": k, "lam": lam, "keep_csds": keep_csds,
                              "mixed": mixed.detach(), "class_imp": class_imp, "domain_imp": domain_imp}
        return 0.5 * loss + 0.5 * criterion(aug_logits, loss_targets), logits

    # ---- internals
    @staticmethod
    def _features(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
        if getattr(net, "linear_probe", False):
            with torch.no_grad():
                feats = net.features(images)
        else:
            feats = net.features(images)
        if not feats.requires_grad:  # frozen backbone: the class gradient still needs a graph from Z
            feats = feats.detach().requires_grad_(True)
        return feats

    def _domain_step(self, feats: torch.Tensor, domains: torch.Tensor, layout: str,
                     want_importance: bool, train: bool = True) -> Optional[torch.Tensor]:
        """Domain importance if asked; with `train` (same_pass) also one domain-head step on these
        detached features."""
        with torch.autocast(device_type=feats.device.type, enabled=False):
            z = feats.detach().float().requires_grad_(want_importance)
            dlogits = self.domain_head(channel_mean(z, layout))
            importance = None
            if want_importance:
                (grad,) = torch.autograd.grad(dlogits.gather(1, domains[:, None]).sum(), z, retain_graph=True)
                importance = channel_mean(grad * z.detach(), layout)
            if train:
                opt = self._domain_optimizer()
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(dlogits, domains).backward(inputs=list(self.domain_head.parameters()))
                opt.step()
        return importance

    def _domain_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            lr, weight_decay = self.domain_adam
            self._optimizer = torch.optim.Adam(self.domain_head.parameters(), lr=lr, weight_decay=weight_decay)
            if self._pending_optimizer_state is not None:
                self._optimizer.load_state_dict(self._pending_optimizer_state)
                self._pending_optimizer_state = None
        return self._optimizer


def _no_domain_note(num_domains: int) -> str:
    return (f"XDomainMix needs domain labels (>= 2 domains); this dataset has {num_domains}: falling back to "
            "input-space cross-domain mixup (partners from another domain where one exists)")


def _build(config, num_classes, num_domains, multi_label, pixel_mix: Optional[PipMix]) -> BatchStrategy:
    if num_domains < 2:
        notes = [_no_domain_note(num_domains)] + (pixel_mix.notes if pixel_mix else [])
        return Mixup(num_classes, multi_label, mix_alpha(config), config.mixup_prob, cross_domain=True,
                     notes=notes, pixel_mix=pixel_mix)
    return XDomainMix(num_classes, num_domains, multi_label, warmup_steps=config.xdm_warmup_steps,
                      discard_prob=config.xdm_discard_prob, tau_every=config.xdm_tau_step_every,
                      domain_lr=config.xdm_domain_lr, domain_update=config.xdm_domain_update,
                      main_lr=config.lr if config.lr is not None else 1e-3,
                      main_weight_decay=config.weight_decay or 0.0,
                      lam_alpha=config.mixup_alpha if config.mixup_alpha > 0 else None,
                      prob=config.mixup_prob, pixel_mix=pixel_mix)


@register_strategy("xdomainmix")
def _xdomainmix(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    return _build(config, num_classes, num_domains, multi_label, None)


@register_strategy("xdomainmix+pipmix")
def _xdomainmix_pipmix(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    pipmix = PipMix(num_classes, multi_label, mix_alpha(config), config.mixup_prob, config.pipmix_patch,
                    notes=single_domain_note(num_domains, "PipMix"))
    return _build(config, num_classes, num_domains, multi_label, pipmix)
