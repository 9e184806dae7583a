"""Text to lexical (BM25) terms: the one place that decides how page text and queries are split
into the terms of the ``lexical`` sparse vector, for both store backends.

The weights come from qdrant-edge's own :class:`qdrant_edge.Bm25` (token index = murmur3 of the
term, as Qdrant server's and fastembed's ``qdrant/bm25``); the engine applies IDF at query time
(the sparse vector is declared with the IDF modifier). Vectors computed here score identically on
the embedded engine and on a server (or qdrant-client's local mode), so one analysis serves both.

Analysis, in order (the same for documents and queries, so both sides always agree):

1. **Unicode NFKC**: compatibility forms become their plain letters: ``ﬁle`` is ``file``,
   full-width ``ＩＮＶ２０２５`` is ``INV2025``.
2. **Diacritics folded** for Latin, Greek, Cyrillic and Arabic: combining accents (U+0300-036F)
   and Arabic short vowels are dropped (``café`` ~ ``cafe``, ``ά`` ~ ``α``, ``ё`` ~ ``е``);
   the engine's ASCII folding then maps letters such as ``ß``, ``æ``, ``ø``.
3. **CJK runs split into overlapping bigrams** (Han, kana, Hangul: these scripts write words
   without spaces): ``東京都庁`` gives ``東京 京都 都庁``, a one-character run stays itself. A query
   ``東京`` then matches inside any longer run. The engine has no CJK splitter that keeps digits
   (its Multilingual tokenizer drops digit-only tokens, so ``INV-2025-0042`` would lose ``2025``).
4. **Word tokenizer**, lowercased: every run of letters and digits is a term, so ``INV-2025-0042``,
   ``inv-2025-0042`` and ``INV 2025 0042`` are the same three terms (``inv``, ``2025``, ``0042``),
   as are ``ZX-4471-Q`` and ``zx 4471 q``; Cyrillic, Greek, Arabic, Hebrew, Devanagari words are
   kept whole.
5. **No stemming**: a stemmer is per language and mangles the others and codes (an English
   stemmer turns a French or German word into a wrong stem); the dense and multivector stages
   already match inflections. **English stop words** are dropped (``the``, ``of``, ``and``...):
   English function words fill mixed-language business documents and queries, and a query made
   only of them then gives an empty vector (no lexical hits) rather than every page. Other
   languages' function words are left to IDF, which weights words found on most pages near zero;
   dropping them would also drop real words that are another language's stop word.

BM25 parameters are the engine's defaults (k1 = 1.2, b = 0.75, average length 256 terms, which
sits between a chunk and a full page); they are baked into stored vectors, so changing any of
this analysis means re-running :meth:`visdoc.store.Store.add_lexical` on existing collections.

Limits: a document's text is cut to :data:`MAX_DOCUMENT_CHARS` before analysis (1 MB of text
takes ~20 ms; the cap bounds a pathological page); a query may hold at most
:data:`MAX_QUERY_TERMS` distinct terms, beyond which :func:`query_vector` raises ``ValueError``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

LEXICAL = "lexical"  # the named sparse vector that holds these terms
MAX_QUERY_TERMS = 256
MAX_DOCUMENT_CHARS = 2_000_000  # text past this is not indexed (~40 ms of analysis at the cap)

# Han (with extensions and compatibility), Hiragana, Katakana (with the long-vowel mark), Hangul
_CJK = "\u3005\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
CJK_RUN = re.compile(f"[{_CJK}]+")  # runs the analysis splits into bigrams (highlighting too)
_MARKS = re.compile("[\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u0640]")  # accents, Arabic harakat, tatweel


@functools.cache
def _bm25() -> Any:
    import qdrant_edge as qe

    config = qe.Bm25Config(
        tokenizer=qe.TokenizerType.Word,
        lowercase=True,
        ascii_folding=True,
        stopwords=qe.StopwordsSet(languages={qe.Language.English}),
        stemmer=qe.DisabledStemmer(),
    )
    return qe.Bm25(config)


def normalise(text: str) -> str:
    """``text`` as the engine's tokenizer sees it: NFKC, diacritics folded, CJK runs as bigrams."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", text)))
        text = CJK_RUN.sub(_bigrams, text)
    return text


def _bigrams(run: re.Match[str]) -> str:
    chars = run.group()
    if len(chars) == 1:
        return f" {chars} "
    return " " + " ".join(chars[i : i + 2] for i in range(len(chars) - 1)) + " "


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """BM25 document weights of a page's or chunk's text: ``(indices, values)``; empty text, or
    text of only punctuation or stop words, gives an empty vector."""
    if not text:
        return [], []
    vector = _bm25().embed_document(normalise(text[:MAX_DOCUMENT_CHARS]))
    return list(vector.indices), list(vector.values)


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """A query's terms, each weighted 1 (the engine multiplies by IDF): ``(indices, values)``.

    Empty for a query of only stop words or punctuation (a lexical search then finds nothing).
    Raises ``ValueError`` for more than :data:`MAX_QUERY_TERMS` distinct terms."""
    if not text:
        return [], []
    vector = _bm25().embed_query(normalise(text))
    if len(vector.indices) > MAX_QUERY_TERMS:
        raise ValueError(
            f"the query has {len(vector.indices)} distinct terms; lexical search takes at most {MAX_QUERY_TERMS}: "
            "shorten the query"
        )
    return list(vector.indices), list(vector.values)


def terms(text: str) -> list[str]:
    """The distinct terms of ``text`` in order, as the index holds them (lowercased, NFKC,
    diacritics folded, CJK runs as bigrams, stop words left out), for highlighting: a word of a
    snippet matches a query when ``terms(word)`` shares a term with ``terms(query)``."""
    found: dict[str, None] = {}
    bm25 = _bm25()
    for word in _words(normalise(text[:MAX_DOCUMENT_CHARS]).lower()):
        if word not in found and bm25.embed_query(word).indices:  # not a stop word
            found[word] = None
    return list(found)


def _words(text: str) -> list[str]:
    """Runs of letters and digits (with their combining marks), as the engine's Word tokenizer splits."""
    words, current = [], []
    for char in text:
        if char.isalnum() or (current and unicodedata.category(char) in ("Mn", "Mc")):
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words
