"""The storyteller's stories, told offline: a story about whatever subject it is given.

No model and no network. A story is one of a few plots with the subject woven through it; the
subject also picks the names, the town, the season and the weather (a SHA-256 of it seeds the
choice, so a subject gets the same story in every process, and two subjects mostly differ). The
plots never use a pronoun for the subject or the hero, nor start a sentence with the subject, so
"dragons", "a lost umbrella" and "my grandmother" all read right.
"""

from __future__ import annotations

import hashlib
import random
import re

__all__ = ["STORY", "story_subject", "tell"]

#: The story for a request without a subject ("tell me a story").
STORY = (
    "Once upon a time, in a city of glass towers and quiet gardens, there lived a small robot called "
    "Pim who collected forgotten words. Every morning Pim rolled through the market listening for "
    "words nobody used any more: lantern-maker, moonlit, hearthstone. It wrote each one on a paper "
    "slip and kept it in a tin box. One evening the box was full, and Pim wondered what the words "
    "would say if they were read together. So it climbed to the roof of the tallest tower, opened the "
    "tin, and let the wind carry the slips over the city. People looked up. A baker caught "
    "“hearthstone” and remembered her grandmother's kitchen. A boy caught “moonlit” and decided to "
    "walk home the long way. An old clockmaker caught “lantern-maker”, smiled, and lit the lamp in "
    "his window for the first time in years. By midnight the city glowed with small lights, and Pim "
    "understood that words are only forgotten until someone hands them back. The next morning it "
    "bought a bigger tin box, and started again, listening more carefully than ever, because now it "
    "knew what the words were for. The end."
)

_ASKED_ABOUT = re.compile(
    r"\b(?:story|stories|tale|fable)\s+(?:about|of|on|with|where|in which)\s+(?P<subject>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_ASKS_FOR_A_STORY = re.compile(r"\b(?:story|stories|tale|fable)\b", re.IGNORECASE)
_DETERMINER = re.compile(r"^(?:a|an|the|my|your|our|his|her|their|some|one|two|three)\s", re.IGNORECASE)
_INDEFINITE = re.compile(r"^(?:a|an|some|one)\s+", re.IGNORECASE)

PLOTS = (
    "Once upon a time, in {town}, there lived {name}, {role}. Everyone in {town} had a story about "
    "{subject}, and no two of those stories agreed: some said {the_subject} brought good luck, others "
    "that {the_subject} had better be left alone. {name} had never believed any of them. Then, one "
    "{season} evening, {weather}, {name} came across {the_subject} at last, right by {landmark}. "
    "Nothing was like the stories: it was all quieter, and stranger, and far more interesting. {name} "
    "stayed until the lamps were lit, and went home with more questions than answers. The next day "
    "{name} went back, and the day after that. Little by little the questions filled a notebook: the "
    "good days and the bad ones, the small surprises, the things nobody had bothered to notice about "
    "{the_subject}. When the notebook was full, {name} left it on a bench by {landmark} with a note: "
    "“For whoever comes next.” Some people laughed. But a few sat down and read, and each of them "
    "went looking for {the_subject} too, and came back with a story of their own. And that is why, "
    "to this day, nobody in {town} agrees about {the_subject}, and everybody is glad of it. The end.",
    "There was once a little town called {town}, where {name}, {role}, spent every spare moment "
    "wondering about {subject}. The oldest people in {town} said that {the_subject} could only be "
    "found beyond {far_place}. So one {season} morning {name} packed {supplies} and set off. The "
    "first day was easy. On the second, the road vanished under {weather_noun}, and {name} had to ask "
    "the way from {stranger}, who laughed and said: “Everyone who goes looking for {the_subject} "
    "finds something, just not always what they expected.” On the third day, tired and hungry, "
    "{name} sat down by {wayside} and very nearly gave up. And that is exactly where {the_subject} "
    "turned up: not beyond {far_place} at all, but right there, ordinary and wonderful at the same "
    "time. {name} stayed until sunset, taking it all in, and then walked home slowly. Back in {town}, "
    "everyone wanted to hear about the journey. {name} told them the truth: that {the_subject} had "
    "been close by all along, and that the long road had been worth it anyway, because without it "
    "nobody would have noticed. The end.",
    "Long ago, when {town} was still a village, {name} the {trade} kept a notebook of everything worth "
    "remembering. Most of its pages were about small things: {small_thing}, {other_small_thing}. But "
    "the last page stayed empty, saved for something special. It stayed empty for years, until the "
    "{season} when {subject} came to {town}. At first nobody knew what to make of {the_subject}. The "
    "children followed at a distance, and the grown-ups pretended to be busy. {name} watched for a "
    "whole week before writing a single word, because some things deserve to be looked at properly. "
    "Then one evening, {weather}, {name} opened the notebook and wrote about {the_subject}: how the "
    "streets had sounded different since, how neighbours who had not spoken for years stopped to "
    "wonder together, how even {grump} had smiled. When the page was full, {name} read it aloud in "
    "the square, and nobody interrupted. Years later, when the notebook had become the most borrowed "
    "book in the library of {town}, that last page was still the one people asked for first. The end.",
)

NAMES = ("Mara", "Tobias", "Ines", "Oskar", "Lena", "Yusuf", "Ada", "Felix", "Noor", "Emil")
TOWNS = ("Brindlewick", "Port Alder", "Hollowmere", "Saltcombe", "Ferndale", "Kestrel Bay")
ROLES = (
    "a baker who rose before the sun",
    "a ferry pilot with a patched blue coat",
    "a retired schoolteacher",
    "a clockmaker's apprentice",
    "a beekeeper who talked to the hives",
    "a letter carrier who knew every doorstep",
)
TRADES = ("baker", "clockmaker", "ferry pilot", "librarian", "beekeeper", "lamplighter")
#: Each season with weather that fits it: a clause, and a noun for what covers the road.
SEASONS = {
    "spring": (
        ("as the first warm rain began to fall", "with blossom drifting over the rooftops"),
        "a sudden spring flood",
    ),
    "summer": (("under a sky full of early stars", "while the heat still rose from the cobbles"), "drifting dust"),
    "autumn": (("while the wind rattled the shutters", "with fog rolling in from the water"), "a carpet of wet leaves"),
    "winter": (("as the snow began to settle", "under a hard, bright frost"), "fresh snow"),
}
LANDMARKS = ("the old stone bridge", "the well in the market square", "the harbour wall", "the bandstand in the park")
FAR_PLACES = ("the northern hills", "the salt marshes", "the forest of tall pines", "the seven bridges")
SUPPLIES = (
    "a flask of tea, a map and far too many sandwiches",
    "a rucksack, a torch and a notebook",
    "an umbrella and a bag of apples",
)
STRANGERS = ("a shepherd with a crackling radio", "an old woman selling apples", "a lost tourist with a very large map")
WAYSIDES = ("a crooked milestone", "an abandoned railway halt", "a lonely crossroads", "a stream too wide to jump")
SMALL_THINGS = (
    "the first swallow of the year",
    "the smell of bread at dawn",
    "a neighbour's laugh through an open window",
    "the winter the river froze",
    "a lost glove, returned",
)
GRUMPS = ("the grumpy harbour master", "the mayor's bad-tempered goat", "old Mr Pennick, who never smiled")


def story_subject(message: str) -> str | None:
    """What the story ``message`` asks for is about.

    "Tell me a story about a dragon" and "a dragon" give "a dragon"; a request without a subject
    ("tell me a story") gives ""; a question that asks for no story ("what can you do?") gives None.
    """
    text = " ".join(message.split())
    asked = _ASKED_ABOUT.search(text)
    if asked:
        return _clean(asked["subject"])
    if _ASKS_FOR_A_STORY.search(text):
        return ""
    if text.endswith("?"):
        return None
    return _clean(text)


def _clean(subject: str) -> str:
    subject = subject.strip().rstrip(".!?…").strip().strip("\"'“”‘’«»").strip()
    # "A dragon" as typed at the start of a message is "a dragon" inside a sentence; "Paris" stays.
    if _DETERMINER.match(subject):
        subject = subject[0].lower() + subject[1:]
    return subject


def tell(subject: str) -> str:
    """The story about ``subject`` (the default story when it is empty), with its title line."""
    if not subject:
        return "Here is one of my favourites.\n\n" + STORY
    seed = int.from_bytes(hashlib.sha256(subject.lower().encode()).digest()[:8], "big")
    rng = random.Random(seed)
    season = rng.choice(list(SEASONS))
    weathers, weather_noun = SEASONS[season]
    small_things = rng.sample(SMALL_THINGS, 2)
    the_subject = _INDEFINITE.sub("the ", subject)
    story = rng.choice(PLOTS).format(
        subject=subject,
        the_subject=the_subject,
        name=rng.choice(NAMES),
        town=rng.choice(TOWNS),
        role=rng.choice(ROLES),
        trade=rng.choice(TRADES),
        season=season,
        weather=rng.choice(weathers),
        weather_noun=weather_noun,
        landmark=rng.choice(LANDMARKS),
        far_place=rng.choice(FAR_PLACES),
        supplies=rng.choice(SUPPLIES),
        stranger=rng.choice(STRANGERS),
        wayside=rng.choice(WAYSIDES),
        small_thing=small_things[0],
        other_small_thing=small_things[1],
        grump=rng.choice(GRUMPS),
    )
    return f"A story about {subject}.\n\n{story}"
