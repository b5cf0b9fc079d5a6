"""One seed from several counters, so that every draw of a run is reproducible after a resume and differs where it
should (per epoch, per optimizer step, per process, per refill round)."""

from __future__ import annotations

__all__ = ["mix_seed"]

_MULTIPLIER = 1_000_003  # a prime: consecutive counters give seeds far apart
_MODULUS = 2**63  # torch.Generator.manual_seed takes a signed 64-bit integer


def mix_seed(*parts: int) -> int:
    """Fold ``parts`` (e.g. ``seed, epoch``) into one non-negative seed: ``s = (s * 1_000_003 + part) mod 2**63``.

    Equal parts give equal seeds on every process and in a resumed run; changing any part changes the seed.
    """
    seed = 0
    for part in parts:
        seed = (seed * _MULTIPLIER + int(part)) % _MODULUS
    return seed
