"""OCR pre/post-processing pieces that run inside the OCR graph."""

import numpy as np

from hpi_triton.python_backend.ocr import ocr_ops


def test_rec_batches_as_paddlex():
    """PaddleX's batches: sorted by aspect ratio (stable), batch_size at a time, each crop at
    its own OCRReisizeNormImg width, zero-padded to the widest of its batch."""
    import pytest

    rng = np.random.default_rng(1)
    widths = [40, 900, 310, 320, 1500, 700, 650, 90, 880, 3000, 5000, 320]
    crops = [rng.integers(0, 255, (32, w, 3), dtype=np.uint8) for w in widths]
    batches = ocr_ops.rec_batches(crops, batch_size=6)
    order = sorted(range(len(crops)), key=lambda i: widths[i])  # same height: by width
    assert [m for m, _ in batches] == [order[:6], order[6:]]
    for members, batch in batches:
        images = [ocr_ops.rec_preprocess(crops[i]) for i in members]
        assert batch.shape == (len(members), 3, 48, max(im.shape[2] for im in images))
        for k, image in enumerate(images):
            np.testing.assert_array_equal(batch[k, :, :, :image.shape[2]], image)
            assert not batch[k, :, :, image.shape[2]:].any()
    # ties (the two 320 px crops, indices 3 and 11) keep their order, as Python's sort
    assert order.index(3) < order.index(11)
    with pytest.raises(ValueError, match="text_rec_batching='fast'"):
        ocr_ops.rec_batches(crops, 6, "fast")


def test_rec_batches_width_buckets():
    """width_buckets: crops are sorted by aspect ratio and batched only with crops of the
    same rounded width, so no line is padded by a whole bucket or more."""
    rng = np.random.default_rng(0)
    widths = [40, 900, 310, 320, 1500, 700, 650, 90, 880, 3000, 5000]
    crops = [rng.integers(0, 255, (32, w, 3), dtype=np.uint8) for w in widths]
    batches = ocr_ops.rec_batches(crops, batch_size=2, batching="width_buckets")
    seen = [i for members, _ in batches for i in members]
    assert sorted(seen) == list(range(len(crops)))
    ratios = [crops[i].shape[1] / crops[i].shape[0] for i in seen]
    assert ratios == sorted(ratios)
    for members, batch in batches:
        assert 1 <= len(members) <= 2 and batch.shape[:3] == (len(members), 3, 48)
        assert batch.shape[3] % ocr_ops.REC_WIDTH_BUCKET == 0 or \
            batch.shape[3] == ocr_ops.REC_MAX_WIDTH
        for k, index in enumerate(members):
            image = ocr_ops.rec_preprocess(crops[index])
            assert batch.shape[3] - image.shape[2] < ocr_ops.REC_WIDTH_BUCKET
            np.testing.assert_array_equal(batch[k, :, :, :image.shape[2]], image)
            assert not batch[k, :, :, image.shape[2]:].any()  # zero padding
    # The two shortest (both 320 wide after resizing) share a batch; 700 and 650 px lines
    # (1050 and 975 columns) share the 1120 bucket.
    assert [sorted(m) for m, _ in batches][:1] == [[0, 7]]
    assert any(sorted(m) == [5, 6] for m, _ in batches)
