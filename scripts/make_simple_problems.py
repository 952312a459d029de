"""Write assets/reasoning/simple_problems.jsonl: one-step word problems with known answers.

GRPO needs problems the policy sometimes solves: a group whose answers are all wrong scores the
same and teaches nothing. The bundled model (135M) solves few of the multi-step problems in
problems.jsonl, and more of these one-operation ones, so they are where a small run can learn.
Seeded: running it again writes the same file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "assets" / "reasoning" / "simple_problems.jsonl"
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena", "Mo", "Nia"]
THINGS = ["apples", "marbles", "stickers", "books", "pencils", "cards", "shells", "coins", "stamps", "cookies"]
TEMPLATES = [
    ("{n} has {a} {t}. {n} gets {b} more {t}. How many {t} does {n} have now?", lambda a, b: a + b),
    ("{n} had {a} {t} and gave away {b} of them. How many {t} does {n} have left?", lambda a, b: a - b),
    ("There are {a} boxes with {b} {t} in each box. How many {t} are there in all?", lambda a, b: a * b),
    ("{n} shares {p} {t} equally among {b} friends. How many {t} does each friend get?", lambda a, b: a),
    ("{n} has {a} {t}. A friend has {b} {t}. How many {t} do they have together?", lambda a, b: a + b),
    ("A shelf holds {a} {t}. {b} of them are taken away. How many {t} are still on the shelf?", lambda a, b: a - b),
]


def main(count: int = 240, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        template, answer = TEMPLATES[index % len(TEMPLATES)]
        a, b = rng.randint(2, 20), rng.randint(2, 9)
        if "gave away" in template or "taken away" in template:
            a = a + b  # never a negative count
        question = template.format(n=rng.choice(NAMES), t=rng.choice(THINGS), a=a, b=b, p=a * b)
        rows.append({"question": question, "answer": answer(a, b)})
    OUT.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"{len(rows)} problems written to {OUT}")


if __name__ == "__main__":
    main()
