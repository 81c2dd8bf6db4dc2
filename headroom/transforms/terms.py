"""Terms of the user's latest question, used to keep every item or line the question is about.

Why terms and not embeddings: matching must be deterministic, cheap (plain substring search)
and explainable. Identifiers, numbers and quoted phrases carry the signal ("order ORD-20417",
"test_refund_partial", "issue #4312"); English function words do not and are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from headroom.transforms.scan import Joined, Word, term_word

_STOPWORDS = frozenset(
    """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either else
    etc every few for from further get gets getting give given got had has have having he her
    here hers him his how however i if in into is it its itself just know let like look made
    make many may me might more most much must my need needs no nor not now of off on once
    one only or other our out over own please same see seem should show so some such tell
    than that the their them then there these they this those through to too try under until
    up us use used using very want was we were what when where which while who whom whose why
    will with within would yes yet you your find found list value values there's what's
    where's who's it's whats exactly currently actually right thing things something
    happened happen happening going via per
    """.split()
)

_QUOTED = re.compile(r"\"([^\"\n]{2,80})\"|'([^'\n]{2,80})'|`([^`\n]{2,80})`")
_TOKEN = re.compile(r"[\w][\w.\-/:@#]*[\w]|\w{2,}")
_NUMBER_PART = re.compile(r"\d{3,}")
# A command-line option ("-w", "--width"): the dash is what makes a one-letter option selective.
_OPTION = re.compile(r"(?<![\w\-])(-{1,2}[A-Za-z][\w\-]*)")


@dataclass(frozen=True)
class Terms:
    """The question's search terms, lower case; numbers only match as whole numbers."""

    words: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words)

    @property
    def scan_words(self) -> tuple[Word, ...]:
        return tuple(term_word(w) for w in self.words)

    @property
    def has_digits(self) -> bool:
        return any(c.isdigit() for w in self.words for c in w)

    def find(self, text: str) -> set[str]:
        """The set of terms occurring in ``text`` (case-insensitive)."""
        if not self.words:
            return set()
        return Joined([text]).texts_with(self.scan_words).get(0, set())


NO_TERMS = Terms()


def _is_number(term: str) -> bool:
    return term.replace(".", "").replace(",", "").isdigit()


def extract_terms(question: str, max_terms: int = 24) -> Terms:
    """Pick identifiers, numbers, quoted phrases and content words from ``question``."""
    if not question:
        return NO_TERMS
    found: list[str] = []
    for match in _QUOTED.finditer(question):
        phrase = next(g for g in match.groups() if g)
        found.append(phrase.strip().lower())
    for match in _OPTION.finditer(question):
        if len(match.group(1)) <= 3:  # longer ones are found as words below
            found.append(match.group(1).lower())
    for match in _TOKEN.finditer(question):
        token = match.group(0).lower().strip(".:/-#@")
        if not token or token in _STOPWORDS:
            continue
        if _is_number(token):
            if len(token) >= 2:
                found.append(token)
            continue
        if len(token) < 3 or token.isdigit():
            continue
        found.append(token)
        # "ORD-20417" should also find the bare number 20417 stored in another field.
        if not token.isalnum():
            found.extend(_NUMBER_PART.findall(token))
    unique: list[str] = []
    for term in found:
        if term and term not in unique:
            unique.append(term)
    unique = unique[:max_terms]
    if not unique:
        return NO_TERMS
    return Terms(tuple(unique))


_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)


def strip_reminders(text: str) -> str:
    """Drop Claude Code's injected ``<system-reminder>`` sections: they are not the question."""
    if "<system-reminder>" not in text:
        return text
    return _REMINDER.sub(" ", text)
