"""Export one small Paddle network per model family of the supported-models table.

Run as a script (``python tests/family_nets.py OUT_ROOT NAME...``): ``paddle.jit.save`` reads
each Layer's source, so these classes must live in a real file. Two kinds of model:

- *architecture*: the real architecture from ``paddle.vision.models`` with random weights
  (ResNet, MobileNetV1, MobileNetV2);
- *signature*: a small network built from the family's characteristic blocks (ConvNeXt's 7x7
  depthwise + LayerNorm, Swin's window attention, ViT's class token + transformer layer, ...)
  with exactly the inputs and outputs of PaddleX's export of that family.

Random weights prove plumbing and parity with Paddle Inference, not accuracy.
"""

from __future__ import annotations

import sys

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.static import InputSpec

# --- image classification: x [N,3,224,224] float32 -> softmax [N,1000] ----------------------

class WithSoftmax(nn.Layer):
    """PaddleClas exports end in softmax."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return F.softmax(self.body(x), axis=-1)


class ConvNeXtNet(nn.Layer):
    """Patchify stem, one ConvNeXt block (7x7 depthwise, channels-last LayerNorm, inverted
    MLP with GELU, layer scale), pooled LayerNorm head."""

    def __init__(self, dim=32, classes=1000):
        super().__init__()
        self.stem = nn.Conv2D(3, dim, 4, stride=4)
        self.dw = nn.Conv2D(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = self.create_parameter([dim], default_initializer=nn.initializer.Constant(0.5))
        self.head_norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).transpose([0, 2, 3, 1])
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        x = x + y.transpose([0, 3, 1, 2])
        return F.softmax(self.head(self.head_norm(x.mean(axis=[2, 3]))), axis=-1)


class SwinNet(nn.Layer):
    """Patch embedding, window partition (7x7), multi-head self-attention inside each window,
    window reverse, MLP, pooled head."""

    def __init__(self, dim=32, window=7, heads=2, classes=1000):
        super().__init__()
        self.window, self.dim = window, dim
        self.embed = nn.Conv2D(3, dim, 4, stride=4)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiHeadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x)  # [N, C, 56, 56]
        c, h, w = self.dim, 56, 56
        s = self.window
        t = x.transpose([0, 2, 3, 1]).reshape([-1, h // s, s, w // s, s, c])
        t = t.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, s * s, c])
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        t = t.reshape([-1, h // s, w // s, s, s, c]).transpose([0, 1, 3, 2, 4, 5])
        pooled = t.reshape([-1, h * w, c]).mean(axis=1)
        return F.softmax(self.head(pooled), axis=-1)


class HGNetNet(nn.Layer):
    """PP-HGNet(V2): conv-BN-ReLU stem, an HG block (stacked 3x3 convs whose outputs are
    concatenated and aggregated by a 1x1 conv), ESE attention, pooled head."""

    def __init__(self, dim=24, layers=3, classes=1000):
        super().__init__()

        def cbr(cin, cout, k, stride=1):
            return nn.Sequential(nn.Conv2D(cin, cout, k, stride, k // 2, bias_attr=False),
                                 nn.BatchNorm2D(cout), nn.ReLU())

        self.stem = cbr(3, dim, 3, 4)
        self.layers = nn.LayerList([cbr(dim, dim, 3) for _ in range(layers)])
        self.aggregate = cbr(dim * (layers + 1), 2 * dim, 1)
        self.ese = nn.Conv2D(2 * dim, 2 * dim, 1)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x):
        x = self.stem(x)
        outs = [x]
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        x = self.aggregate(paddle.concat(outs, axis=1))
        x = x * F.sigmoid(self.ese(x.mean(axis=[2, 3], keepdim=True)))
        return F.softmax(self.head(x.mean(axis=[2, 3])), axis=-1)


class LCNetV2Net(nn.Layer):
    """PP-LCNetV2: depthwise-separable blocks with hard-swish and squeeze-excitation."""

    def __init__(self, dim=32, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, dim, 3, 2, 1), nn.BatchNorm2D(dim), nn.Hardswish())
        self.dw = nn.Conv2D(dim, dim, 5, 2, 2, groups=dim)
        self.se1, self.se2 = nn.Conv2D(dim, dim // 4, 1), nn.Conv2D(dim // 4, dim, 1)
        self.pw = nn.Conv2D(dim, 2 * dim, 1)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x):
        x = F.hardswish(self.dw(self.stem(x)))
        x = x * F.hardsigmoid(self.se2(F.relu(self.se1(x.mean(axis=[2, 3], keepdim=True)))))
        x = F.hardswish(self.pw(x))
        return F.softmax(self.head(x.mean(axis=[2, 3])), axis=-1)


class ViTNet(nn.Layer):
    """CLIP ViT: 16x16 patch embedding, class token, learned position embedding, a pre-norm
    transformer encoder layer, class-token head."""

    def __init__(self, dim=48, heads=4, classes=1000):
        super().__init__()
        self.embed = nn.Conv2D(3, dim, 16, stride=16, bias_attr=False)
        self.cls = self.create_parameter([1, 1, dim])
        self.pos = self.create_parameter([1, 197, dim])
        self.pre_norm = nn.LayerNorm(dim)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0,
                                                  activation="gelu", normalize_before=True)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose([0, 2, 1])  # [N, 196, C]
        cls = self.cls.expand([t.shape[0], -1, -1])
        t = self.pre_norm(paddle.concat([cls, t], axis=1) + self.pos)
        t = self.encoder(t)
        return F.softmax(self.head(self.norm(t[:, 0])), axis=-1)


# --- semantic segmentation: x [N,3,H,W] float32 -> label map [N,H,W] int32 -------------------

class SegBase(nn.Layer):
    """PaddleSeg export tail: logits upsampled to the input size, argmax inside, int32."""

    def __init__(self, dim=16, classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, dim, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2D(dim, dim, 3, 2, 1), nn.ReLU())
        self.cls = nn.Conv2D(dim, classes, 1)

    def labels(self, logits, x):
        logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
        return paddle.argmax(logits, axis=1).astype("int32")


class DeepLabNet(SegBase):
    """Deeplabv3(+): ASPP (dilated 3x3 branches + image pooling) and a low-level skip."""

    def __init__(self, dim=16, classes=5):
        super().__init__(dim, classes)
        self.branches = nn.LayerList([nn.Conv2D(dim, dim, 3, padding=r, dilation=r)
                                      for r in (1, 3, 6)])
        self.pool_conv = nn.Conv2D(dim, dim, 1)
        self.project = nn.Conv2D(4 * dim, dim, 1)

    def forward(self, x):
        f = self.stem(x)
        pooled = self.pool_conv(f.mean(axis=[2, 3], keepdim=True)).expand_as(f)
        y = F.relu(self.project(paddle.concat([b(f) for b in self.branches] + [pooled], 1)))
        return self.labels(self.cls(y + f), x)


class LiteSegNet(SegBase):
    """PP-LiteSeg: unified attention fusion (spatial attention from mean/max of two
    features) of a deep, upsampled feature with a shallow one."""

    def __init__(self, dim=16, classes=5):
        super().__init__(dim, classes)
        self.deep = nn.Conv2D(dim, dim, 3, 2, 1)
        self.attention = nn.Conv2D(4, 1, 3, padding=1)

    def forward(self, x):
        low = self.stem(x)
        high = F.interpolate(F.relu(self.deep(low)), size=low.shape[2:], mode="bilinear")
        stats = paddle.concat([low.mean(1, keepdim=True), low.max(1, keepdim=True),
                               high.mean(1, keepdim=True), high.max(1, keepdim=True)], 1)
        alpha = F.sigmoid(self.attention(stats))
        return self.labels(self.cls(low * alpha + high * (1 - alpha)), x)


class OCRNetNet(SegBase):
    """OCRNet: soft object regions → region representations → pixel-region attention."""

    def __init__(self, dim=16, classes=5):
        super().__init__(dim, classes)
        self.aux = nn.Conv2D(dim, classes, 1)
        self.query, self.key = nn.Conv2D(dim, dim, 1), nn.Linear(dim, dim)

    def forward(self, x):
        f = self.stem(x)
        c = f.shape[1]
        regions = F.softmax(self.aux(f).flatten(2), axis=-1)  # [N, K, HW]
        pixels = f.flatten(2)  # [N, C, HW]
        centers = paddle.matmul(regions, pixels, transpose_y=True)  # [N, K, C]
        q = self.query(f).flatten(2).transpose([0, 2, 1])  # [N, HW, C]
        attn = F.softmax(paddle.matmul(q, self.key(centers), transpose_y=True) / c ** 0.5, -1)
        context = paddle.matmul(attn, centers).transpose([0, 2, 1]).reshape(paddle.shape(f))
        return self.labels(self.cls(f + context), x)


class SeaFormerNet(SegBase):
    """SeaFormer: squeeze-axial attention (attention along the row-pooled and the
    column-pooled axis) plus a detail-enhancing depthwise branch."""

    def __init__(self, dim=16, classes=5):
        super().__init__(dim, classes)
        self.qkv = nn.Conv2D(dim, 3 * dim, 1)
        self.detail = nn.Conv2D(dim, dim, 3, padding=1, groups=dim)

    def _axial(self, q, k, v):
        attn = F.softmax(paddle.matmul(q.transpose([0, 2, 1]), k) / q.shape[1] ** 0.5, -1)
        return paddle.matmul(v, attn, transpose_y=True)  # [N, C, L]

    def forward(self, x):
        f = self.stem(x)
        q, k, v = paddle.split(self.qkv(f), 3, axis=1)
        rows = self._axial(q.mean(3), k.mean(3), v.mean(3)).unsqueeze(3)  # [N, C, H, 1]
        cols = self._axial(q.mean(2), k.mean(2), v.mean(2)).unsqueeze(2)  # [N, C, 1, W]
        y = (rows + cols) * F.sigmoid(self.detail(f))
        return self.labels(self.cls(f + y), x)


class SegFormerNet(SegBase):
    """SegFormer: overlapping patch embedding, efficient self-attention with spatial
    reduction, Mix-FFN (depthwise conv inside the MLP), all-MLP decoder."""

    def __init__(self, dim=16, classes=5, reduction=2):
        super().__init__(dim, classes)
        self.embed = nn.Conv2D(dim, dim, 3, 2, 1)
        self.norm = nn.LayerNorm(dim)
        self.sr = nn.Conv2D(dim, dim, reduction, stride=reduction)
        self.attn = nn.MultiHeadAttention(dim, 2)
        self.ffn_in, self.ffn_out = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.ffn_dw = nn.Conv2D(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim)
        self.decode = nn.Conv2D(2 * dim, dim, 1)

    def forward(self, x):
        low = self.stem(x)
        f = self.embed(low)
        shape = paddle.shape(f)
        t = self.norm(f.flatten(2).transpose([0, 2, 1]))
        kv = self.sr(f).flatten(2).transpose([0, 2, 1])
        t = t + self.attn(t, kv, kv)
        h = self.ffn_in(t).transpose([0, 2, 1]).reshape([shape[0], -1, shape[2], shape[3]])
        h = F.gelu(self.ffn_dw(h)).flatten(2).transpose([0, 2, 1])
        t = t + self.ffn_out(h)
        f = t.transpose([0, 2, 1]).reshape(shape)
        up = F.interpolate(f, size=low.shape[2:], mode="bilinear")
        return self.labels(self.cls(self.decode(paddle.concat([low, up], 1))), x)


# --- detection: PaddleDetection export signature -----------------------------------------------

class DetectorNet(nn.Layer):
    """Inputs named as the family exports them (image, im_shape, scale_factor in its order);
    outputs NMS-style rows [K,6] (class, score, x1, y1, x2, y2 in source-image coordinates)
    and the per-image box count [N] int32, plus masks [K,H0,W0] int32 at the source size for
    Mask-RT-DETR. One image per request, as the pipeline sends it."""

    def __init__(self, input_names, classes=4, boxes=16, masks=False, dim=16):
        super().__init__()
        self.input_names, self.boxes, self.masks = list(input_names), boxes, masks
        self.backbone = nn.Sequential(nn.Conv2D(3, dim, 3, 4, 1), nn.ReLU(),
                                      nn.Conv2D(dim, dim, 3, 2, 1), nn.ReLU())
        self.cls = nn.Linear(dim, classes)
        self.box = nn.Linear(dim, 4)
        if masks:
            self.mask_head = nn.Conv2D(dim, boxes, 3, padding=1)

    def forward(self, first, second, third=None):
        feeds = dict(zip(self.input_names, (first, second, third)))
        image = feeds["image"]
        height, width = paddle.shape(image)[2], paddle.shape(image)[3]
        scale = feeds.get("scale_factor")
        if scale is None:
            scale = paddle.ones([1, 2], "float32")
        f = self.backbone(image)
        cells = F.adaptive_avg_pool2d(f, 4).flatten(2).transpose([0, 2, 1])  # [N, 16, C]
        probs = F.sigmoid(self.cls(cells) * 4.0)
        score, label = probs.max(-1), probs.argmax(-1).astype("float32")
        cx, cy, bw, bh = paddle.split(F.sigmoid(self.box(cells)), 4, axis=-1)
        size = paddle.stack([width, height]).astype("float32")
        x1 = (cx - bw / 2).squeeze(-1) * size[0] / scale[:, 1:2]
        y1 = (cy - bh / 2).squeeze(-1) * size[1] / scale[:, 0:1]
        x2 = (cx + bw / 2).squeeze(-1) * size[0] / scale[:, 1:2]
        y2 = (cy + bh / 2).squeeze(-1) * size[1] / scale[:, 0:1]
        if "im_shape" in feeds:  # clip to the source image, as the exports' post-processing
            source = feeds["im_shape"] / scale  # [N, 2] (h, w)
            x1, x2 = x1.clip(0).minimum(source[:, 1:2]), x2.clip(0).minimum(source[:, 1:2])
            y1, y2 = y1.clip(0).minimum(source[:, 0:1]), y2.clip(0).minimum(source[:, 0:1])
        rows = paddle.stack([label, score, x1, y1, x2, y2], axis=-1).reshape([-1, 6])
        count = paddle.full([paddle.shape(image)[0]], self.boxes, "int32")
        if not self.masks:
            return rows, count
        shape = feeds["im_shape"][0] / scale[0]
        logits = self.mask_head(f)
        source_h = paddle.round(shape[0]).astype("int32")
        source_w = paddle.round(shape[1]).astype("int32")
        logits = F.interpolate(logits, size=[source_h, source_w], mode="bilinear")
        masks = (logits[0] > 0).astype("int32")
        return rows, count, masks


class UVDocNet(nn.Layer):
    """UVDoc's export signature: x [N,3,H,W] (BGR / 255, any size) -> the unwarped image
    [N,3,H,W] in [0, 1]. As UVDoc: the image resized to 712x488 predicts a coarse 2-D sampling
    grid (45x31), which is upsampled to the input size and sampled with grid_sample. Here the
    grid is the identity plus a small learned offset, so pages stay readable."""

    def __init__(self, offset=0.002):
        super().__init__()
        self.offset = offset
        self.features = nn.Sequential(nn.Conv2D(3, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2D(8, 2, 3, padding=1))

    def forward(self, x):
        small = F.interpolate(x, size=[712, 488], mode="bilinear", align_corners=True)
        delta = F.interpolate(paddle.tanh(self.features(small)), size=[45, 31],
                              mode="bilinear", align_corners=True) * self.offset
        ys, xs = paddle.meshgrid(paddle.linspace(-1.0, 1.0, 45), paddle.linspace(-1.0, 1.0, 31))
        grid = paddle.stack([xs, ys]).unsqueeze(0) + delta  # [N, 2, 45, 31]
        grid = F.interpolate(grid, size=paddle.shape(x)[2:], mode="bilinear", align_corners=True)
        return F.grid_sample(x, grid.transpose([0, 2, 3, 1]), align_corners=True)


def _classification(name):
    from paddle.vision import models

    if name == "ResNet18":
        return WithSoftmax(models.resnet18())
    if name == "MobileNetV2":
        return WithSoftmax(models.mobilenet_v2(scale=0.5))
    if name == "MobileNetV1":
        return WithSoftmax(models.mobilenet_v1(scale=0.25))
    return {"ConvNeXt": ConvNeXtNet, "SwinTransformer": SwinNet, "PP-HGNetV2": HGNetNet,
            "PP-LCNetV2": LCNetV2Net, "CLIP_ViT": ViTNet}[name]()


class LayoutStandInNet(nn.Layer):
    """A layout detector with PicoDet-S's export signature (image, scale_factor -> NMS rows
    [K,6] in source coordinates + box count) that finds four fixed, well-separated regions of
    any page — title, text, table, seal (classes 1, 0, 2, 3) — so layout pipelines have one
    block of each kind to parse. No layout weights PaddleX can load ship in a wheel; random
    detectors give overlapping boxes, on which PaddleX's layout_parsing re-runs OCR per block
    and line (minutes per page)."""

    REGIONS = [[1, 0.05, 0.02, 0.95, 0.10], [0, 0.05, 0.12, 0.95, 0.40],
               [2, 0.05, 0.42, 0.95, 0.75], [3, 0.60, 0.78, 0.95, 0.98]]

    def __init__(self):
        super().__init__()
        self.probe = nn.Conv2D(3, 1, 1)
        self.regions = paddle.to_tensor(self.REGIONS, dtype="float32")

    def forward(self, image, scale_factor):
        h = paddle.shape(image)[2].astype("float32") / scale_factor[0, 0]
        w = paddle.shape(image)[3].astype("float32") / scale_factor[0, 1]
        score = paddle.full([4], 0.9, "float32") + self.probe(image).mean() * 0.0
        r = self.regions
        rows = paddle.stack([r[:, 0], score, r[:, 1] * w, r[:, 2] * h, r[:, 3] * w,
                             r[:, 4] * h], axis=-1)
        return rows, paddle.full([1], 4, "int32")


class LatexOCRNet(nn.Layer):
    """LaTeX_OCR_rec's export signature and decoding loop (PaddleOCR's LaTeXOCRHead
    ``generate_export``): x [N,1,H,W] float32 -> token ids [N,L] int64 without the leading
    [BOS]. A strided-conv encoder gives the context [N,S,D]; the loop starts from [BOS] and,
    up to ``max_len`` steps, computes the next token's logits from the last token, the step
    and attention over the context, keeps the top 10% (top_k, thres 0.9), samples from
    softmax(logits / 0.333) (``paddle.multinomial``), appends, and stops once every row holds
    [EOS]. Two changes make random weights usable: the logits are one-hot x50 of the raw
    argmax (sampling then always picks it, so runs and backends agree), and [EOS] wins from
    step W/16 - 3 on (narrow crops decode short, a 32-px crop to nothing)."""

    def __init__(self, vocab, max_len=512, dim=32, bos=1, eos=2, pad=0):
        super().__init__()
        self.vocab, self.max_len, self.bos, self.eos, self.pad = vocab, max_len, bos, eos, pad
        self.encoder = nn.Sequential(
            nn.Conv2D(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2D(8, 16, 3, 2, 1), nn.ReLU(),
            nn.Conv2D(16, dim, 3, 2, 1), nn.ReLU(), nn.Conv2D(dim, dim, 3, 2, 1))
        self.token_emb = nn.Embedding(vocab, dim)
        self.pos_emb = nn.Embedding(max_len + 1, dim)
        self.to_logits = nn.Linear(dim, vocab)
        self.temperature = 0.333

    def _logits(self, out, context, i):
        q = self.token_emb(out[:, -1]) + self.pos_emb(paddle.full([1], 0, "int64") + i)
        attn = F.softmax(paddle.matmul(context, q.unsqueeze(-1)).squeeze(-1) / 5.66, axis=-1)
        raw = self.to_logits(paddle.matmul(attn.unsqueeze(1), context).squeeze(1) + q)
        special = F.one_hot(paddle.to_tensor([self.bos, self.eos, self.pad]), self.vocab).sum(0)
        return F.one_hot(paddle.argmax(raw - special * 1e4, axis=-1), self.vocab) * 50.0

    def forward(self, x):
        feat = self.encoder(x)
        context = feat.flatten(2).transpose([0, 2, 1])
        target = (paddle.shape(feat)[3] - 3).astype("float32")
        out = paddle.full([paddle.shape(x)[0], 1], self.bos, dtype="int64")
        eos = F.one_hot(paddle.to_tensor([self.eos]), self.vocab)
        i = paddle.full([], 0, "int64")
        done = paddle.full([], False, "bool")
        while i < self.max_len and not done:
            logits = self._logits(out, context, i) + eos * (i.astype("float32") - target) * 100.0
            val, ind = paddle.topk(logits, int(0.1 * self.vocab))
            kept = paddle.put_along_axis(paddle.full_like(logits, float("-inf")), ind, val, 1)
            sample = paddle.multinomial(F.softmax(kept / self.temperature, axis=-1), 1)
            out = paddle.concat([out, sample], axis=-1)
            done = (paddle.cumsum((out == self.eos).astype("int64"), 1)[:, -1] >= 1).all()
            i += 1
        return out[:, 1:]


class CTCRecNet(nn.Layer):
    """A CTC text recognizer's export signature: x [N,3,48,W] -> softmax [N, W/stride, classes]
    (PP-OCRv4_server_rec and ch_RepSVTR_rec: stride 8; ch_SVTRv2_rec: stride 4). Strided convs
    (2x2 each), the height averaged away, a linear layer to the charset; logits x20 so the
    random recognizer is confident (and its texts vary with the crop)."""

    def __init__(self, stride, classes=6625, dim=32):
        super().__init__()
        layers, cin = [], 3
        for _ in range({4: 2, 8: 3}[stride]):
            layers += [nn.Conv2D(cin, dim, 3, stride=2, padding=1), nn.ReLU()]
            cin = dim
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        seq = self.body(x).mean(axis=2).transpose([0, 2, 1])
        return F.softmax(self.fc(seq) * 20.0, axis=-1)


class DBStandInNet(nn.Layer):
    """PP-OCRv4_server_det's export signature: x [N,3,H,W] (ImageNet-normalised) -> DB
    probability map [N,1,H,W]. Fixed weights find ink (dark pixels), widened along the line
    by a 3x11 max-pool, so DB post-processing finds the page's real lines; a random 3x3 conv
    adds a small learned term (x0.01)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 1, 3, padding=1)

    def forward(self, x):
        ink = F.max_pool2d(-x.mean(axis=1, keepdim=True), kernel_size=(3, 11), stride=1,
                           padding=(1, 5))
        return F.sigmoid(6.0 * (ink - 1.0) + 0.01 * self.conv(x))


SEGMENTATION = {"Deeplabv3_Plus": DeepLabNet, "PP-LiteSeg": LiteSegNet, "OCRNet": OCRNetNet,
                "SeaFormer": SeaFormerNet, "SegFormer": SegFormerNet}


def export(name: str, kind: str, inputs, target: str, spec_size, vocab=None,
           max_len=None, stride=None) -> None:
    """``kind``: classification / segmentation / detection / instance_segmentation /
    unwarping / layout / formula / text_rec / text_det; ``inputs``: detection input names in
    export order; ``spec_size``: (H, W) or None; ``vocab`` / ``max_len``: the formula net's;
    ``stride``: the text recognizer's width stride."""
    paddle.seed(0)
    h, w = spec_size or (None, None)
    if kind == "classification":
        model, specs = _classification(name), [InputSpec([None, 3, 224, 224], "float32", "x")]
    elif kind == "unwarping":
        model, specs = UVDocNet(), [InputSpec([None, 3, None, None], "float32", "x")]
    elif kind == "layout":
        model = LayoutStandInNet()
        specs = [InputSpec([None, 3, None, None], "float32", "image"),
                 InputSpec([None, 2], "float32", "scale_factor")]
    elif kind == "text_rec":
        model, specs = CTCRecNet(stride), [InputSpec([None, 3, 48, None], "float32", "x")]
    elif kind == "text_det":
        model, specs = DBStandInNet(), [InputSpec([None, 3, None, None], "float32", "x")]
    elif kind == "formula":
        model = LatexOCRNet(vocab, max_len)
        specs = [InputSpec([None, 1, None, None], "float32", "x")]
    elif kind == "segmentation":
        model, specs = SEGMENTATION[name](), [InputSpec([None, 3, h, w], "float32", "x")]
    else:
        model = DetectorNet(inputs, masks=kind == "instance_segmentation")
        shapes = {"image": [None, 3, h, w], "im_shape": [None, 2], "scale_factor": [None, 2]}
        specs = [InputSpec(shapes[n], "float32", n) for n in inputs]
    model.eval()
    paddle.jit.save(model, target + "/inference", input_spec=specs)


if __name__ == "__main__":
    import json

    for job in json.loads(sys.argv[1]):
        export(**job)
