"""The weights policy: where a replica's checkpoint comes from.

auto      explicit path/URL, else the checkpoint directory, else the torch.hub cache, else a download;
          if none can be had, random weights with a loud warning (dev only).
required  the same search, but no checkpoint is a start-up error (deploy manifests use this).
random    random weights, no search (tests, smoke runs).
A checkpoint that is found but bad (hash, keys, corrupt) always fails, whatever the policy.
"""

from __future__ import annotations

import logging
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from model import get_variant
from model.checkpoint import download, find_in_directory, hub_checkpoint_dir
from service.config import VariantSettings

log = logging.getLogger(__name__)


class WeightsUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class WeightsChoice:
    source: str | None  # a path or URL for create_model; None means random init
    description: str  # what /v1/models shows as weights_source


def choose_weights(settings: VariantSettings) -> WeightsChoice:
    """Where a variant's weights come from under the settings' policy (see the module docstring)."""
    variant = get_variant(settings.model_id)
    policy, explicit = settings.weights_policy, settings.classifier.weights
    if policy == "random":
        return WeightsChoice(None, "random-init (weights_policy=random)")
    if explicit:
        return WeightsChoice(explicit, explicit)
    searched = []
    if settings.checkpoint_dir:
        found = find_in_directory(variant, Path(settings.checkpoint_dir))
        if found is not None:
            return WeightsChoice(str(found), str(found))
        searched.append(f"directory {settings.checkpoint_dir}")
    try:  # served from the torch.hub cache when it is there, downloaded otherwise
        return WeightsChoice(str(download(variant.checkpoint_url)), variant.checkpoint_url)
    except (urllib.error.URLError, OSError) as exc:  # unreachable host; a bad hash raises CheckpointError
        searched.append(f"hub cache {hub_checkpoint_dir()} and download {variant.checkpoint_url} ({exc})")
    reason = f"no checkpoint for {variant.id}: tried " + "; ".join(searched)
    if policy == "required":
        raise WeightsUnavailable(reason + " (weights_policy=required)")
    log.warning("!" * 20 + " %s. SERVING RANDOM WEIGHTS: predictions are meaningless. " + "!" * 20, reason)
    return WeightsChoice(None, "random-init (no checkpoint found)")


def check_required_weights(settings: VariantSettings) -> None:
    """Under weights_policy=required, find (or download) the checkpoint before Ray starts: fail fast, with
    WeightsUnavailable or CheckpointError. Under the other policies a replica finds its weights itself."""
    if settings.weights_policy == "required":
        log.info("%s: weights from %s", settings.model_id, choose_weights(settings).description)
