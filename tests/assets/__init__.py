"""Real photos for tests, from the MediaEval 2016 "Verifying Multimedia Use" dev set (Apache-2.0, see
LICENSE-mediaeval2016): sochi_fake_16.jpg -> toilet_seat.jpg, sandy_real_125.jpg -> cab.jpg, copied unchanged
from ../shared/datasets/mediaeval2016/images/ (already re-encoded there to at most 224 px)."""

# file -> ImageNet-1k class index that EfficientNet-Lite0 must rank first
KNOWN_PHOTOS = {"toilet_seat.jpg": 861, "cab.jpg": 468}
