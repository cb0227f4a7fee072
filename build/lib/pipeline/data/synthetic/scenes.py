"""Synthetic scenes: one to three coloured shapes on a varied background, and their rendering.

A scene is pure data (``Scene``); ``render_scene`` draws it with PIL. Object placement
keeps every spatial relation a caption may state unambiguous: two objects related
"above" differ clearly in height and little in width.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
SIZES = {"small": 0.085, "large": 0.16}  # radius as a fraction of the image side
BACKGROUNDS = ("plain", "gradient", "striped", "checkered", "speckled")
# Relations between object a and object b, by the axis they are read on.
RELATIONS = ("above", "below", "left_of", "right_of")
INVERSE = {"above": "below", "below": "above", "left_of": "right_of", "right_of": "left_of"}
LAYOUTS = {1: ("single",), 2: ("vertical", "horizontal"), 3: ("row", "column", "corner")}


@dataclasses.dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the image width
    y: float  # centre, as a fraction of the image height (0 = top)

    @property
    def region(self) -> str:
        """Where a lone object sits, in words a caption can use."""
        col = "left" if self.x < 0.4 else "right" if self.x > 0.6 else ""
        row = "top" if self.y < 0.4 else "bottom" if self.y > 0.6 else ""
        return f"{row} {col}".strip() or "centre"


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    layout: str
    background: str
    background_colours: tuple[tuple[int, int, int], tuple[int, int, int]]

    def relation(self, a: int, b: int) -> str | None:
        """The relation of object a to object b along the dominant axis, if clear."""
        oa, ob = self.objects[a], self.objects[b]
        dx, dy = oa.x - ob.x, oa.y - ob.y
        if abs(dy) > 1.5 * abs(dx) and abs(dy) > 0.2:
            return "above" if dy < 0 else "below"
        if abs(dx) > 1.5 * abs(dy) and abs(dx) > 0.2:
            return "left_of" if dx < 0 else "right_of"
        return None


def _sample_background(rng: np.random.Generator, object_colours) -> tuple:
    """Two muted background colours far enough from every object colour to stay visible."""
    for _ in range(100):
        base = rng.integers(60, 200, size=3)
        other = np.clip(base + rng.integers(-50, 50, size=3), 30, 225)
        if all(
            np.abs(base - np.array(COLOURS[c])).sum() > 150 and np.abs(other - np.array(COLOURS[c])).sum() > 150
            for c in object_colours
        ):
            return tuple(int(v) for v in base), tuple(int(v) for v in other)
    return (128, 128, 128), (100, 100, 100)


def _positions(layout: str, radii: list[float], rng: np.random.Generator) -> list[tuple[float, float]]:
    jitter = lambda scale=0.04: float(rng.uniform(-scale, scale))  # noqa: E731
    if layout == "single":
        r = radii[0]
        return [(float(rng.uniform(r + 0.05, 1 - r - 0.05)), float(rng.uniform(r + 0.05, 1 - r - 0.05)))]
    if layout in ("vertical", "horizontal"):
        gap = 0.32 + float(rng.uniform(0, 0.14))
        centre = 0.5 + jitter(0.1)
        first = 0.5 - gap / 2 + jitter()
        pairs = [(centre + jitter(), first), (centre + jitter(), first + gap)]
        if layout == "horizontal":
            pairs = [(y, x) for x, y in pairs]
        return pairs
    if layout in ("row", "column"):
        centre = 0.5 + jitter(0.08)
        coords = [(centre + jitter(0.03), 0.18 + i * 0.32 + jitter(0.03)) for i in range(3)]
        return [(y, x) for x, y in coords] if layout == "row" else coords
    # corner: object 0 above object 1, object 2 beside object 1
    x1, y1 = 0.3 + jitter(0.05), 0.72 + jitter(0.04)
    side = 1 if rng.random() < 0.5 else -1
    if side < 0:
        x1 = 1 - x1
    return [(x1 + jitter(0.03), 0.25 + jitter(0.04)), (x1, y1), (x1 + side * 0.42 + jitter(0.03), y1 + jitter(0.03))]


def sample_scene(rng: np.random.Generator) -> Scene:
    count = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
    layout = str(rng.choice(LAYOUTS[count]))
    kinds = set()
    specs = []
    while len(specs) < count:  # distinct colour+shape pairs so captions can name each object
        spec = (str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))))
        if spec[:2] not in kinds:
            kinds.add(spec[:2])
            specs.append(spec)
    radii = [SIZES[size] for _, _, size in specs]
    centres = _positions(layout, radii, rng)
    objects = tuple(
        SceneObject(shape, colour, size, float(x), float(y)) for (shape, colour, size), (x, y) in zip(specs, centres)
    )
    background = str(rng.choice(BACKGROUNDS))
    return Scene(objects, layout, background, _sample_background(rng, [o.colour for o in objects]))


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n, radius_fn, offset=0.0):
        return [
            (
                cx + radius_fn(i) * math.cos(offset + angle + 2 * math.pi * i / n),
                cy + radius_fn(i) * math.sin(offset + angle + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]

    if shape == "square":
        return ring(4, lambda i: r * 1.2, math.pi / 4)
    if shape == "triangle":
        return ring(3, lambda i: r * 1.25, -math.pi / 2)
    if shape == "diamond":
        return [(cx, cy - r * 1.3), (cx + r * 0.85, cy), (cx, cy + r * 1.3), (cx - r * 0.85, cy)]
    if shape == "hexagon":
        return ring(6, lambda i: r * 1.1)
    if shape == "star":
        return ring(10, lambda i: r * 1.3 if i % 2 == 0 else r * 0.55, -math.pi / 2)
    if shape == "cross":
        w, h = r * 0.38, r * 1.2
        return [
            (cx - w, cy - h),
            (cx + w, cy - h),
            (cx + w, cy - w),
            (cx + h, cy - w),
            (cx + h, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + h),
            (cx - w, cy + h),
            (cx - w, cy + w),
            (cx - h, cy + w),
            (cx - h, cy - w),
            (cx - w, cy - w),
        ]
    raise ValueError(shape)


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    a, b = (np.array(c, np.float32) for c in scene.background_colours)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if scene.background == "plain":
        mix = np.zeros((size, size))
    elif scene.background == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        mix = np.cos(angle) * xx + np.sin(angle) * yy
        mix = (mix - mix.min()) / (np.ptp(mix) + 1e-6)
    elif scene.background == "striped":
        period = rng.uniform(0.08, 0.2)
        mix = ((xx + yy * rng.choice([0, 1])) / period % 1.0 > 0.5).astype(np.float32)
    elif scene.background == "checkered":
        period = rng.uniform(0.1, 0.25)
        mix = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    else:  # speckled
        mix = (rng.random((size, size)) > 0.8).astype(np.float32)
    return a[None, None, :] * (1 - mix[..., None]) + b[None, None, :] * mix[..., None]


def render_scene(scene: Scene, size: int, rng: np.random.Generator, supersample: int = 2) -> Image.Image:
    """Draws the scene at ``size``×``size`` with antialiasing and light pixel noise."""
    big = size * supersample
    canvas = Image.fromarray(_background(scene, big, rng).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[obj.colour])
        r = SIZES[obj.size] * big * float(rng.uniform(0.9, 1.1))
        cx, cy = obj.x * big, obj.y * big
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, r, float(rng.uniform(-0.15, 0.15))), fill=colour)
    image = canvas.resize((size, size), Image.LANCZOS)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 8), size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
