"""Model-card text (MODEL_CARD.md) of the GAN runs, written from their gan.json content."""

from __future__ import annotations

from typing import Any


def cyclegan_card(meta: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """MODEL_CARD.md of a CycleGAN run from its gan.json content and history."""
    s = meta["settings"]
    last = history[-1] if history else {}
    base = meta.get("held_out_baseline_cine_as_lge") or {}
    val = (f"PSNR {last['val_psnr']:.2f} dB, SSIM {last['val_ssim']:.3f}" if "val_psnr" in last else "n/a")
    return f"""# Model card: CycleGAN cine -> LGE (lgenode pipeline)

Status: **{meta.get('status')}**, {meta.get('epochs_done', 0)} of {s['epochs']} epochs
({s['steps_per_epoch']} steps x batch {s['batch_size']}), backend {meta['versions'].get('backend')}.

## What it is
Unpaired image translation (Zhu et al. 2017) from cine/bSSFP short-axis ROI slices to LGE-looking
slices, on the 128x128, 1.25 mm LV-centred ROI of `models/preprocess.py`. `generator.keras` is the
cine -> LGE generator ({s['generator']} generator, base {s['base_filters']} filters, instance norm,
tanh output in [-1, 1]); `pipeline.synth.cyclegan.load_generator(folder)` wraps it.
Losses: LSGAN adversarial, cycle L1 x {s['lambda_cycle']}, identity L1 x {s['identity_weight'] * s['lambda_cycle']},
Adam {s['learning_rate']} (beta1 {s['beta_1']}), linear decay after {s['decay_from']:.0%} of the steps,
image pool {s['pool_size']}; trained on random {s['crop_size']} px crops (+-{s['jitter']} px shift, flips).

## Training data
MyoPS 2020 (Zhuang / Li et al.): `_C0` (bSSFP) and `_LGE` volumes of {len(meta['train_cases'])} cases
({len(meta['train_labelled_cases'])} labelled + the unlabelled ones), {meta['slices']['train_cine']} slices per domain, drawn
**unpaired** (cine and LGE batches sampled independently). Held out from training (both domains):
{', '.join(meta['held_out_cases']) or 'none'} ({meta['slices']['held_out']} slices).
Licence: MyoPS is research-only (terms not verified; do not redistribute the data) -> these weights
are for **non-commercial research use only**. Cite Li et al., MedIA 2023 and Zhuang, TPAMI 2019.

## Intended use
A source of synthetic LGE training images for the segmentation experiment: the fake LGE of a
labelled cine slice is paired with that slice's ground-truth mask (C0, LGE and labels are
co-registered in MyoPS). Not for diagnosis, not a substitute for contrast imaging.

## Held-out check (paired: fake LGE vs the real LGE of the same slice, per-image normalised)
Last epoch: {val}. Baseline "cine used as LGE": PSNR {base.get('psnr_mean', float('nan')):.2f} dB,
SSIM {base.get('ssim_mean', float('nan')):.3f}.

## Limitations
* A cine image has no contrast-agent information: the generator cannot know where scar is. It
  learns the LGE appearance (nulled myocardium, bright blood) and at best invents plausible
  enhancement; the carried-over mask's infarct label is **not** guaranteed to be bright in the
  fake image. Check the FCN-score before using it for the infarct classes.
* Tiny training set ({meta['slices']['train_cine']} slices per domain, one centre), short CPU budget.
* MyoPS C0/LGE were resampled by the challenge; other cine protocols (other vendors, cine
  phases, no co-registration) are outside what it saw.
"""


def pix2pix_card(doc: dict[str, Any]) -> str:
    """MODEL_CARD.md of a pix2pix generator folder from its gan.json content."""
    s = doc["settings"]
    fin = doc.get("final") or {}
    held = doc.get("held_out_cases") or []
    excl = (f"fold {s['exclude_fold']}'s {len(held)} validation cases were left out (use this generator "
            f"only for fold {s['exclude_fold']}'s training run or for data that never meets those cases)"
            if s["exclude_fold"] is not None else "no case was held out (do not use it inside a CV fold)")
    final = ", ".join(f"{k} {v:.4g}" for k, v in fin.items() if isinstance(v, float))
    return f"""# pix2pix generator: label mask -> LGE image (128x128 LV ROI)

Trained by `lgenode pipeline pix2pix-train` ({', '.join(f'{k} {v}' for k, v in doc['versions'].items())}).

## What it was trained on
* Data: {len(doc['train_cases'])} development EMIDEC cases, {doc['n_train_slices']} short-axis LGE slices
  (EMIDEC, CC BY-NC-SA 4.0); {excl}. Case ids are listed in gan.json.
* Each case cut to the 128x128 ROI around its ground-truth LV centre and normalised over its ROI stack
  (`models.preprocess.preprocess_training_stack`); EMIDEC pixels were stretched to 256x256 by the data
  set, so pixel spacing and aspect ratio are not physical.
* Augmentation: {s['augment']}; lesion slices drawn with probability {s['p_lesion_slice']}.

## Settings
* Generator: U-Net, base {s['base_filters']} filters, depth {s['depth']}, {s['norm']} norm, dropout {s['dropout']}
  (3 innermost decoder levels), tanh. Discriminator: PatchGAN on one-hot mask + image, base
  {s['disc_filters']}, {s['disc_layers']} stride-2 layers.
* Loss: BCE (from logits) + {s['l1_lambda']} x class-weighted L1, weights {s['class_weights']}
  (background, cavity, myocardium, infarct, no-reflow), normalised as a weighted mean
  sum(w|G-real|)/sum(w). Adam lr {s['learning_rate']}, beta_1 {s['beta_1']}.
* {doc.get('epochs_trained')} epochs x {s['steps_per_epoch']} steps, batch {s['batch_size']}, seed {s['seed']};
  median {doc.get('ms_per_step_median') or float('nan'):.0f} ms/step ({doc['versions'].get('backend')}).
* Last epoch: {final or 'n/a'}.

## Use
`pipeline.synth.pix2pix.load_generator(folder)` -> masks (N,128,128) uint8 labels 0-4 -> images
(N,128,128) float32, `pp.normalize_intensity` per image (segmenter input convention). Inference
dropout (pix2pix's only noise) is {'on' if doc.get('inference_dropout') else 'off'} by default.
`lgenode pipeline pix2pix-generate --generator DIR --masks masks.npz --out OUT` writes pairs.npz.

Intended use: research on synthetic augmentation of LGE segmentation training sets.
Not for clinical use, diagnosis or any commercial purpose.

## Licence
{doc['licence']}

## Limitations
* 2-D, one slice at a time, 128x128 at the segmenter's ROI convention; no through-plane consistency.
* Intensities are relative (normalised per image), not calibrated signal; backgrounds (RV, liver,
  chest wall) are invented from the training distribution and are not conditioned on the mask.
* Small training set: the generator can reproduce training slices closely; realism is not
  established by the training losses (see `lgenode pipeline evaluate-synthesis`).
* Little diversity per mask (dropout only), as in pix2pix.
"""
