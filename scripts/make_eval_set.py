"""Regenerate the bundled page-image evaluation set (outputs are committed).

    python scripts/make_eval_set.py

Writes ``examples/eval/pages/``: 8 report pages on distinct topics (title, paragraph, a table or
chart) as PNG, with ``corpus.jsonl``, ``queries.jsonl`` (2 queries per page) and ``qrels/test.tsv``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "examples" / "eval" / "pages"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
TOPICS = [
    (
        "Quarterly revenue",
        "Revenue rose to 52.6 million EUR in the third quarter.",
        ["Which quarter had the highest revenue?", "revenue in Q3"],
    ),
    (
        "Organisation chart",
        "The logistics division reports to the chief operating officer.",
        ["who does logistics report to", "company organisation chart"],
    ),
    (
        "Printer maintenance",
        "Open the front cover and pull the toner cartridge towards you.",
        ["how to change the printer cartridge", "toner replacement steps"],
    ),
    (
        "Travel expenses",
        "Hotel costs above 150 EUR per night need prior approval.",
        ["hotel cost limit per night", "travel expense policy"],
    ),
    (
        "Network diagram",
        "Two firewalls separate the office network from the data centre.",
        ["firewall placement in the network", "office network diagram"],
    ),
    (
        "Safety instructions",
        "Wear goggles and gloves when handling the cleaning solution.",
        ["protective equipment for cleaning", "safety rules chemicals"],
    ),
    (
        "Product dimensions",
        "The cabinet measures 80 by 45 by 190 centimetres.",
        ["cabinet height and width", "product size table"],
    ),
    (
        "Warranty terms",
        "Parts are covered for two years from the date of purchase.",
        ["how long is the warranty", "warranty coverage period"],
    ),
]


def page(title: str, body: str, index: int) -> Image.Image:
    image = Image.new("RGB", (560, 724), "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 40), title, font=ImageFont.truetype(FONT, 28), fill="#1a1a40")
    draw.line((40, 84, 520, 84), fill="#1a1a40", width=2)
    draw.multiline_text((40, 110), body.replace(". ", ".\n"), font=ImageFont.truetype(FONT, 16), fill="black")
    for bar in range(5):  # a small chart, different per page
        height = 40 + ((index * 37 + bar * 53) % 160)
        draw.rectangle((60 + bar * 80, 560 - height, 110 + bar * 80, 560), fill=(40 + 25 * index, 90, 160))
    return image


def main() -> None:
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    (OUT / "qrels").mkdir(exist_ok=True)
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for i, (title, body, asks) in enumerate(TOPICS):
        page(title, body, i).save(OUT / "images" / f"page{i}.png", optimize=True)
        corpus.append({"_id": f"page{i}", "image": f"images/page{i}.png"})
        for j, ask in enumerate(asks):
            queries.append({"_id": f"q{i}-{j}", "text": ask})
            qrels.append(f"q{i}-{j}\tpage{i}\t1")
    (OUT / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (OUT / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (OUT / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")


if __name__ == "__main__":
    main()
