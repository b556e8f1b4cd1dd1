"""The local server's knowledge base: topics it answers the same way every time.

A prompt mentioning one of a topic's aliases (and no speculation marker) gets the topic's facts verbatim,
whatever the temperature, seed or sample index: these are the "consistent" answers consistency checks should
not flag. Two sources, matched in this order:
1. the product knowledge base of `aiobs generate` (`generate/scenario.py` TOPICS), so the demo's generated
   questions get their true fact: each question alone selects the fact that answers it, and a topic's title
   (e.g. "webhooks") selects all of its facts;
2. a few general-knowledge topics below (real, short facts, usable as evidence in fact-checking demos).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from aiobs_pipeline.generate.scenario import TOPICS as SCENARIO_TOPICS


@dataclass(frozen=True)
class Topic:
    """One topic: a name, lower-case alias phrases that select it, and the facts the server answers with."""

    name: str
    aliases: tuple[str, ...]
    facts: tuple[str, ...]

    @property
    def answer(self) -> str:
        """The full consistent answer: the facts joined into one paragraph."""
        return " ".join(self.facts)


GENERAL_TOPICS: tuple[Topic, ...] = (
    Topic(
        "Eiffel Tower",
        ("eiffel tower", "eiffel"),
        (
            "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
            "It was completed in 1889 for the Exposition Universelle.",
            "It was designed by the engineering company of Gustave Eiffel.",
            "The tower is 330 metres tall including its antennas.",
        ),
    ),
    Topic(
        "Mount Everest",
        ("mount everest", "everest"),
        (
            "Mount Everest is the highest mountain above sea level.",
            "Its summit is 8849 metres high.",
            "It lies on the border between Nepal and China in the Himalayas.",
            "Tenzing Norgay and Edmund Hillary made the first confirmed ascent in 1953.",
        ),
    ),
    Topic(
        "Python",
        ("python programming", "python language", "python"),
        (
            "Python is a high-level, general-purpose programming language.",
            "It was created by Guido van Rossum and first released in 1991.",
            "Python uses indentation to delimit code blocks.",
        ),
    ),
    Topic(
        "Apollo 11",
        ("apollo 11", "moon landing", "first moon landing"),
        (
            "Apollo 11 was the first crewed mission to land on the Moon.",
            "It landed on 20 July 1969.",
            "Neil Armstrong and Buzz Aldrin walked on the Moon while Michael Collins orbited in the command module.",
        ),
    ),
    Topic(
        "Water",
        ("boiling point of water", "water boil", "freezing point of water"),
        (
            "At standard sea-level pressure, pure water boils at 100 degrees Celsius.",
            "It freezes at 0 degrees Celsius.",
        ),
    ),
    Topic(
        "Speed of light",
        ("speed of light",),
        (
            "The speed of light in vacuum is exactly 299792458 metres per second.",
            "Light takes about 8 minutes to travel from the Sun to the Earth.",
        ),
    ),
    Topic(
        "Amazon River",
        ("amazon river",),
        (
            "The Amazon River in South America is the largest river in the world by discharge.",
            "It flows through Peru, Colombia and Brazil into the Atlantic Ocean.",
            "It is about 6400 kilometres long.",
        ),
    ),
    Topic(
        "Photosynthesis",
        ("photosynthesis",),
        (
            "Photosynthesis is the process by which plants, algae and some bacteria turn light into chemical energy.",
            "It uses carbon dioxide and water and releases oxygen.",
            "In plants it takes place in the chloroplasts.",
        ),
    ),
    Topic(
        "Great Wall of China",
        ("great wall",),
        (
            "The Great Wall of China is a series of fortifications built across northern China.",
            "Its best-known sections were built during the Ming dynasty.",
            "All of its branches together measure about 21196 kilometres.",
        ),
    ),
)


@cache
def knowledge_base() -> tuple[Topic, ...]:
    """Every topic in match order: generated-product questions, generated-product titles, general topics."""
    questions = [
        Topic(f"{topic.title}: {question}", (" ".join(question.lower().rstrip("?").split()),), (topic.facts[fact],))
        for topic in SCENARIO_TOPICS
        for question, fact in topic.questions
    ]
    titles = [Topic(topic.title, (topic.title.lower(),), tuple(topic.facts)) for topic in SCENARIO_TOPICS]
    return (*questions, *titles, *GENERAL_TOPICS)


def find_topic(text: str) -> Topic | None:
    """The first topic (in knowledge_base() order) one of whose aliases occurs in text, case-insensitively."""
    lowered = " ".join(text.lower().split())
    for topic in knowledge_base():
        if any(alias in lowered for alias in topic.aliases):
            return topic
    return None
