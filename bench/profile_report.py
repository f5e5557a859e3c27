"""Summarise py-spy collapsed stacks (bench/common.py Profiler): where the samples go.

    python bench/profile_report.py var/bench/<run>/profile-receiver.txt [--top 30] [--match worker/]

Prints inclusive share per function (a frame counted once per sample), our own code
first, and the self share of the top leaf frames.
"""

from __future__ import annotations

import argparse
import collections
import sys


def load(path: str):
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/tmp/fb-snap/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions whose location contains this")
    args = parser.parse_args(argv)
    stacks = [s for f in args.files for s in load(f)]
    total = sum(c for _, c in stacks)
    inclusive, leaf = collections.Counter(), collections.Counter()
    for frames, count in stacks:
        seen = set()
        for frame in frames:
            name = short(frame)
            if name not in seen:
                inclusive[name] += count
                seen.add(name)
        leaf[short(frames[-1])] += count
    print(f"{total} samples")
    print("inclusive:")
    for name, count in inclusive.most_common():
        if args.match and args.match not in name:
            continue
        print(f"  {count / total * 100:5.1f}%  {name}")
        args.top -= 1
        if args.top <= 0:
            break
    print("self (top 25):")
    for name, count in leaf.most_common(25):
        print(f"  {count / total * 100:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
