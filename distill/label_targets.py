"""The no-teacher baseline's label store: the same crops as ``edgeser-distill label`` plans, with
the human label targets (``targets.row_target``) of each crop's source clip in place of teacher
readings. Unlabelled dimensions (baved's dominance and valence) are stored as NaN, which the
trainer leaves out of the loss.

    python -m edgeser.distill.label_targets configs/default.toml --store runs/no_teacher/store
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import targets
from .config import LabelConfig, load_run_config
from .data import Crop, find_sources, load_noise_bank, plan_crops
from .manifest import ManifestRow
from .store import LabelStore

CHUNK = 1024


def labels_teacher_id() -> str:
    """Names the label mapping by a hash of its source, so a changed table needs a new store."""
    digest = hashlib.sha256(Path(targets.__file__).read_bytes()).hexdigest()[:16]
    return f"labels:{digest}"


def crop_target(crop: Crop) -> np.ndarray:
    """A/D/V target of the crop's source clip, NaN where the clip's label says nothing."""
    row = ManifestRow(audio=Path(crop.path), **crop.info)
    target, mask = targets.row_target(row)
    return np.where(mask > 0, target, np.nan).astype(np.float32)


def run_label_targets(cfg: LabelConfig, progress: bool = True) -> int:
    """Plan the crops of ``cfg`` exactly as the label stage does and store their label targets;
    crops already in the store are skipped. Returns the number of crops stored now."""
    cfg.teacher = cfg.teacher or "labels"
    cfg.validate()
    plan = plan_crops(find_sources(cfg.data), cfg, load_noise_bank(cfg.augment.noise_dirs))
    store = LabelStore.open(
        cfg.store, labels_teacher_id(), teacher="human label targets", nan_labels=True
    )
    done = store.done_keys()
    todo = [c for c in plan.crops if c.key not in done]
    for start in tqdm(range(0, len(todo), CHUNK), desc="label targets", disable=not progress):
        batch = todo[start : start + CHUNK]
        store.append(batch, np.stack([crop_target(c) for c in batch]))
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a run config; its [label] table plans the crops")
    parser.add_argument("--store", required=True, help="label store folder to write")
    args = parser.parse_args(argv)
    cfg = load_run_config(args.config).label
    cfg.store = args.store
    n = run_label_targets(cfg)
    print(f"{args.store}: {n} crops stored now")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
