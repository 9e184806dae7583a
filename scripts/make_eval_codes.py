"""Regenerate the bundled evaluation set where the page text matters (outputs are committed).

    python scripts/make_eval_codes.py

Writes ``examples/eval/codes/``: three small PDFs with a real text layer (``docs/invoices.pdf``,
``docs/parts.pdf``, ``docs/contracts.pdf``; 26 A6 pages in all, drawn as PDF text like
``scripts/make_sample_docs.py`` does), ``corpus.jsonl`` (one line per PDF page), ``queries.jsonl``
and ``qrels/test.tsv``.

Every answer hinges on an exact code or name in the page text: invoice numbers (INV-2025-0042),
part codes (ZX-4471-Q), error codes (E4012), people and companies, some in Cyrillic, Greek and
Japanese. Each page has distractors that share its layout and boilerplate and hold a near-miss
code or name (INV-2025-0024, INV-2024-0042, ZX-4417-Q, XZ-4471-Q, Иван Петров for Пётр Иванов,
山本太郎 for 山田太郎, Françoise Lefebvre for François Lefèvre...). Queries are typed as users type
them: lowercase, spaces for hyphens, accents left out, a few words around the code. Relevance is
2 for the page the query is about and 1 for a page that only mentions the code (an invoice line
naming the part).
"""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf

OUT = Path(__file__).resolve().parents[1] / "examples" / "eval" / "codes"
A6 = (298, 420)
FIXED_DATE = "D:20250101000000Z"  # the same bytes on every run

SELLER = "Acme Industrial Supply AG, Basel"


def invoice(number: str, customer: str, items: list[str], total: str, due: str, native: tuple = ()) -> list[str]:
    return [
        f"Invoice {number}",
        "",
        f"Seller: {SELLER}",
        f"Customer: {customer}",
        *native,
        f"Date of issue: {due[:4]}-02-12",
        "",
        "Items",
        *items,
        "",
        f"Total amount due: {total}",
        f"Payment due by {due} by bank transfer.",
        "Please quote the invoice number with your payment.",
    ]


def datasheet(code: str, name: str, specs: list[str]) -> list[str]:
    return [
        f"Datasheet {code}",
        "",
        f"Part number: {code}",
        f"Description: {name}",
        "",
        "Specifications",
        *specs,
        "",
        "Operating temperature -20 to 80 C.",
        "Order through your Acme sales contact.",
    ]


def bulletin(code: str, fault: str, fix: str) -> list[str]:
    return [
        f"Service bulletin: error {code}",
        "",
        f"Error code: {code}",
        f"Meaning: {fault}",
        "",
        "What to do",
        fix,
        "Restart the controller after the repair.",
        "Call service if the error code returns.",
    ]


def contract(title: list[str], party: list[str], lines: list[str]) -> list[str]:
    return [*title, "", "Between Acme Industrial Supply AG", "and", *party, "", *lines, "", "Signed in two copies."]


DOCS: dict[str, list[tuple[str, list[str]]]] = {
    "invoices": [
        (
            "inv0042",
            invoice(
                "INV-2025-0042",
                "Northwind Traders GmbH, Hamburg",
                ["12 x ZX-4471-Q hydraulic valve", "2 x KT-0815-B pump seal kit"],
                "4,812.00 EUR",
                "2025-03-14",
            ),
        ),
        (
            "inv0024",
            invoice(
                "INV-2025-0024",
                "Contoso Ltd, Leeds",
                ["40 x M8 hex bolt, steel", "4 x pressure gauge"],
                "1,106.40 EUR",
                "2025-03-14",
            ),
        ),
        (
            "inv2024",
            invoice(
                "INV-2024-0042", "Fabrikam Logistics BV, Rotterdam", ["6 x hose clamp set"], "318.00 EUR", "2024-03-14"
            ),
        ),
        (
            "inv0420",
            invoice(
                "INV-2025-0420", "Litware Energy SA, Lyon", ["3 x control cabinet fan"], "977.10 EUR", "2025-04-30"
            ),
        ),
        (
            "inv0043",
            invoice("INV-2025-0043", "Tailspin Toys Oy, Tampere", ["20 x cable gland M20"], "240.00 EUR", "2025-03-15"),
        ),
        (
            "inv1187",
            invoice(
                "INV-2025-1187",
                "Jürgen Weiß Haustechnik, Graz",
                ["1 x ZX-4417-Q hydraulic valve"],
                "402.50 EUR",
                "2025-05-02",
            ),
        ),
        (
            "inv1178",
            invoice("INV-2025-1178", "Weis Bau GmbH, Linz", ["8 x pressure gauge"], "655.20 EUR", "2025-05-02"),
        ),
        (
            "inv0951",
            invoice(
                "INV-2025-0951",
                "Yamada Seisakusho, Tokyo",
                ["5 x KT-0851-B pump seal kit"],
                "1,290.00 EUR",
                "2025-06-20",
                ["株式会社山田製作所", "東京都大田区"],
            ),
        ),
    ],
    "parts": [
        ("zx4471q", datasheet("ZX-4471-Q", "hydraulic valve, 3/2 way", ["Max pressure 250 bar", "Flow 40 l/min"])),
        ("zx4417q", datasheet("ZX-4417-Q", "hydraulic valve, 4/2 way", ["Max pressure 250 bar", "Flow 25 l/min"])),
        (
            "zx4471p",
            datasheet("ZX-4471-P", "hydraulic valve, 3/2 way, low flow", ["Max pressure 160 bar", "Flow 12 l/min"]),
        ),
        ("xz4471q", datasheet("XZ-4471-Q", "hydraulic valve body, spare part", ["Max pressure 250 bar", "Cast iron"])),
        ("kt0815b", datasheet("KT-0815-B", "pump seal kit, nitrile", ["Shaft 18 mm", "Max pressure 16 bar"])),
        ("kt0851b", datasheet("KT-0851-B", "pump seal kit, viton", ["Shaft 18 mm", "Max pressure 25 bar"])),
        (
            "e4012",
            bulletin(
                "E4012",
                "pressure sensor fault on the main line",
                "Check the pressure sensor cable and replace the sensor.",
            ),
        ),
        ("e4021", bulletin("E4021", "pressure too low on the main line", "Check the pump and the inlet filter.")),
    ],
    "contracts": [
        (
            "ivanov",
            contract(
                ["Договор поставки", "Supply contract"],
                ["Пётр Иванов", "ООО Волга Логистик", "Самара"],
                ["Поставка клапанов", "Valves: ZX-4471-Q", "Term: 2025 to 2027."],
            ),
        ),
        (
            "petrov",
            contract(
                ["Договор поставки", "Supply contract"],
                ["Иван Петров", "ООО Урал Сервис", "Пермь"],
                ["Поставка насосов", "Term: 2025 to 2026."],
            ),
        ),
        (
            "papadopoulos",
            contract(
                ["Μίσθωση γραφείου", "Office lease"],
                ["Ιωάννης Παπαδόπουλος", "Αθήνα"],
                ["Office lease, Athens branch.", "Term: three years."],
            ),
        ),
        (
            "papadakis",
            contract(
                ["Σύμβαση υπηρεσιών", "Service contract"],
                ["Γιώργος Παπαδάκης", "Θεσσαλονίκη"],
                ["Maintenance of the Thessaloniki warehouse.", "Term: one year."],
            ),
        ),
        (
            "yamada",
            contract(
                ["雇用契約", "Employment contract"],
                ["山田太郎", "東京"],
                ["Position: sales engineer, Tokyo office.", "Start: 2025-04-01."],
            ),
        ),
        (
            "yamamoto",
            contract(
                ["業務委託契約", "Service contract"],
                ["山本太郎", "大阪"],
                ["Position: installer, Osaka.", "Start: 2025-05-01."],
            ),
        ),
        (
            "lefevre",
            contract(
                ["Consulting agreement"],
                ["François Lefèvre, Lefèvre Conseil SARL, Paris"],
                ["Advice on the French distribution network.", "Fee: 1,200 EUR per day."],
            ),
        ),
        (
            "lefebvre",
            contract(
                ["Consulting agreement"],
                ["Françoise Lefebvre, Bordeaux"],
                ["Advice on warehouse safety.", "Fee: 950 EUR per day."],
            ),
        ),
        (
            "okonkwo",
            contract(
                ["Non-disclosure agreement"],
                ["Margarethe Okonkwo, Okonkwo Analytics Ltd, Lagos"],
                ["Both parties keep the pricing data confidential.", "Term: five years."],
            ),
        ),
        (
            "weiss",
            contract(
                ["Contractor agreement"],
                ["Jürgen Weiß, Graz"],
                ["Installation of heating controls in the Graz branch.", "Term: six months."],
            ),
        ),
    ],
}

# (query text, {page id: relevance}); the page a query is about gets 2, a page only mentioning it 1
QUERIES: list[tuple[str, dict[str, int]]] = [
    ("inv 2025 0042 amount due", {"inv0042": 2}),
    ("inv 2025 0024 total", {"inv0024": 2}),
    ("invoice inv 2024 0042 payment", {"inv2024": 2}),
    ("invoice 0420 from 2025", {"inv0420": 2}),
    ("inv-2025-0043 due date", {"inv0043": 2}),
    ("inv 2025 1187", {"inv1187": 2}),
    ("weis bau invoice 1178", {"inv1178": 2}),
    ("yamada seisakusho invoice", {"inv0951": 2}),
    ("northwind traders invoice", {"inv0042": 2}),
    ("contoso invoice total", {"inv0024": 2}),
    ("zx 4471 q datasheet", {"zx4471q": 2, "inv0042": 1, "ivanov": 1}),
    ("zx 4417 q max pressure", {"zx4417q": 2, "inv1187": 1}),
    ("zx-4471-p valve", {"zx4471p": 2}),
    ("xz 4471 q spare", {"xz4471q": 2}),
    ("kt 0815 b seal kit", {"kt0815b": 2, "inv0042": 1}),
    ("kt 0851 b viton", {"kt0851b": 2, "inv0951": 1}),
    ("error e4012 pressure sensor", {"e4012": 2}),
    ("e4021 fault", {"e4021": 2}),
    ("петр иванов договор", {"ivanov": 2}),
    ("иван петров", {"petrov": 2}),
    ("παπαδοπουλος μισθωση", {"papadopoulos": 2}),
    ("παπαδακης", {"papadakis": 2}),
    ("山田太郎 雇用契約", {"yamada": 2}),
    ("山本太郎", {"yamamoto": 2}),
    ("francois lefevre consulting", {"lefevre": 2}),
    ("francoise lefebvre", {"lefebvre": 2}),
    ("okonkwo nda", {"okonkwo": 2}),
    ("jurgen weiss contract", {"weiss": 2, "inv1187": 1}),
]


def write_line(page: pymupdf.Page, y: float, line: str, first: bool) -> None:
    """Latin-1 text in Helvetica (no embedded font), anything else in the CJK font, whose Adobe
    character collection also covers Cyrillic and Greek (not embedded either: a few KB per PDF)."""
    latin = all(ord(ch) < 256 for ch in line)
    size = 13 if first else 9.5
    if latin:
        assert pymupdf.get_text_length(line, "helv", size) < A6[0] - 48, line
    else:  # the substituted CJK font sets every character about 1 em wide
        assert len(line) * size < A6[0] - 48, line
    page.insert_text((24, y), line, fontname=("hebo" if first else "helv") if latin else "japan", fontsize=size)


def make_pdf(pages: list[tuple[str, list[str]]], path: Path) -> None:
    doc = pymupdf.open()
    for _, lines in pages:
        page = doc.new_page(width=A6[0], height=A6[1])
        y = 40.0
        for i, line in enumerate(lines):
            if line:
                write_line(page, y, line, first=i == 0)
            y += 20 if i == 0 else 14
        page.draw_line((24, 48), (A6[0] - 24, 48), color=(0.2, 0.2, 0.4), width=0.8)
        page.clean_contents()  # one content stream per page, not one per line
    doc.set_metadata({"title": path.stem, "creationDate": FIXED_DATE, "modDate": FIXED_DATE,
                      "producer": "visdoc scripts/make_eval_codes.py"})  # fmt: skip
    path.write_bytes(doc.tobytes(garbage=4, deflate=True, no_new_id=True))


def main() -> None:
    (OUT / "docs").mkdir(parents=True, exist_ok=True)
    (OUT / "qrels").mkdir(exist_ok=True)
    corpus, known = [], set()
    for name, pages in DOCS.items():
        make_pdf(pages, OUT / "docs" / f"{name}.pdf")
        for number, (pid, _) in enumerate(pages):
            corpus.append({"_id": pid, "pdf": f"docs/{name}.pdf", "page": number})
            known.add(pid)
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for i, (text, relevant) in enumerate(QUERIES):
        assert set(relevant) <= known, relevant
        queries.append({"_id": f"q{i:02d}", "text": text})
        qrels += [f"q{i:02d}\t{pid}\t{grade}" for pid, grade in relevant.items()]
    (OUT / "corpus.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in corpus))
    (OUT / "queries.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in queries))
    (OUT / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")


if __name__ == "__main__":
    main()
