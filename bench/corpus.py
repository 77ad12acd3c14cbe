"""The language-model corpus: the Lee news corpus that the `gensim` package ships.

`gensim` (LGPL-2.1) installs `gensim/test/test_data/lee_background.cor`: 300 short English news
articles (one per line, about 60,000 words) from the Australian Broadcasting Corporation's news
service, collected by Lee, Pincombe and Welsh (2005) for their study of document similarity. The
file is located through the installed package's metadata, without importing gensim and without
any network access. Articles are split into train and test by position, words are lower-cased and
the vocabulary is the most frequent training words plus `<unk>` and `<eos>`.
"""

from __future__ import annotations

import collections
import re

import numpy as np

from bench.files import installed_file

PACKAGE = "gensim"
RELATIVE_PATH = "gensim/test/test_data/lee_background.cor"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,!?;:]")


def corpus_path() -> str:
    """Returns the path of the Lee corpus inside the installed `gensim` package.

    Raises:
        FileNotFoundError: If gensim is not installed or does not ship the file.
    """
    path = installed_file(PACKAGE, lambda name: name == RELATIVE_PATH)
    if path is not None:
        return path
    raise FileNotFoundError(
        f"The LSTM benchmark reads {RELATIVE_PATH} from the installed `{PACKAGE}` package, which "
        "was not found. Install the bench extra: pip install -e '.[bench]'"
    )


def articles() -> list[str]:
    """Returns the Lee corpus's 300 articles as they are written (not lower-cased)."""
    with open(corpus_path(), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_corpus(
    vocab_size: int = 2000, length: int = 20, test_articles: int = 30
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """Returns next-word training and test sequences from the Lee corpus.

    Args:
        vocab_size: Vocabulary size, `<unk>` and `<eos>` included. Defaults to 2000.
        length: Tokens per sequence. Defaults to 20.
        test_articles: How many of the last articles are held out for testing. Defaults to 30.

    Returns:
        `((x_train, y_train), (x_test, y_test), vocab_size)`: int32 arrays of shape
        `(rows, length)`, where `y` is `x` shifted by one token.
    """
    tokens = [_TOKEN.findall(article.lower()) for article in articles()]
    train, test = tokens[:-test_articles], tokens[-test_articles:]
    counts = collections.Counter(word for article in train for word in article)
    words = ["<unk>", "<eos>"] + [w for w, _ in counts.most_common(vocab_size - 2)]
    index = {w: i for i, w in enumerate(words)}

    def sequences(part):
        ids = [index.get(w, 0) for article in part for w in [*article, "<eos>"]]
        rows = (len(ids) - 1) // length
        ids = np.asarray(ids[: rows * length + 1], dtype="int32")
        return ids[:-1].reshape(rows, length), ids[1:].reshape(rows, length)

    return sequences(train), sequences(test), len(words)
