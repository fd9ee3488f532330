"""Builtin ``truth``: short true/false statements from fixed templates, generated offline and deterministically.

Every template enumerates all of its candidate statements (true and false) over a small fixed domain; from each
template the same number of true and false statements is kept — ``min(QUOTA, #true, #false)`` of each — so the
classes are balanced within every template (a probe cannot read the label off the template) and overall. Which
candidates are kept is decided by the sha256 of ``"{seed}:{statement}"`` (smallest digests first), not by a random
number generator, so the set is byte-identical across runs, platforms and Python/numpy versions.

Templates (``template`` column; true when ...):

* ``greater``: "71 is greater than 12." (a > b, 0 <= a, b < 100, a != b)
* ``less``: "12 is less than 71." (a < b)
* ``addition``: "4 plus 5 equals 9." (a + b = c; false statements have c = a + b ± 1..5, c >= 0)
* ``subtraction``: "9 minus 4 equals 5." (a - b = c, a >= b)
* ``multiplication``: "3 times 4 equals 12." (2..12 × 2..12; false: c = a·b ± 1..5)
* ``parity``: "14 is an even number." / "15 is an odd number." (0..999)
* ``weekdays``: "Tuesday comes after Monday." (week order Monday .. Sunday, not circular)
* ``months``: "March comes before May." (January .. December)
* ``letters``: "The letter g comes after the letter c in the alphabet."

Ids are ``truth:NNNN`` in generation order (templates in the order above, statements within a template in digest
order); labels are ``"false"``/``"true"``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

#: Generator seed of the builtin set (the dataset key ``seed`` is the seed of the sample draw, not this one).
TRUTH_SEED = 0
#: At most this many true and this many false statements per template.
QUOTA = 250

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
OFFSETS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)


def _greater():
    for a in range(100):
        for b in range(100):
            if a != b:
                yield f"{a} is greater than {b}.", a > b


def _less():
    for a in range(100):
        for b in range(100):
            if a != b:
                yield f"{a} is less than {b}.", a < b


def _equations(word: str, pairs, op):
    for a, b in pairs:
        c = op(a, b)
        yield f"{a} {word} {b} equals {c}.", True
        for d in OFFSETS:
            if c + d >= 0:
                yield f"{a} {word} {b} equals {c + d}.", False


def _addition():
    return _equations("plus", ((a, b) for a in range(50) for b in range(50)), lambda a, b: a + b)


def _subtraction():
    return _equations("minus", ((a, b) for a in range(100) for b in range(a + 1)), lambda a, b: a - b)


def _multiplication():
    return _equations("times", ((a, b) for a in range(2, 13) for b in range(2, 13)), lambda a, b: a * b)


def _parity():
    for n in range(1000):
        yield f"{n} is an even number.", n % 2 == 0
        yield f"{n} is an odd number.", n % 2 == 1


def _order(names, relation: str, fmt: str = "{x} comes {rel} {y}."):
    for i, x in enumerate(names):
        for j, y in enumerate(names):
            if i != j:
                yield fmt.format(x=x, y=y, rel=relation), (i > j) if relation == "after" else (i < j)


TEMPLATES = {
    "greater": _greater,
    "less": _less,
    "addition": _addition,
    "subtraction": _subtraction,
    "multiplication": _multiplication,
    "parity": _parity,
    "weekdays": lambda: _order(WEEKDAYS, "after"),
    "months": lambda: _order(MONTHS, "before"),
    "letters": lambda: _order(LETTERS, "after", "The letter {x} comes {rel} the letter {y} in the alphabet."),
}


def _rank(seed: int, statement: str) -> str:
    return hashlib.sha256(f"{seed}:{statement}".encode()).hexdigest()


@lru_cache(maxsize=4)
def truth_statements(seed: int = TRUTH_SEED, quota: int = QUOTA) -> tuple[tuple[str, str, str], ...]:
    """``(statement, label, template)`` for every statement of the set, in generation order.

    ``label`` is ``"true"`` or ``"false"``; per template ``k = min(quota, #true, #false)`` statements of each class
    are kept: those whose ``sha256("{seed}:{statement}")`` is smallest.
    """
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for template, make in TEMPLATES.items():
        candidates = {True: [], False: []}
        for statement, truth in make():
            if statement not in seen:
                seen.add(statement)
                candidates[bool(truth)].append(statement)
        k = min(quota, len(candidates[True]), len(candidates[False]))
        kept = [(s, "true") for s in sorted(candidates[True], key=lambda s: _rank(seed, s))[:k]]
        kept += [(s, "false") for s in sorted(candidates[False], key=lambda s: _rank(seed, s))[:k]]
        kept.sort(key=lambda row: _rank(seed, row[0]))
        rows += [(s, label, template) for s, label in kept]
    return tuple(rows)


def truth(spec: dict) -> tuple[list[str], list[str]]:
    """Loader of ``builtin: truth`` (text): ``(ids, statements)``; labels and templates: :func:`truth_labels`."""
    rows = truth_statements()
    return [f"truth:{i:04d}" for i in range(len(rows))], [s for s, _, _ in rows]


def truth_labels() -> tuple[list[str], dict[str, list[str]]]:
    """Labels (``"false"``/``"true"``) and the ``template`` column, aligned with :func:`truth`'s ids."""
    rows = truth_statements()
    return [label for _, label, _ in rows], {"template": [t for _, _, t in rows]}
