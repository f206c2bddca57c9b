"""Proposed titles for suggested card groups.

This module owns the wording side of clustering: it tokenises English and
Russian cards, folds inflected forms together with a deliberately crude suffix
stripper, and names a group by its most characteristic terms (frequent inside
the group, rare in the rest of the workshop, a TF-IDF-like score), preferring
two-word phrases and the cards' own word order: "Joint investigation team",
"Asset declarations, electronic, data". Titles have two to four words in the
group's majority script; a facilitator accepts or renames them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[^\W\d_][\w'’-]*[^\W_]")
# Two words make a phrase candidate only if no punctuation separates them.
_PHRASE_BREAK = re.compile(r"([.,;:!?()\[\]«»\"“”/]+)")
_SENTENCE_END = re.compile(r"[.!?]")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


def _wordset(words: str) -> frozenset[str]:
    # Word lists are easier to read and edit as text than as 200 quoted items.
    return frozenset(words.split())


_STOP_EN = _wordset(
    """
    a about above after again against all also an and any are as at be because been before
    being below between both but by can could did do does doing done down during each every
    few for from further had has have having he her here how i if in into is it its itself
    just many may me more most much must my need needed needs no nobody nor not now of off
    often on once one only or other our out over own per same several she should so some
    such than that the their them then there these they this those three through to too two
    under until up upon us very was we were what when where which while who whom why will
    with within without would you your day days week weeks month months year years first
    last new make made makes get got use used using work worked works working start started
    help helped helps better best well way ways lot less least put kept keep able instead
    rather even still ever never already since whether part case cases
    """
)
_STOP_RU = _wordset(
    """
    а без более больше бы был была были было быть в вам вас весь во вместо вот все всё всех
    вы где да даже для до его её ей если есть ещё же за здесь и из или им их к как какой
    когда кто ли либо между мы на над надо нам нас наш не него нет ни них но нужно о об один
    одна одно одном однако он она они оно от очень по под после при про раз с сам сама сами
    свои своим своей своих себя со стал стала стали так также там те тем то того тоже только
    том тот у уже чем через что чтобы эта эти это этот я должны должен можно нельзя пока
    которые который которая которым которых каждый несколько помог помогли позволил
    позволила позволили заранее дни дней недель месяцев лет год
    """
)
_STOP = _STOP_EN | _STOP_RU

# Longest first, so "ations" wins over "s" and "ями" over "и".
_SUFFIXES_EN = ("ations", "ation", "ments", "ment", "ings", "ing", "ers", "er", "ed", "es", "s")
_SUFFIXES_RU = tuple(
    sorted(
        _wordset(
            """
            иями ями ами ого его ому ему ыми ими ых их ой ей ий ый ая яя ое ее ом ем
            ов ев ах ях ам ям ию ия ие ии ью а я о е и ы у ю ь й
            """
        ),
        key=lambda suffix: (-len(suffix), suffix),
    )
)
_MIN_STEM = 4
MAX_TERMS = 3
MIN_WORDS = 2
MAX_WORDS = 4
PHRASE_BONUS = 1.5


def stem(word: str) -> str:
    """Fold inflections ("declarations"/"declared", "оружия"/"оружие") into one key.

    Not linguistics: a single suffix strip that keeps at least four letters is
    enough to merge the forms a dozen cards use, and it never needs a lexicon.
    """
    low = word.lower().replace("ё", "е")
    suffixes = _SUFFIXES_RU if _CYRILLIC.search(low) else _SUFFIXES_EN
    for suf in suffixes:
        if low.endswith(suf) and len(low) - len(suf) >= _MIN_STEM:
            return low[: -len(suf)]
    return low


def runs(text: str) -> list[list[tuple[str, str]]]:
    """Maximal runs of adjacent content words as (stem, spelling) pairs.

    Punctuation and stop words end a run, so only words that really stand
    next to each other in the card can later form a phrase.
    """
    out: list[list[tuple[str, str]]] = []
    # split() with a group alternates phrases and the punctuation between them.
    parts = _PHRASE_BREAK.split(text)
    for n in range(0, len(parts), 2):
        words = _WORD.findall(parts[n])
        if words and (n == 0 or _SENTENCE_END.search(parts[n - 1])) and words[0].istitle():
            # A capital that only marks the start of a title or sentence is
            # not part of the word: "Protect" is "protect", unless some card
            # writes it capitalised mid-sentence (then that spelling wins).
            words[0] = words[0].lower()
        run: list[tuple[str, str]] = []
        for word in words:
            if len(word) >= 3 and word.lower() not in _STOP:
                run.append((stem(word), word))
            else:
                out.append(run)
                run = []
        out.append(run)
    return [r for r in out if r]


def terms(card_runs: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """(key, spelling) of each content word and of each pair of adjacent ones.

    Pairs let a title read "asset declarations" instead of two loose words;
    their key is the two stems.
    """
    out = []
    for run in card_runs:
        out.extend(run)
        pairs = zip(run, run[1:], strict=False)
        out.extend((f"{a} {b}", f"{sa} {sb}") for (a, sa), (b, sb) in pairs)
    return out


def _as_phrase(keys: list[str], group_runs: list[list[list[tuple[str, str]]]]) -> str | None:
    """The chosen terms as one phrase if some card writes them side by side.

    "investigation", "joint", "team" read better as "joint investigation team",
    in the order and spelling of the first card that uses them together.
    """
    if len(keys) < 2:
        return None
    wanted = [part for key in keys for part in key.split(" ")]
    for card_runs in group_runs:
        for run in card_runs:
            for k in range(len(run) - len(wanted) + 1):
                window = run[k : k + len(wanted)]
                if sorted(st for st, _ in window) == sorted(wanted):
                    return " ".join(spelling for _, spelling in window)
    return None


def is_cyrillic(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return sum(1 for c in letters if _CYRILLIC.match(c)) * 2 > len(letters)


def _display(forms: Counter[str]) -> str:
    """Most used spelling; "Europol" keeps its capital, "Training" does not.

    A capitalised spelling is kept only if it is the only one and used more
    than once: a word seen once with a capital probably just starts a body.
    """
    best = min(forms, key=lambda f: (-forms[f], f))
    capitalised = best[:1].isupper() and best[1:] == best[1:].lower()
    if capitalised and (len(forms) > 1 or forms[best] < 2):
        return best.lower()
    return best


def propose_titles(groups: Sequence[Sequence[int]], texts: Sequence[str]) -> list[str]:
    """One title per group; ``groups`` hold indices into ``texts`` (the whole workshop).

    Document frequencies over all of ``texts`` make words that every card
    shares ("police", "training") lose to the ones that set a group apart.
    """
    runs_of = [runs(t) for t in texts]
    terms_of = [terms(r) for r in runs_of]
    df_all: Counter[str] = Counter()
    for card in terms_of:
        df_all.update({key for key, _ in card})
    cyrillic_card = [is_cyrillic(t) for t in texts]
    titles = []
    for group in groups:
        # Name the group in the language most of its cards are written in; a
        # title mixing "оружие" and "firearms" reads worse than either.
        cyrillic = sum(cyrillic_card[i] for i in group) * 2 > len(group)
        df_group: Counter[str] = Counter()
        forms: dict[str, Counter[str]] = {}
        for i in group:
            mine = [(k, sp) for k, sp in terms_of[i] if bool(_CYRILLIC.match(sp)) == cyrillic]
            for key, spelling in mine:
                forms.setdefault(key, Counter())[spelling] += 1
            df_group.update({key for key, _ in mine})
        keys = _pick(df_group, df_all, len(group), len(texts))
        title = _as_phrase(keys, [runs_of[i] for i in group])
        if title is None:
            title = ", ".join(_display(forms[key]) for key in keys)
        if not title and group:
            # Nothing but stop words or digits: quote the start of the first card.
            title = " ".join(texts[group[0]].split()[:MAX_WORDS])
        title = title or "Group"
        titles.append(title[0].upper() + title[1:] if title[:1].islower() else title)
    return titles


def _pick(df_group: Counter[str], df_all: Counter[str], n_group: int, n_all: int) -> list[str]:
    """Best-scoring term keys, no stem twice, at most MAX_TERMS terms / MAX_WORDS words."""

    def score(key: str) -> float:
        idf = math.log((n_all + 1) / (df_all[key] + 1))
        # A phrase shared by two cards says more than either word shared by
        # three: "asset declarations" over "declarations", "electronic".
        bonus = PHRASE_BONUS if " " in key else 1.0
        return bonus * df_group[key] / n_group * idf

    # A term from a single card describes that card, not the group: such terms
    # only fill in when the shared ones give fewer than MIN_WORDS words.
    def ranked(keys: list[str]) -> list[str]:
        return sorted(keys, key=lambda k: (-score(k), -len(k), k))

    shared = ranked([k for k in df_group if df_group[k] >= 2])
    # Only single words: a pair from one card is that card's phrase, not a theme.
    single = ranked([k for k in df_group if df_group[k] < 2 and " " not in k])
    chosen: list[str] = []
    used: set[str] = set()
    n_words = 0
    for n, key in enumerate(shared + single):
        if n >= len(shared) and n_words >= MIN_WORDS:
            break
        parts = set(key.split(" "))
        if parts & used or n_words + len(parts) > MAX_WORDS:
            continue
        chosen.append(key)
        used |= parts
        n_words += len(parts)
        if len(chosen) == MAX_TERMS or n_words == MAX_WORDS:
            break
    return chosen
