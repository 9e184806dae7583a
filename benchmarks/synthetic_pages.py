"""Synthetic late-interaction pages and queries, exactly as in ``shared/docs/bench-data.md``.

Random vectors are the worst case for prefetch and quantization; store, search and compression
benchmarks use this structured model instead so that numbers compare across runs:

* token space D = 128; T = 500 topics, each a random unit centroid c_t; 8 shared background
  centroids b_j (blank/margin patches common to all pages);
* page p: K = 3 distinct topics with mixing weights w_p ~ Dirichlet(2, 2, 2) and page-specific
  topic variants s_{p,k} = normalize(c_{t_k} + 0.35 g), g ~ N(0, I/D);
* 750 tokens per page: with probability 0.30 a background token normalize(b_j + 0.20 g), j
  uniform; otherwise topic k ~ w_p and token normalize(s_{p,k} + 0.60 g); stored float16;
* dense page vector (2048-d): normalize(W m_p + e), m_p the mean token (of the stored float16
  tokens), W a fixed 2048x128 Gaussian matrix scaled by 1/sqrt(D), e Gaussian noise with
  |e| = 0.75 |W m_p|;
* queries: a target page p drawn from the first 1,000 pages (so the same queries serve 1k and
  10k corpora); 20 tokens, topic k ~ w_p, token normalize(s_{p,k} + 0.60 g) with fresh noise and
  no background; the query dense vector is built like a page's from the query tokens;
* ground truth: exact MaxSim over the whole corpus (:func:`exact_maxsim_topk`).

Synthetic text (for the lexical and hybrid search modes; not part of bench-data.md, drawn from
streams of its own so the vectors above are unchanged):

* vocabulary: each topic owns 40 pseudo-words (``kavo``, ``mitrelu``...: 2-4 syllables, distinct
  across topics); 300 common words shared by all pages, drawn Zipf-like (weight 1 / rank^1.1);
* page p: 150 words, each a common word with probability 0.5, otherwise a word of topic k ~ w_p
  (the page's own topics and weights), uniform in that topic's vocabulary; 20 % of pages carry a
  product code (``AB-1234-C``: two letters, four digits, a letter; drawn per page, so a few may
  repeat in 10k pages) placed twice among the words;
* query i: text of the same target page as its vectors: 2 words of the target's topics (k ~ w_p)
  and 2 common words; for a target with a code, every other query (by index) types the code as
  users do (``ab 1234 c``) plus one topic word instead;
* :meth:`SyntheticCorpus.texts` / :meth:`SyntheticCorpus.query_texts`, like the vectors, are pure
  functions of ``(seed, index)``.

Every page and every query draws from its own seeded random stream, so results do not depend on
how many are generated: ``corpus.pages(1000)`` equals the first 1,000 rows of
``corpus.pages(10000)``, and ``corpus.queries(q)`` is a prefix of ``corpus.queries(q + 1)``.

    from benchmarks.synthetic_pages import SyntheticCorpus, exact_maxsim_topk

    corpus = SyntheticCorpus(seed=0)
    pages = corpus.pages(10_000)                  # tokens [N,750,128] f16, dense [N,2048] f32
    queries = corpus.queries(200, n_pages=10_000)  # tokens [Q,20,128] f32, dense [Q,2048] f32
    ids, scores = exact_maxsim_topk(queries.tokens, pages.tokens, k=10)

Running the file prints generation and ground-truth timings for a small corpus:

    python benchmarks/synthetic_pages.py [--pages 2000] [--queries 50]
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass

import numpy as np

DIM = 128
"""Token dimension D."""
N_TOPICS = 500
"""Number of topics T."""
N_BACKGROUND = 8
"""Number of shared background centroids."""
TOPICS_PER_PAGE = 3
"""Distinct topics K per page."""
DIRICHLET_ALPHA = 2.0
"""Concentration of the page's topic mixing weights (symmetric Dirichlet)."""
TOKENS_PER_PAGE = 750
"""Tokens per page."""
BACKGROUND_PROB = 0.30
"""Probability that a page token is a background token."""
VARIANT_NOISE = 0.35
"""Noise scale of a page-specific topic variant around its topic centroid."""
TOKEN_NOISE = 0.60
"""Noise scale of a topic token (page or query) around its page's topic variant."""
BACKGROUND_NOISE = 0.20
"""Noise scale of a background token around its background centroid."""
DENSE_DIM = 2048
"""Dimension of the dense page/query vector."""
DENSE_NOISE = 0.75
"""|e| / |W m| of the dense vector's noise."""
QUERY_TOKENS = 20
"""Tokens per query."""
QUERY_TARGET_POOL = 1000
"""Query targets are drawn from the first this-many pages."""

TOPIC_WORDS = 40
"""Pseudo-words in each topic's vocabulary (synthetic text)."""
COMMON_WORDS = 300
"""Words shared by all pages, drawn Zipf-like (synthetic text)."""
ZIPF_EXPONENT = 1.1
"""Common word of rank r has weight 1 / r^1.1."""
PAGE_WORDS = 150
"""Words of text per page."""
COMMON_PROB = 0.5
"""Probability that a page word is a common word rather than a topic word."""
CODE_PROB = 0.2
"""Share of pages that carry a product code."""

# Stream tags: each kind of draw gets its own family of seeded generators.
_GLOBAL, _PAGE_LAYOUT, _PAGE_TOKENS, _PAGE_DENSE, _QUERY, _VOCABULARY, _PAGE_TEXT, _QUERY_TEXT = range(8)
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Pages:
    """A batch of synthetic pages."""

    tokens: np.ndarray
    """Multivectors, float16 ``[N, 750, 128]``, every token unit-norm (before the float16 cast)."""
    dense: np.ndarray
    """Dense page vectors, float32 ``[N, 2048]``, unit-norm."""


@dataclass(frozen=True)
class Queries:
    """A batch of synthetic queries."""

    tokens: np.ndarray
    """Query multivectors, float32 ``[Q, 20, 128]``, unit-norm tokens."""
    dense: np.ndarray
    """Dense query vectors, float32 ``[Q, 2048]``, unit-norm."""
    targets: np.ndarray
    """Index of the page each query was drawn from, int64 ``[Q]`` (all < 1,000)."""


@dataclass(frozen=True)
class PageLayout:
    """What a page is made of, before its tokens are drawn."""

    topics: np.ndarray
    """The page's K distinct topic indices, int64 ``[3]``."""
    weights: np.ndarray
    """Mixing weights w_p over those topics, float64 ``[3]``, summing to 1."""
    variants: np.ndarray
    """Page-specific topic variants s_{p,k}, float32 ``[3, 128]``, unit-norm."""


def _normalize(x: np.ndarray) -> np.ndarray:
    """Scale the last axis to unit L2 norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class SyntheticCorpus:
    """The synthetic page model of ``bench-data.md`` for one seed.

    Shared state (topic centroids, background centroids, the dense projection W) is drawn once in
    the constructor; pages and queries are then pure functions of ``(seed, index)``.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        rng = np.random.default_rng([seed, _GLOBAL])
        self.topic_centroids: np.ndarray = _normalize(rng.standard_normal((N_TOPICS, DIM)))
        """Topic centroids c_t, float32 ``[500, 128]``, unit-norm."""
        self.background_centroids: np.ndarray = _normalize(rng.standard_normal((N_BACKGROUND, DIM)))
        """Background centroids b_j, float32 ``[8, 128]``, unit-norm."""
        self.projection: np.ndarray = (rng.standard_normal((DENSE_DIM, DIM)) / np.sqrt(DIM)).astype(np.float32)
        """The fixed dense projection W, float32 ``[2048, 128]``."""

    # ------------------------------------------------------------------ pages

    def layout(self, page: int) -> PageLayout:
        """The topics, mixing weights and topic variants of page ``page``."""
        rng = np.random.default_rng([self.seed, _PAGE_LAYOUT, page])
        topics = rng.choice(N_TOPICS, size=TOPICS_PER_PAGE, replace=False)
        weights = rng.dirichlet(np.full(TOPICS_PER_PAGE, DIRICHLET_ALPHA))
        g = rng.standard_normal((TOPICS_PER_PAGE, DIM)) / np.sqrt(DIM)
        variants = _normalize(self.topic_centroids[topics] + VARIANT_NOISE * g)
        return PageLayout(topics=topics, weights=weights, variants=variants)

    def page_tokens(self, page: int, layout: PageLayout | None = None) -> np.ndarray:
        """The 750 float16 tokens of page ``page``, ``[750, 128]``."""
        layout = self.layout(page) if layout is None else layout
        rng = np.random.default_rng([self.seed, _PAGE_TOKENS, page])
        is_background = rng.random(TOKENS_PER_PAGE) < BACKGROUND_PROB
        background = rng.integers(0, N_BACKGROUND, size=TOKENS_PER_PAGE)
        topic = rng.choice(TOPICS_PER_PAGE, size=TOKENS_PER_PAGE, p=layout.weights)
        g = rng.standard_normal((TOKENS_PER_PAGE, DIM), dtype=np.float32) * np.float32(1.0 / np.sqrt(DIM))
        centre = np.where(is_background[:, None], self.background_centroids[background], layout.variants[topic])
        scale = np.where(is_background, BACKGROUND_NOISE, TOKEN_NOISE).astype(np.float32)[:, None]
        return _normalize(centre + scale * g).astype(np.float16)

    def dense_vector(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """normalize(W m + e) for the tokens' mean m, |e| = 0.75 |W m| (float32 ``[2048]``)."""
        wm = self.projection @ tokens.astype(np.float32).mean(axis=0)
        e = rng.standard_normal(DENSE_DIM).astype(np.float32)
        e *= DENSE_NOISE * np.linalg.norm(wm) / np.linalg.norm(e)
        return _normalize(wm + e)

    def pages(self, n: int, start: int = 0) -> Pages:
        """Pages ``start .. start+n-1``: tokens ``[n,750,128]`` float16 and dense ``[n,2048]`` float32.

        Memory: 192,000 B of tokens per page (1.9 GB for 10,000 pages); generate in slices
        (``start=``) to stream larger corpora.
        """
        tokens = np.empty((n, TOKENS_PER_PAGE, DIM), dtype=np.float16)
        dense = np.empty((n, DENSE_DIM), dtype=np.float32)
        for i in range(n):
            p = start + i
            tokens[i] = self.page_tokens(p)
            dense[i] = self.dense_vector(tokens[i], np.random.default_rng([self.seed, _PAGE_DENSE, p]))
        return Pages(tokens=tokens, dense=dense)

    # ---------------------------------------------------------------- queries

    def queries(self, q: int, n_pages: int = QUERY_TARGET_POOL) -> Queries:
        """``q`` queries whose targets are among the first ``min(1000, n_pages)`` pages.

        For any ``n_pages >= 1000`` the queries are identical, so one query set serves 1k and
        10k corpora.
        """
        pool = min(QUERY_TARGET_POOL, n_pages)
        if pool <= 0:
            raise ValueError("n_pages must be positive")
        tokens = np.empty((q, QUERY_TOKENS, DIM), dtype=np.float32)
        dense = np.empty((q, DENSE_DIM), dtype=np.float32)
        targets = np.empty(q, dtype=np.int64)
        for i in range(q):
            rng = np.random.default_rng([self.seed, _QUERY, pool, i])
            target = int(rng.integers(0, pool))
            layout = self.layout(target)
            topic = rng.choice(TOPICS_PER_PAGE, size=QUERY_TOKENS, p=layout.weights)
            g = rng.standard_normal((QUERY_TOKENS, DIM)).astype(np.float32) / np.float32(np.sqrt(DIM))
            tokens[i] = _normalize(layout.variants[topic] + TOKEN_NOISE * g)
            dense[i] = self.dense_vector(tokens[i], rng)
            targets[i] = target
        return Queries(tokens=tokens, dense=dense, targets=targets)

    # ------------------------------------------------------------------- text

    @functools.cached_property
    def vocabulary(self) -> tuple[list[list[str]], list[str], np.ndarray]:
        """(topic vocabularies ``[500][40]``, common words ``[300]``, their Zipf probabilities)."""
        rng = np.random.default_rng([self.seed, _VOCABULARY])
        seen: set[str] = set()
        words: list[str] = []
        while len(words) < N_TOPICS * TOPIC_WORDS + COMMON_WORDS:
            syllables = rng.integers(2, 5)
            word = "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
                           for _ in range(syllables))  # fmt: skip
            if word not in seen:
                seen.add(word)
                words.append(word)
        topics = [words[t * TOPIC_WORDS : (t + 1) * TOPIC_WORDS] for t in range(N_TOPICS)]
        common = words[N_TOPICS * TOPIC_WORDS :]
        weights = 1.0 / np.arange(1, COMMON_WORDS + 1) ** ZIPF_EXPONENT
        return topics, common, weights / weights.sum()

    def page_code(self, page: int) -> str | None:
        """The product code page ``page`` carries (``AB-1234-C``), or None (80 % of pages)."""
        rng = np.random.default_rng([self.seed, _PAGE_TEXT, page, 1])
        if rng.random() >= CODE_PROB:
            return None
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        a, b, c = (letters[i] for i in rng.integers(0, len(letters), size=3))
        return f"{a}{b}-{int(rng.integers(0, 10_000)):04d}-{c}"

    def page_text(self, page: int) -> str:
        """The 150-word text of page ``page`` (its topics' words and common words, maybe a code)."""
        topics, common, zipf = self.vocabulary
        layout = self.layout(page)
        rng = np.random.default_rng([self.seed, _PAGE_TEXT, page, 0])
        is_common = rng.random(PAGE_WORDS) < COMMON_PROB
        common_pick = rng.choice(COMMON_WORDS, size=PAGE_WORDS, p=zipf)
        topic_pick = rng.choice(TOPICS_PER_PAGE, size=PAGE_WORDS, p=layout.weights)
        word_pick = rng.integers(0, TOPIC_WORDS, size=PAGE_WORDS)
        words = [common[common_pick[i]] if is_common[i] else topics[layout.topics[topic_pick[i]]][word_pick[i]]
                 for i in range(PAGE_WORDS)]  # fmt: skip
        code = self.page_code(page)
        if code:
            for at in sorted(rng.integers(0, PAGE_WORDS, size=2), reverse=True):
                words.insert(int(at), code)
        return " ".join(words)

    def texts(self, n: int, start: int = 0) -> list[str]:
        """The texts of pages ``start .. start+n-1``."""
        return [self.page_text(start + i) for i in range(n)]

    def query_texts(self, q: int, n_pages: int = QUERY_TARGET_POOL) -> list[str]:
        """The texts of :meth:`queries` ``(q, n_pages)``, each about the same target page."""
        topics, common, zipf = self.vocabulary
        pool = min(QUERY_TARGET_POOL, n_pages)
        texts = []
        for i in range(q):
            target = int(np.random.default_rng([self.seed, _QUERY, pool, i]).integers(0, pool))  # as queries()
            layout = self.layout(target)
            rng = np.random.default_rng([self.seed, _QUERY_TEXT, pool, i])
            code = self.page_code(target)
            typed = code is not None and i % 2 == 0
            n_topic = 1 if typed else 2
            picks = rng.choice(TOPICS_PER_PAGE, size=n_topic, p=layout.weights)
            words = [topics[layout.topics[k]][rng.integers(TOPIC_WORDS)] for k in picks]
            if typed:
                words.insert(0, code.lower().replace("-", " "))  # type: ignore[union-attr]
            else:
                words += [common[j] for j in rng.choice(COMMON_WORDS, size=2, p=zipf)]
            texts.append(" ".join(words))
        return texts


# ------------------------------------------------------------------- ground truth


def maxsim_scores(query_tokens: np.ndarray, page_tokens: np.ndarray) -> np.ndarray:
    """MaxSim of every query against every page: ``sum_i max_j <q_i, d_j>``.

    ``query_tokens`` ``[Q, Lq, D]``, ``page_tokens`` ``[N, Ld, D]`` (any float dtype);
    returns float32 ``[Q, N]``. Computes everything at once: use :func:`exact_maxsim_topk`
    for large corpora.
    """
    q = np.asarray(query_tokens, dtype=np.float32)
    n, ld, d = page_tokens.shape
    pages = np.asarray(page_tokens, dtype=np.float32).reshape(n * ld, d)
    sims = q.reshape(-1, d) @ pages.T  # [Q*Lq, N*Ld]
    return sims.reshape(q.shape[0], q.shape[1], n, ld).max(axis=3).sum(axis=1)


def exact_maxsim_topk(
    query_tokens: np.ndarray,
    page_tokens: np.ndarray,
    k: int = 10,
    *,
    max_chunk_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact MaxSim top-``k`` of every query over the whole corpus, in memory-bounded chunks.

    Args:
        query_tokens: ``[Q, Lq, D]`` or ``[Lq, D]`` (one query).
        page_tokens: ``[N, Ld, D]``, typically the float16 corpus.
        k: results per query (clipped to N).
        max_chunk_bytes: bound on the float32 similarity block and the float32 copy of a page
            chunk held at once.

    Returns:
        ``(ids, scores)``: int64 ``[Q, k]`` page indices and float32 ``[Q, k]`` MaxSim scores,
        best first (ties broken by lower page index).
    """
    q = np.asarray(query_tokens, dtype=np.float32)
    single = q.ndim == 2
    if single:
        q = q[None]
    n_q, lq, d = q.shape
    n, ld, d2 = page_tokens.shape
    if d != d2:
        raise ValueError(f"token dimensions differ: queries {d}, pages {d2}")
    k = min(k, n)
    per_page = max(n_q * lq * ld * 4, ld * d * 4)
    chunk = max(1, min(n, max_chunk_bytes // per_page))
    flat_q = q.reshape(n_q * lq, d)
    best_ids = np.empty((n_q, 0), dtype=np.int64)
    best_scores = np.empty((n_q, 0), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        block = np.asarray(page_tokens[lo:hi], dtype=np.float32).reshape((hi - lo) * ld, d)
        sims = flat_q @ block.T  # [Q*Lq, c*Ld]
        scores = sims.reshape(n_q, lq, hi - lo, ld).max(axis=3).sum(axis=1)  # [Q, c]
        ids = np.broadcast_to(np.arange(lo, hi, dtype=np.int64), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, ids], axis=1)
        if all_scores.shape[1] > k:
            keep = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
            all_scores = np.take_along_axis(all_scores, keep, axis=1)
            all_ids = np.take_along_axis(all_ids, keep, axis=1)
        best_scores, best_ids = all_scores, all_ids
    order = np.lexsort((best_ids, -best_scores), axis=1)
    best_ids = np.take_along_axis(best_ids, order, axis=1)
    best_scores = np.take_along_axis(best_scores, order, axis=1)
    if single:
        return best_ids[0], best_scores[0]
    return best_ids, best_scores


def recall_at_k(found: np.ndarray | list[list[int]], truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's exact top-``k`` that appears in its first ``k`` results."""
    hits = [len(set(list(f)[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = SyntheticCorpus(seed=args.seed)
    t0 = time.perf_counter()
    pages = corpus.pages(args.pages)
    t1 = time.perf_counter()
    queries = corpus.queries(args.queries, n_pages=args.pages)
    t2 = time.perf_counter()
    ids, _ = exact_maxsim_topk(queries.tokens, pages.tokens, k=10)
    t3 = time.perf_counter()
    target_rank1 = float(np.mean(ids[:, 0] == queries.targets))
    target_top10 = float(np.mean([t in row for t, row in zip(queries.targets, ids, strict=True)]))
    print(f"pages: {args.pages} in {t1 - t0:.2f} s ({args.pages / (t1 - t0):.0f} pages/s)")
    print(f"queries: {args.queries} in {t2 - t1:.3f} s")
    print(f"exact MaxSim top-10: {t3 - t2:.2f} s ({(t3 - t2) / args.queries / args.pages * 1e3:.4f} ms/query/page)")
    print(f"target page ranked first: {target_rank1:.2f}, in top-10: {target_top10:.2f}")


if __name__ == "__main__":
    main()
