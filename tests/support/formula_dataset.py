"""LaTeX_OCR_rec stand-ins (random weights, the export's signature and decoding loop) and
formula images for the formula_recognition tests.

No LaTeX_OCR_rec weights ship in a wheel. The model dir here holds
:class:`tests.support.family_nets.LatexOCRNet` (PIR export) and the inference.yml PaddleOCR's
export writes for LaTeX_OCR_rec (its rec_latex_ocr.yml pre-processing, LaTeXOCRDecode with
the tokenizer JSON under ``PostProcess.character_dict``); the tokenizer is a byte-level BPE
trained here on a few LaTeX strings with LaTeX-OCR's special tokens ([PAD] 0, [BOS] 1,
[EOS] 2). This proves pre-processing, the decoding loop's conversion and serving, decoding
and parity with PaddleX — not recognition quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

from tests.support.families import _export

LATEX_CORPUS = [r"\frac{a}{b}", r"x^{2}+y^{2}=z^{2}", r"\sum_{i=1}^{n} i=\frac{n(n+1)}{2}",
                r"\int_{0}^{1} f(x)\,dx", r"\text {speed} = \frac {d}{t}", r"e^{i\pi}+1=0",
                r"\sqrt{a^{2}+b^{2}}", r"\alpha \beta \gamma \delta", r"\mathrm {d} y",
                r"\lim_{x \to 0} \frac{\sin x}{x}=1", r"a_{n+1}=a_{n}+d"]

PREPROCESS = [{"DecodeImage": {"img_mode": "RGB", "channel_first": False}},
              {"MinMaxResize": {"min_dimensions": [32, 32], "max_dimensions": [672, 192]}},
              {"LatexTestTransform": None},
              {"NormalizeImage": {"mean": [0.7931, 0.7931, 0.7931],
                                  "std": [0.1738, 0.1738, 0.1738], "order": "hwc"}},
              {"LatexImageFormat": None},
              {"KeepKeys": {"keep_keys": ["image"]}}]


def latex_tokenizer() -> dict:
    """A byte-level BPE tokenizer (Hugging Face tokenizers JSON, no decoder, as LaTeX-OCR's)
    with [PAD]=0, [BOS]=1, [EOS]=2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["[PAD]", "[BOS]", "[EOS]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(LATEX_CORPUS * 4, trainer)
    return json.loads(tokenizer.to_str())


def latex_model_dir(root: Path, max_len: int = 512) -> Path:
    """A LaTeX_OCR_rec model dir (random weights, decoding limit ``max_len`` tokens as the
    export's max_seq_len 512)."""
    suffix = "" if max_len == 512 else f"_limit{max_len}"
    target = Path(root) / f"LaTeX_OCR_rec_random{suffix}"
    chars = latex_tokenizer()
    if not (target / "inference.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        _export([{"name": "LaTeX_OCR_rec", "kind": "formula", "inputs": None,
                  "target": str(target), "spec_size": None,
                  "vocab": len(chars["model"]["vocab"]), "max_len": max_len}])
    post = {"name": "LaTeXOCRDecode", "character_dict": chars}
    config = {"Global": {"model_name": "LaTeX_OCR_rec"},
              "Hpi": {"selected_backends": {"cpu": "paddle_infer", "gpu": "paddle_infer"},
                      "supported_backends": {"cpu": ["paddle_infer"], "gpu": ["paddle_infer"]}},
              "PreProcess": {"transform_ops": PREPROCESS}, "PostProcess": post}
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False,
                                                          allow_unicode=True))
    return target


def make_formula(seed: int, width: int = 0) -> np.ndarray:
    """A BGR crop of one printed formula-like line (dark on light), ``width`` px wide or a
    size that varies with ``seed``."""
    rng = np.random.default_rng(seed)
    text = LATEX_CORPUS[seed % len(LATEX_CORPUS)].replace("\\", "").replace("{", "(")
    text = text.replace("}", ")")[:28]
    scale = 0.6 + 0.1 * (seed % 4)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    w = width or tw + int(rng.integers(10, 60))
    h = th + int(rng.integers(12, 40))
    image = np.full((h, w, 3), 245 - int(rng.integers(0, 20)), np.uint8)
    cv2.putText(image, text, (5, h - (h - th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (20, 20, 20), 1, cv2.LINE_AA)
    return image


def formula_page(seed: int, height: int = 640, width: int = 480) -> np.ndarray:
    """A page whose formula sits where :class:`LayoutStandInNet` puts its third region
    (labelled ``formula`` by :func:`formula_layout_dir`)."""
    page = np.full((height, width, 3), 250, np.uint8)
    cv2.putText(page, f"Section {seed}", (30, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                (0, 0, 0), 2)
    crop = make_formula(seed, width=int(width * 0.8))
    y = int(height * 0.5)
    page[y:y + crop.shape[0], int(width * 0.1):int(width * 0.1) + crop.shape[1]] = crop
    return page


def formula_layout_dir(root: Path) -> Path:
    """The layout stand-in (four fixed regions) with labels text, title, formula, seal."""
    from tests.support.families import layout_model_dir

    source = layout_model_dir(root)
    target = Path(root) / "LayoutStandIn_formula"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("inference.json", "inference.pdiparams"):
        if not (target / name).exists():
            (target / name).write_bytes((source / name).read_bytes())
    config = yaml.safe_load((source / "inference.yml").read_text())
    config["label_list"] = ["text", "title", "formula", "seal"]
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target
