"""A phonetically balanced English sentence generator: templates filled from word lists chosen to
cover every ARPAbet phone (including the rare ones: ZH, OY, UH, TH, DH, NG, AW) in many contexts."""
from __future__ import annotations

import random

_NOUNS = (
    "boy voice book wood house mouth vision measure treasure thumb thing father mother brother judge "
    "chair church cheese sheep ship shoe moon blue food juice pool wolf foot cook hook sugar garage "
    "beige leisure pleasure usual bridge page job jar girl bird word earth nurse purple turtle king "
    "song ring singer finger bank map lamp bomb plum apple bubble baby maple zebra zoo rose nose "
    "fox box sock rock watch dog frog log hawk law saw yard yacht year young yellow ocean nation "
    "table paper water butter letter weather feather leather theatre path bath month mouse cow owl "
    "oil coin toy point joy noise boat goat coat road phone photo fish five fever valve vest oven "
    "glove wave knife leaf lion island eye pie tiger violin window pillow meadow village valley"
).split()
_ADJECTIVES = (
    "big small quiet loud happy angry brave busy cheap early easy empty fresh gentle heavy huge "
    "lazy lucky merry modest narrow noisy odd orange pale proud purple rough round shiny smooth "
    "soft thick thin tiny ugly useful vivid warm wise young golden woolen frozen hollow"
).split()
_VERBS_PAST = (
    "bought brought caught fought thought taught pushed pulled moved loved joined judged measured "
    "watched washed touched reached chose froze threw grew drew knew found bound wound shouted "
    "showed opened closed boiled spoiled annoyed enjoyed visited fixed mixed hugged dragged "
    "grabbed robbed dropped stopped jumped bumped helped kept swept slept"
).split()
_PREPOSITIONS = "above below behind beside beneath under over near through toward with without".split()
_NAMES = "Mary Paul Judy George Thomas Ruth Vivian Bob Maggie Joshua Sophie Oliver Zoe Hugo Martha".split()
_ADVERBS = "quickly slowly happily usually rarely easily very badly boldly smoothly".split()
_NUMBERS = "one two three four five six seven eight nine ten eleven twelve twenty thirty hundred".split()

_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun2}.",
    "{name} {verb} a {adj} {noun} {prep} the {noun2}.",
    "Did {name} see the {noun} {prep} the {adj} {noun2}?",
    "{number} {adj} {noun}s were {adv} {verb} by {name}.",
    "Please put the {noun} {prep} the {noun2}, {name}.",
    "I think the {noun} is {adv} {adj}, but the {noun2} is not.",
    "Why would {name} {verb_base} {number} {noun}s?",
    "{name} and {name2} {verb} the {adj} {noun} on the {noun2}.",
    "Thank you for calling about the {adj} {noun}.",
    "Press {number} to hear the {noun} again, or hang up now.",
    "Oh, the {noun} {adv} {verb} my {adj} {noun2}!",
    "We measured {number} {noun}s with a usual {adj} {noun2}.",
)


def _base(verb_past: str) -> str:
    """Not a real lemmatiser: a plausible present-tense word is all the phonetics needs."""
    return verb_past[:-2] if verb_past.endswith("ed") else verb_past


def sentences(count: int, seed: int) -> list[str]:
    """`count` sentences, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        verb = rng.choice(_VERBS_PAST)
        words = {
            "adj": rng.choice(_ADJECTIVES),
            "noun": rng.choice(_NOUNS),
            "noun2": rng.choice(_NOUNS),
            "verb": verb,
            "verb_base": _base(rng.choice(_VERBS_PAST)),
            "prep": rng.choice(_PREPOSITIONS),
            "name": rng.choice(_NAMES),
            "name2": rng.choice(_NAMES),
            "adv": rng.choice(_ADVERBS),
            "number": rng.choice(_NUMBERS),
        }
        text = rng.choice(_TEMPLATES).format(**words)
        out.append(text[0].upper() + text[1:])
    return out
