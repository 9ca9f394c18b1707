"""Names the model code and the page share, in a module without torch: the app builds and serves its page before
torch loads (mmdemo.app imports the model code on first use)."""

HEADS = ("fused", "text", "image")  # every network's three predictions: ModelOutput.logits, text_logits, image_logits

METHODS: dict[str, str] = {  # image explanations (mmdemo.explain), as the page lists them
    "grad-cam": "Grad-CAM (last feature map)",
    "integrated-gradients": "Integrated Gradients (pixels)",
    "occlusion": "Occlusion (sliding window)",
    "attention": "Attention (word → image)",
}
