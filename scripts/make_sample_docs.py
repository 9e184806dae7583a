"""Regenerate the bundled sample documents (run once; the outputs are committed).

    python scripts/make_sample_docs.py

Writes ``examples/data/annual-report.pdf``: three Letter pages with running text, a table and a bar chart,
drawn as real PDF text and vector graphics (so the pages have a text layer too).
"""

from __future__ import annotations

from pathlib import Path

import pymupdf

HERE = Path(__file__).resolve().parents[1] / "examples" / "data"
QUARTERS = [("Q1", 41.2, "+3.1%"), ("Q2", 44.8, "+8.7%"), ("Q3", 52.6, "+17.4%"), ("Q4", 49.9, "-5.1%")]
COLORS = [(0.30, 0.45, 0.69), (0.33, 0.66, 0.41), (0.77, 0.31, 0.32), (0.51, 0.45, 0.70)]


def heading(page: pymupdf.Page, y: float, text: str, size: float = 16) -> None:
    page.insert_text((72, y), text, fontname="hebo", fontsize=size, color=(0.1, 0.1, 0.25))


def paragraph(page: pymupdf.Page, y: float, text: str) -> None:
    page.insert_textbox(pymupdf.Rect(72, y, 540, y + 200), text, fontname="tiro", fontsize=11.5, lineheight=1.4)


def main() -> None:
    doc = pymupdf.open()
    doc.set_metadata({"title": "Northwind Traders Annual Report 2025", "author": "visdoc sample generator"})

    page = doc.new_page(width=612, height=792)
    heading(page, 90, "Northwind Traders - Annual Report 2025", 22)
    page.draw_line((72, 100), (540, 100), color=(0.1, 0.1, 0.25), width=1.5)
    heading(page, 140, "1. Letter to shareholders")
    paragraph(
        page,
        155,
        "2025 was the year Northwind Traders became a logistics company as much as a trading "
        "house. Revenue reached 188.5 million EUR, driven by the cold-chain logistics service that "
        "opened in northern Europe in the third quarter. Operating costs stayed flat while headcount "
        "rose by four percent. The organisation chart on page 7 shows the new logistics division.",
    )
    heading(page, 330, "Contents")
    for i, line in enumerate(
        ["Letter to shareholders .... 1", "Financial highlights .... 2", "Revenue by quarter (chart) .... 3"]
    ):
        page.insert_text((90, 360 + 22 * i), line, fontname="tiro", fontsize=12)

    page = doc.new_page(width=612, height=792)
    heading(page, 90, "2. Financial highlights")
    paragraph(page, 105, "Quarterly revenue and growth against the previous quarter, in million EUR.")
    widths, x0, y0, row_h = [120, 170, 120], 72, 160, 28
    rows = [("Quarter", "Revenue (M EUR)", "Growth")] + [(q, f"{v:.1f}", g) for q, v, g in QUARTERS]
    for r, row in enumerate(rows):
        y = y0 + r * row_h
        fill = (0.87, 0.89, 0.94) if r == 0 else ((0.96, 0.96, 0.96) if r % 2 else (1, 1, 1))
        page.draw_rect(pymupdf.Rect(x0, y, x0 + sum(widths), y + row_h), color=(0.6, 0.6, 0.6), fill=fill)
        x = x0
        for c, cell in enumerate(row):
            page.insert_text((x + 8, y + 19), cell, fontname="hebo" if r == 0 else "helv", fontsize=12)
            x += widths[c]
    paragraph(
        page,
        330,
        "The third quarter was the strongest on record (+17.4%). The fourth quarter fell back "
        "slightly as the seasonal fresh-produce contracts ended.",
    )

    page = doc.new_page(width=612, height=792)
    heading(page, 90, "3. Revenue by quarter")
    base, left = 520, 110
    page.draw_line((left - 20, base), (left + 380, base), color=(0, 0, 0), width=1.5)
    for i, (quarter, value, _) in enumerate(QUARTERS):
        x = left + i * 95
        top = base - value * 6
        page.draw_rect(pymupdf.Rect(x, top, x + 55, base), color=COLORS[i], fill=COLORS[i])
        page.insert_text((x + 18, base + 18), quarter, fontname="helv", fontsize=11)
        page.insert_text((x + 12, top - 6), f"{value:.1f}", fontname="helv", fontsize=11)
    page.insert_text((72, 580), "Figure 1: revenue by quarter, million EUR.", fontname="tiro", fontsize=11)

    doc.save(HERE / "annual-report.pdf", garbage=4, deflate=True)


if __name__ == "__main__":
    main()
