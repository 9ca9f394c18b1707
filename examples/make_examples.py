"""The app's examples, per task (the page shows the current task's).

Sentiment and hashtags: pictures drawn with PIL (no third-party pictures, so no licence question) with captions
written for them, some matching their picture and some not. Fake news: four posts of the MediaEval 2016 set
(Apache-2.0, see ../shared/datasets/mediaeval2016/LICENSE), a real and a fake post from each of two events, their
images copied as they are in the data and their captions without the links. The page makes no claim about what a
network answers on them: each is just an input to try.

    python examples/make_examples.py [--mediaeval DIR]   # rewrites examples/*.jpg and examples/examples.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
W, H = 384, 288

# (task, image file, caption). Order = order in the app.
EXAMPLES: list[tuple[str, str, str]] = [
    ("mvsa-single", "beach.jpg", "Best day ever at the beach, sun, sea and ice cream!"),
    ("mvsa-single", "rain.jpg", "Grey, cold and raining all week. So miserable."),
    ("mvsa-single", "cake.jpg", "Happy birthday to my best friend, love you!"),
    ("mvsa-single", "beach.jpg", "Stuck here alone again, worst holiday of my life."),
    ("mvsa-single", "rain.jpg", "Love the sound of the rain, so cosy and happy inside!"),
    ("mvsa-single", "cake.jpg", "Bought a cake at the shop on Main Street."),
    ("hashtags", "rain.jpg", "Another stormy night, rain on the windows and nowhere to go"),
    ("hashtags", "beach.jpg", "Sun, sea and my favourite people. Could not be happier"),
    ("hashtags", "cake.jpg", "Party time! So excited to celebrate with you all"),
]
# MediaEval posts: (image id, label in the data); the caption is the first post that uses the image.
MEDIAEVAL_POSTS = [("nepal_25", "real"), ("nepal_01", "fake"), ("eclipse_10", "real"), ("eclipse_01", "fake")]
MEDIAEVAL_DIR = HERE.parent.parent / "shared" / "datasets" / "mediaeval2016"


def _vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], w: int, h: int) -> Image.Image:
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    rows = (1 - t) * np.array(top) + t * np.array(bottom)
    return Image.fromarray(np.repeat(rows, w, axis=1).astype(np.uint8), "RGB")


def _noise(img: Image.Image, amount: float, seed: int) -> Image.Image:
    """A little grain so the JPEGs look like photos rather than flat vector art."""
    a = np.asarray(img, dtype=np.float64)
    a = a + np.random.default_rng(seed).normal(0.0, amount, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def beach() -> Image.Image:
    img = _vertical_gradient((70, 150, 235), (175, 220, 250), W, H)
    d = ImageDraw.Draw(img)
    sx, sy, r = 300, 60, 30  # sun with rays
    for k in range(12):
        a = k * math.pi / 6
        d.line([sx + 38 * math.cos(a), sy + 38 * math.sin(a), sx + 54 * math.cos(a), sy + 54 * math.sin(a)],
               fill=(255, 225, 80), width=4)
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 215, 40))
    for cx, cy in ((80, 50), (150, 80)):  # small white clouds
        for dx, dy, rr in ((0, 0, 16), (18, -6, 20), (38, 0, 15)):
            d.ellipse([cx + dx - rr, cy + dy - rr, cx + dx + rr, cy + dy + rr], fill=(255, 255, 255))
    sea = _vertical_gradient((20, 120, 190), (60, 170, 210), W, 70)
    img.paste(sea, (0, 150))
    for y in range(160, 220, 12):  # wave highlights
        for x in range((y * 7) % 40, W, 48):
            d.arc([x, y, x + 24, y + 8], 200, 340, fill=(200, 235, 250), width=2)
    d.polygon([(0, 215), (W, 200), (W, H), (0, H)], fill=(240, 210, 150))
    d.line([(110, 285), (130, 175)], fill=(90, 60, 40), width=5)  # umbrella
    d.pieslice([70, 150, 190, 210], 180, 360, fill=(230, 60, 60))
    d.pieslice([100, 150, 160, 210], 180, 360, fill=(255, 255, 255))
    d.rectangle([200, 250, 290, 262], fill=(60, 160, 220))  # towel
    d.ellipse([320, 240, 344, 264], fill=(250, 250, 250), outline=(230, 60, 60), width=4)  # ball
    return _noise(img, 4.0, 1)


def rain() -> Image.Image:
    img = _vertical_gradient((70, 74, 82), (120, 124, 130), W, H)
    d = ImageDraw.Draw(img)
    rng = np.random.default_rng(2)
    for x0, w, h in ((0, 70, 140), (75, 55, 110), (135, 80, 160), (220, 60, 120), (285, 99, 150)):  # buildings
        shade = int(rng.integers(45, 70))
        d.rectangle([x0, H - 60 - h, x0 + w, H - 60], fill=(shade, shade + 2, shade + 6))
        for wy in range(H - 50 - h, H - 70, 18):  # a few dim windows
            for wx in range(x0 + 8, x0 + w - 10, 16):
                if rng.random() < 0.3:
                    d.rectangle([wx, wy, wx + 7, wy + 9], fill=(150, 140, 90))
    for cx in range(-20, W + 40, 60):  # heavy dark clouds
        cy = int(rng.integers(20, 55))
        d.ellipse([cx - 50, cy - 30, cx + 50, cy + 30], fill=(55, 58, 64))
    d.rectangle([0, H - 60, W, H], fill=(50, 52, 56))  # wet street
    for _ in range(6):  # puddles
        x, y = int(rng.integers(0, W - 60)), int(rng.integers(H - 50, H - 12))
        d.ellipse([x, y, x + 60, y + 10], fill=(90, 96, 106))
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    d = ImageDraw.Draw(img)
    for _ in range(420):  # rain streaks
        x, y = float(rng.uniform(-40, W)), float(rng.uniform(-20, H))
        d.line([x, y, x + 6, y + 18], fill=(175, 182, 195), width=1)
    d.line([(300, H - 10), (300, H - 95)], fill=(25, 25, 25), width=3)  # a person's umbrella
    d.pieslice([262, H - 125, 338, H - 75], 180, 360, fill=(30, 30, 34))
    return _noise(img, 5.0, 2)


def cake() -> Image.Image:
    img = _vertical_gradient((255, 236, 210), (250, 210, 190), W, H)
    d = ImageDraw.Draw(img)
    for x in range(0, W, 32):  # bunting
        flag = [(235, 80, 120), (80, 170, 235), (250, 200, 60)][x // 32 % 3]
        d.polygon([(x, 0), (x + 28, 0), (x + 14, 24)], fill=flag)
    d.rectangle([0, 215, W, H], fill=(170, 110, 70))  # table
    d.ellipse([80, 215, 304, 255], fill=(245, 245, 250))  # plate
    d.rectangle([110, 150, 274, 232], fill=(120, 70, 45))  # lower tier, chocolate
    d.ellipse([110, 220, 274, 244], fill=(120, 70, 45))
    d.ellipse([110, 138, 274, 162], fill=(250, 240, 245))  # icing top
    d.rectangle([140, 100, 244, 150], fill=(250, 170, 190))  # upper tier, pink
    d.ellipse([140, 140, 244, 158], fill=(250, 170, 190))
    d.ellipse([140, 90, 244, 110], fill=(255, 250, 250))
    for i, x in enumerate(range(150, 240, 12)):  # icing drips and sprinkles
        d.ellipse([x, 104, x + 8, 118], fill=(255, 250, 250))
        y = 160 + (i % 3) * 18
        d.rectangle([x + 2, y, x + 6, y + 6], fill=[(80, 170, 235), (250, 200, 60)][i % 2])
    for x in (160, 182, 204, 226):  # candles and flames
        d.rectangle([x - 3, 66, x + 3, 98], fill=(120, 190, 250))
        d.ellipse([x - 5, 48, x + 5, 66], fill=(255, 170, 30))
        d.ellipse([x - 2, 55, x + 2, 64], fill=(255, 245, 170))
    d.ellipse([310, 150, 370, 210], fill=(235, 80, 120))  # balloon
    d.line([(340, 210), (330, 262)], fill=(120, 120, 120), width=1)
    return _noise(img, 3.0, 3)


DRAWINGS = {"beach.jpg": beach, "rain.jpg": rain, "cake.jpg": cake}


def mediaeval_examples(data_dir: Path, out_dir: Path) -> list[dict]:
    """Copy the chosen MediaEval posts' images to out_dir/mediaeval2016/ and return their rows."""
    with open(data_dir / "posts.txt", encoding="utf-8", errors="replace", newline="") as f:
        posts = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    (out_dir / "mediaeval2016").mkdir(exist_ok=True)
    rows = []
    for image_id, label in MEDIAEVAL_POSTS:
        post = next(p for p in posts if p["image_id(s)"].strip().split(",")[0] == image_id and p["label"] == label)
        caption = re.sub(r"\s+", " ", re.sub(r"https?://\S+", "", post["post_text"])).strip(" “”\"")
        shutil.copyfile(data_dir / "images" / f"{image_id}.jpg", out_dir / "mediaeval2016" / f"{image_id}.jpg")
        rows.append({"task": "mediaeval2016", "image": f"mediaeval2016/{image_id}.jpg", "caption": caption,
                     "label_in_data": label, "source": f"MediaEval 2016 post {post['post_id']}"})
    return rows


def main(out_dir: Path = HERE, mediaeval: Path = MEDIAEVAL_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in DRAWINGS.items():
        draw().save(out_dir / name, quality=85, optimize=True)
    rows = [{"task": task, "image": img, "caption": cap} for task, img, cap in EXAMPLES]
    rows += mediaeval_examples(mediaeval, out_dir)
    (out_dir / "examples.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} examples to {out_dir / 'examples.json'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mediaeval", type=Path, default=MEDIAEVAL_DIR, help="the MediaEval 2016 folder")
    main(mediaeval=parser.parse_args().mediaeval)
