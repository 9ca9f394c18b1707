import os

# Tests never phone out: no Hub, no Gradio analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models are latency-bound: one intra-op thread is several times faster than two on a 2-core box.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_encoders():
    from mmdemo.encoders import create_image_encoder, create_text_encoder

    return create_text_encoder("tiny-bert"), create_image_encoder("tiny-resnet")


@pytest.fixture(scope="module")
def bert_resnet():
    """(dims, text, image) of four fixed captions through tiny-bert and tiny-resnet."""
    from tests.helpers import encode_examples

    return encode_examples("tiny-bert", "tiny-resnet")


@pytest.fixture(scope="module")
def clip_pair():
    """(dims, text, image) of four fixed captions through the tiny open_clip text and image towers."""
    from tests.helpers import encode_examples

    return encode_examples("tiny-clip-text", "tiny-clip-image")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
