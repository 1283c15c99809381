"""The truncation rules of a pair's ids (tokenization.py's rules): a prompt cut from the left
(a leading BOS kept), each completion from the right to its limits; completions cut to the same
tokens refused, and completions their prompt starved counted apart."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from directpo.callers import spell_change, spell_setting
from directpo.readers import RowError

# A completion its prompt left under this many tokens (or under a quarter of max_length, for a
# short max_length) is reported apart: DPO learns little from a pair of 1-token completions.
SHORT_COMPLETION = 32
CUT_BY_PROMPT = "completions cut short by their prompt"


def short_completion_limit(max_length: int) -> float:
    """Room under which a completion cut by its prompt counts as cut short."""
    return min(SHORT_COMPLETION, max_length / 4)


@dataclass(frozen=True)
class PairLimits:
    """A pair's length limits (no limit: ``sys.maxsize``) and the truncation rules on them;
    ``PairTokenizer`` holds one as ``limits``."""

    max_length: int
    max_prompt_length: int
    max_completion_length: int
    # the option that limits prompts, as a refusal names it (the one the user can raise)
    prompt_limit: str
    # the BOS id a cut prompt keeps at its start: the tokenizer's, where it adds one; else None
    kept_bos: int | None

    @classmethod
    def of(
        cls,
        max_length: int | None,
        max_prompt_length: int | None,
        max_completion_length: int | None,
        kept_bos: int | None,
    ) -> PairLimits:
        """The limits of the options as given (None: no limit; ``max_prompt_length`` None:
        one less than ``max_length``, so that a completion keeps a token)."""
        longest = max_length if max_length is not None else sys.maxsize
        if max_prompt_length is None:
            prompt_limit = f"max_length {longest} (a prompt keeps at most one less)"
            max_prompt_length = longest - 1
        else:
            prompt_limit = f"max_prompt_length {max_prompt_length}"
        return cls(
            longest, max_prompt_length, max_completion_length or sys.maxsize, prompt_limit,
            kept_bos,
        )  # fmt: skip

    def require_distinct(
        self,
        prompt_length: int,
        whole: tuple[list[int], list[int]],
        kept: tuple[list[int], list[int]],
    ) -> None:
        """Chosen and rejected must differ in the tokens that train: texts that differ only in
        what the chat template trims (Gemma's and Llama 3's ``trim``) or in an EOS one writes
        out are the same reply; and the limits may cut two replies to the same start."""
        if whole[0] == whole[1]:
            raise RowError(
                "identical chosen and rejected",
                "chosen and rejected differ as texts but not as tokens (the chat template trims "
                "whitespace, or one writes out the EOS token the other gets appended): the pair "
                "prefers nothing",
            )
        if kept[0] == kept[1]:
            raise self._identical(prompt_length, len(kept[0]))

    def _identical(self, prompt_length: int, kept: int) -> RowError:
        """Completions that truncation cut to the same tokens: what the limits left them."""
        limits = [f"max_length {self.max_length}"] if self.max_length < sys.maxsize else []
        if self.max_completion_length < sys.maxsize:
            limits.append(f"max_completion_length {self.max_completion_length}")
        return RowError(
            "identical after truncation",
            f"chosen and rejected are identical after truncation: the prompt keeps "
            f"{prompt_length} tokens and each completion its first {kept} ({', '.join(limits)}), "
            f"which are the same; {spell_change('raise', 'max_length')}, "
            f"{spell_change('lower', 'max_prompt_length')}, or "
            f"{spell_setting(('skip_invalid_rows', True))} to drop such rows",
        )

    def truncate_prompt(self, ids: list[int], truncated: Counter[str]) -> list[int]:
        if len(ids) <= self.max_prompt_length:
            return ids
        truncated["prompts"] += 1
        keep_bos = self.kept_bos is not None and ids[0] == self.kept_bos
        if keep_bos:
            return [ids[0], *ids[len(ids) - self.max_prompt_length + 1 :]]
        return ids[len(ids) - self.max_prompt_length :]

    def truncate_completion(
        self, ids: list[int], prompt_length: int, side: str, truncated: Counter[str]
    ) -> list[int]:
        room = self.max_length - prompt_length
        budget = min(room, self.max_completion_length)
        if len(ids) <= budget:
            return ids
        truncated[side] += 1
        if budget == room < short_completion_limit(self.max_length):
            truncated[CUT_BY_PROMPT] += 1
        return ids[:budget]
