"""Fitting an evaluation prompt into a token budget without losing the query (`history` mode).

Order of sacrifice, each step only when the previous one cannot fit the budget:
1. nothing: the prompt as released;
2. the OLDEST history entries, the fewest that make it fit while one entry stays
   (candidates and query intact);
3. when not even one entry fits beside the candidates (in the release: the candidate list
   alone is over the budget), the longest candidate descriptions are cut (at the largest
   character cap that fits), so the user's history - the only preference evidence - is kept
   whole; names, types and defaults stay;
4. when even descriptions cut to nothing leave no room for the whole history, the oldest
   history entries go as well, with descriptions cut to nothing;
5. what is still over the budget is sent as it is and reported (`over_limit`).
Token counts only fall as entries or characters go, so every step is a binary search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from petool_jax import petoolbench as pb
from petool_jax.petoolbench_text import cap_candidate_descriptions, locate_candidates, longest_description


@dataclass(frozen=True)
class PromptFit:
    """What was done to one prompt to fit the budget."""

    tokens: int  # the final prompt's length
    n_history: int = 0  # history entries in the released prompt
    n_dropped: int = 0  # oldest history entries left out
    description_cap: int | None = None  # characters every description was cut to (None: none cut)
    n_descriptions_cut: int = 0
    over_limit: bool = False  # still longer than the budget

    @property
    def cut(self) -> bool:
        return self.n_dropped > 0 or self.n_descriptions_cut > 0

    @property
    def lost_history(self) -> bool:
        """All of a non-empty history is gone."""
        return self.n_history > 0 and self.n_dropped >= self.n_history


def _largest_fitting(low: int, high: int, fits: Callable[[int], bool]) -> int:
    """The largest x in [low, high) with fits(x), given fits(low) and not fits(high) and
    monotone fits (true up to some point, false after)."""
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def fit_prompt(entry: dict, setting: str, count_tokens: Callable[[list[dict]], int], max_tokens: int,
               prompt_format: str = "system_user") -> tuple[list[dict], PromptFit]:
    """(messages, PromptFit) within `max_tokens` where possible; see the module doc."""
    counts: dict[tuple, int] = {}

    def count(drop: int, cap: int | None) -> int:
        if (drop, cap) not in counts:
            counts[drop, cap] = count_tokens(pb.build_messages(entry, setting, drop, prompt_format, cap))
        return counts[drop, cap]

    def result(drop: int, cap: int | None, n_history: int) -> tuple[list[dict], PromptFit]:
        n_cut = 0
        if cap is not None:
            found = locate_candidates(pb.instruction_text(entry, setting))
            n_cut = cap_candidate_descriptions(found[2], cap)[1] if found else 0
        tokens = count(drop, cap)
        return pb.build_messages(entry, setting, drop, prompt_format, cap), PromptFit(
            tokens=tokens, n_history=n_history, n_dropped=drop, description_cap=cap if n_cut else None,
            n_descriptions_cut=n_cut, over_limit=tokens > max_tokens)

    try:
        n_history = len(pb.split_instruction(pb.instruction_text(entry, setting))[1])
    except ValueError:
        n_history = 0
    if count(0, None) <= max_tokens:
        return result(0, None, n_history)
    if n_history and count(n_history - 1, None) <= max_tokens:
        # Step 2: the fewest oldest entries, at least one kept; count(0) is over, count(n_history - 1) fits.
        keep = _largest_fitting(1, n_history, lambda k: count(n_history - k, None) <= max_tokens)
        return result(n_history - keep, None, n_history)
    found = locate_candidates(pb.instruction_text(entry, setting))
    longest = longest_description(found[2]) if found else 0
    if longest == 0:  # nothing to cut: as few history entries as possible, then over the limit
        return result(n_history, None, n_history)
    if count(0, 0) <= max_tokens:
        # Step 3: the whole history, descriptions at the largest cap that fits.
        cap = _largest_fitting(0, longest, lambda c: count(0, c) <= max_tokens)
        return result(0, cap, n_history)
    if n_history and count(n_history, 0) <= max_tokens:
        # Step 4: descriptions cut to nothing, the fewest oldest history entries.
        drop = n_history - _largest_fitting(0, n_history, lambda keep: count(n_history - keep, 0) <= max_tokens)
        return result(drop, 0, n_history)
    return result(n_history, 0, n_history)  # step 5: over the limit, reported

