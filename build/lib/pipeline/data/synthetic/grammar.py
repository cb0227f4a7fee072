"""A caption grammar for synthetic scenes, with a meaning that can be checked.

Each caption comes with a ``Meaning`` (objects mentioned, relations between them, an exact
count, a region, a background), and ``satisfies(scene, meaning)`` says whether a scene
makes the caption true under a loose, natural reading ("above" = higher by a margin). The
dataset builder uses it to make every test caption true of its own scene and of no other.

Word order carries meaning: "a red circle above a blue square" and "a blue circle above a
red square" have the same words. Template and synonym choices depend only on the random
stream and the scene's layout, never on colours, so a scene and its colour-swapped twin get
captions with identical bags of words.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from pipeline.data.synthetic.scenes import INVERSE, Scene

SHAPE_WORDS = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
    "hexagon": ("hexagon",),
}
COLOUR_WORDS = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "orange": ("orange",),
    "white": ("white",),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
RELATION_WORDS = {
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
}
BACKGROUND_WORDS = {
    "plain": ("on a plain background", "on a flat background"),
    "gradient": ("on a gradient background", "on a shaded background"),
    "striped": ("on a striped background", "on stripes"),
    "checkered": ("on a checkered background", "on a checkerboard"),
    "speckled": ("on a speckled background", "on a noisy background"),
}
REGION_WORDS = {
    "top left": ("in the top left corner", "at the top left"),
    "top right": ("in the top right corner", "at the top right"),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
    "left": ("on the left", "on the left side"),
    "right": ("on the right", "on the right side"),
    "centre": ("in the centre", "in the middle"),
}
MARGIN = 0.1  # how much higher "above" must be, as a fraction of the image


@dataclasses.dataclass(frozen=True)
class Meaning:
    mentions: tuple[tuple[str, str, str | None], ...]  # (shape, colour, size or None)
    relations: tuple[tuple[int, str, int], ...] = ()  # (mention, relation, mention)
    exact_count: int | None = None
    region: str | None = None  # where mention 0 is
    background: str | None = None


def _holds(scene: Scene, a: int, relation: str, b: int) -> bool:
    oa, ob = scene.objects[a], scene.objects[b]
    return {
        "above": oa.y < ob.y - MARGIN,
        "below": oa.y > ob.y + MARGIN,
        "left_of": oa.x < ob.x - MARGIN,
        "right_of": oa.x > ob.x + MARGIN,
    }[relation]


def _in_region(x: float, y: float, region: str) -> bool:
    checks = {"top": y < 0.5, "bottom": y > 0.5, "left": x < 0.5, "right": x > 0.5}
    if region == "centre":
        return abs(x - 0.5) < 0.2 and abs(y - 0.5) < 0.2
    return all(checks[part] for part in region.split())


def satisfies(scene: Scene, meaning: Meaning) -> bool:
    """True when some assignment of mentioned objects to scene objects makes the caption true."""
    if meaning.exact_count is not None and len(scene.objects) != meaning.exact_count:
        return False
    if meaning.background is not None and scene.background != meaning.background:
        return False
    for assignment in itertools.permutations(range(len(scene.objects)), len(meaning.mentions)):
        objects = [scene.objects[i] for i in assignment]
        if any(
            o.shape != s or o.colour != c or (z is not None and o.size != z)
            for o, (s, c, z) in zip(objects, meaning.mentions)
        ):
            continue
        if meaning.region is not None and not _in_region(objects[0].x, objects[0].y, meaning.region):
            continue
        if all(_holds(scene, assignment[a], rel, assignment[b]) for a, rel, b in meaning.relations):
            return True
    return False


class _Phrasing:
    """Word choices drawn from a random stream that never looks at colours or shapes."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def _noun_phrase(obj, say_size: bool, phr: _Phrasing, article: str | None = "a") -> tuple[str, str | None]:
    size_word = phr.pick(SIZE_WORDS[obj.size])
    colour_word = phr.pick(COLOUR_WORDS[obj.colour])
    shape_word = phr.pick(SHAPE_WORDS[obj.shape])
    words = f"{size_word + ' ' if say_size else ''}{colour_word} {shape_word}"
    if article == "a":
        words = f"{_article(words)} {words}"
    elif article:
        words = f"{article} {words}"
    return words, obj.size if say_size else None


def _short(obj, phr: _Phrasing) -> str:
    """A definite reference to an already mentioned object."""
    return f"the {phr.pick(COLOUR_WORDS[obj.colour])} {phr.pick(SHAPE_WORDS[obj.shape])}"


def caption(scene: Scene, rng: np.random.Generator, template: int | None = None) -> tuple[str, Meaning]:
    """One caption of ``scene`` and its meaning; ``template`` picks a construction."""
    phr = _Phrasing(rng)
    objs = scene.objects
    say_size = [phr.coin(0.4) for _ in objs]
    background = scene.background if phr.coin(0.25) else None
    nps = [_noun_phrase(o, s, phr) for o, s in zip(objs, say_size)]
    sizes = [z for _, z in nps]
    mentions = tuple((o.shape, o.colour, z) for o, z in zip(objs, sizes))
    rel = RELATION_WORDS

    if len(objs) == 1:
        (np0, _), obj = nps[0], objs[0]
        bare = np0.split(" ", 1)[1]
        region = obj.region if phr.coin(0.7) else None
        where = f" {phr.pick(REGION_WORDS[region])}" if region else ""
        forms = [
            f"a single {bare}{where}",
            f"just one {bare}{where}",
            f"{np0} on its own{where}",
            f"only {np0}{where}",
        ]
        if region:
            forms.append(f"{phr.pick(REGION_WORDS[region])} there is a single {bare}")
        text = forms[template % len(forms) if template is not None else int(phr.rng.integers(len(forms)))]
        meaning = Meaning(mentions, exact_count=1, region=region)
    elif len(objs) == 2:
        r = scene.relation(0, 1)
        (a, _), (b, _) = nps
        r_word, inv_word = phr.pick(rel[r]), phr.pick(rel[INVERSE[r]])
        forms = [
            (f"{a} {r_word} {b}", [(0, r, 1)]),
            (f"{b} {inv_word} {a}", [(1, INVERSE[r], 0)]),
            (f"there is {a} {r_word} {b}", [(0, r, 1)]),
            (f"{a} is {r_word} {b}", [(0, r, 1)]),
            (f"{r_word} {b} there is {a}", [(0, r, 1)]),
            (f"{b} with {a} {r_word} it", [(0, r, 1)]),
            (f"{a} and {b} , {_short(objs[0], phr)} is {r_word} {_short(objs[1], phr)}", [(0, r, 1)]),
            (f"two shapes : {b} and {a} {r_word} it", [(0, r, 1)]),
        ]
        text, relations = forms[template % len(forms) if template is not None else int(phr.rng.integers(len(forms)))]
        meaning = Meaning(mentions, relations=tuple(relations))
    else:
        (a, _), (b, _), (c, _) = nps
        if scene.layout in ("row", "column"):
            r = "left_of" if scene.layout == "row" else "above"
            order = "from left to right" if scene.layout == "row" else "from top to bottom"
            r_word = phr.pick(rel[r])
            forms = [
                f"{a} , {b} and {c} {order}",
                f"{order} : {a} , {b} and {c}",
                f"{a} {r_word} {b} , which is {r_word} {c}",
                f"{b} with {a} {r_word} it and {c} {phr.pick(rel[INVERSE[r]])} it",
                f"three shapes {order} : {a} , then {b} , then {c}",
            ]
            relations = ((0, r, 1), (1, r, 2))
        else:  # corner: 0 above 1, 2 beside 1
            side = scene.relation(2, 1)
            above, beside = phr.pick(rel["above"]), phr.pick(rel[side])
            forms = [
                f"{a} {above} {b} , and {c} {beside} {_short(objs[1], phr)}",
                f"{b} with {a} {above} it and {c} {beside} it",
                f"{c} {beside} {b} , and {a} {above} {_short(objs[1], phr)}",
                f"there is {b} , {a} {above} it and {c} {beside} it",
            ]
            relations = ((0, "above", 1), (2, side, 1))
        text = forms[template % len(forms) if template is not None else int(phr.rng.integers(len(forms)))]
        meaning = Meaning(mentions, relations=relations)

    if background:
        text = f"{text} {phr.pick(BACKGROUND_WORDS[background])}"
        meaning = dataclasses.replace(meaning, background=background)
    return " ".join(text.split()), meaning


def captions(scene: Scene, seed: int, count: int = 3) -> list[tuple[str, Meaning]]:
    """``count`` captions from distinct constructions where the scene's layout has enough."""
    rng = np.random.default_rng(seed)
    templates = rng.permutation(8)
    out = []
    for i in range(count):
        out.append(caption(scene, np.random.default_rng([seed, i]), template=int(templates[i])))
    return out
