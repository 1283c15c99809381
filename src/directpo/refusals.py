"""A source's refused rows said in one line: each distinct problem once, with its first row and
how many rows share it.

The line named only the first bad row's problem and counted the others ("4 more rows are
invalid: line 3, line 5, ..."), so a file with two kinds of mistake took a run to learn of the
second. Each problem is now said once, in order of first appearance; the line stays bounded
(``SHOWN_PROBLEMS`` problems, ``SHOWN_PLACES`` places each), and so does the memory of a
50k-row file whose every row is bad (``KEPT_PROBLEMS`` distinct problems remembered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from directpo.callers import spell_option
from directpo.errors import DataError

SHOWN_PROBLEMS = 3  # distinct problems named in the line
SHOWN_PLACES = 3  # later rows of one problem named by place
KEPT_PROBLEMS = 64  # distinct problems remembered; the rest are only counted
SKIP_OPTION = "skip_invalid_rows"  # named by the hint, and by a problem that gives its own


def skip_hint() -> str:
    """What skips the refused rows, as the caller sets options: ``skip_invalid_rows: true`` in
    a recipe, ``--skip_invalid_rows`` on a command line, ``skip_invalid_rows=True`` in Python
    (a flags or Python user was told the recipe's YAML alone)."""
    return f"{spell_option(SKIP_OPTION, True, in_recipe=False)} skips them"


@dataclass
class _Problem:
    first: str  # the first row's place ("line 2")
    later: list[str] = field(default_factory=list)  # the next few rows' places
    count: int = 1


class RowsRefused(DataError):
    """The refused rows of one source. ``label``: the source; ``count``: how many rows (a
    source read twice, as a streamed train file and as eval file, is said once: by the read
    that counted more)."""

    def __init__(self, message: str, label: str, first: str, count: int):
        super().__init__(message)
        self.label, self.first, self.count = label, first, count

    def __reduce__(self) -> tuple[Any, ...]:  # (pickled to a torchrun node's waiting ranks)
        return type(self), (str(self), self.label, self.first, self.count), self.__dict__


class RefusedRows:
    """Rows refused while a source is checked whole (``add``), said by ``raise_if_any``."""

    def __init__(self, label: str, places_labelled: bool = False):
        """``places_labelled``: the places given to ``add`` are ``label: line 2`` (a mixture's
        row keeps its own file's name, and the line then starts with the first row's)."""
        self.label = label
        self.places_labelled = places_labelled
        self.count = 0
        self._problems: dict[str, _Problem] = {}
        self._others: list[str] = []  # places of rows whose problem was not kept
        self._other_count = 0
        self._labelled = True  # the first row's place was under the label (else: its own)

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, where: str, problem: str) -> None:
        """A refused row: its place ("line 2") and its problem."""
        place = where.removeprefix(f"{self.label}: ") if self.places_labelled else where
        if not self.count:
            self._labelled = place != where or not self.places_labelled
        self.count += 1
        known = self._problems.get(problem)
        if known is not None:
            known.count += 1
            if len(known.later) < SHOWN_PLACES:
                known.later.append(place)
        elif len(self._problems) < KEPT_PROBLEMS:
            self._problems[problem] = _Problem(place)
        else:
            self._other_count += 1
            if len(self._others) < SHOWN_PLACES:
                self._others.append(place)

    def message(self, hint: str = "") -> str:
        """``label: line 2: P (2 more rows like it: line 3, line 4); line 5: Q; ...``, then
        the rows of problems not shown counted, then ``hint`` (what skips them), for a single
        refused row too (it was said only for several: one bad row in 60k was not told how to
        go on without it). A line whose every row is shown with a problem that already says
        how to skip it ("... or set skip_invalid_rows: true to drop such rows") gets no hint:
        it said the advice twice. Rows of a problem without it, or rows only counted, keep it."""
        problems = list(self._problems.items())
        # (a last problem is said rather than counted as "1 more row with another problem")
        shown = SHOWN_PROBLEMS + (len(problems) == SHOWN_PROBLEMS + 1 and not self._other_count)
        parts = [_said(problem, p) for problem, p in problems[:shown]]
        rest = problems[shown:]
        unshown = sum(p.count for _, p in rest) + self._other_count
        if unshown:
            places = [p.first for _, p in rest][:SHOWN_PLACES] or self._others
            kinds = len(rest) + (1 if self._other_count else 0)
            other = "another problem" if kinds == 1 and not self._other_count else "other problems"
            rows = "row" if unshown == 1 else "rows"
            more = ", ..." if unshown > len(places) else ""
            parts.append(f"{unshown} more {rows} with {other}: {', '.join(places)}{more}")
        if hint and (unshown or not all(SKIP_OPTION in problem for problem, _ in problems)):
            parts.append(hint)
        text = "; ".join(parts)
        return f"{self.label}: {text}" if self._labelled and self.label else text

    def raise_if_any(self, hint: str = "") -> None:
        if self.count:
            first = next(iter(self._problems.values())).first
            raise RowsRefused(self.message(hint), self.label, first, self.count)


def hint_once(lines: list[str], apart: bool = False) -> list[str]:
    """Several sources' refused-row lines with the skip_invalid_rows hint said once, after the
    last (each source's line ended with it: a mixture of five files said it five times).
    ``apart``: the hint is a line of its own (lines shown one under another), else it ends the
    last line (lines joined with "; ")."""
    hint = skip_hint()
    suffix = f"; {hint}"
    if not any(line.endswith(suffix) for line in lines):
        return lines
    lines = [line.removesuffix(suffix) for line in lines]
    return [*lines, hint] if apart else [*lines[:-1], lines[-1] + suffix]


def _said(problem: str, seen: _Problem) -> str:
    text = f"{seen.first}: {problem}"
    if seen.count == 1:
        return text
    more = seen.count - 1
    rows = "row" if more == 1 else "rows"
    etc = ", ..." if more > len(seen.later) else ""
    return f"{text} ({more} more {rows} like it: {', '.join(seen.later)}{etc})"
