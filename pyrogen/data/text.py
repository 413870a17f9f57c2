r"""Bag-of-words corpora: word-count vectors for topic models (replicated softmax, LDA).

``load_20news(split)`` gives the 20 Newsgroups corpus restricted to its 1,000 most
frequent words (11,256 training / 7,489 test documents, 20 labels), the version used by the
replicated-softmax paper's follow-ups (Srivastava, Salakhutdinov & Hinton 2013); files are
found like the image sets (``root``, ``$PYROGEN_DATA``, ``~/.cache/pyrogen``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from pyrogen.data.download import find_file
from pyrogen.data.registry import RemoteFile

#: No verified public address is known for this .mat file (Marlin's 1,000-word version of
#: 20news-bydate); place it in a data folder (``20news/20news_w1000.mat``).
NEWS_W1000 = RemoteFile(
    filename="20news/20news_w1000.mat",
    url=None,
    sha256="ccdbccc06d2981a9011eb4d515955e5083868e760fb26d4ca5602c433979e6c5",
)


@dataclass
class CountDataset(torch.utils.data.Dataset):
    """Documents as word-count vectors.

    :ivar data: ``(N, K)`` float32 tensor of counts.
    :ivar labels: ``(N,)`` int64 class labels (or ``None``).
    :ivar vocabulary: the ``K`` words, in column order.
    :ivar class_names: label names (or ``None``).
    """

    data: torch.Tensor
    labels: torch.Tensor | None
    vocabulary: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        return self.data[index]

    def __getitems__(self, indices) -> torch.Tensor:
        return self.data[torch.as_tensor(indices)]

    @property
    def lengths(self) -> torch.Tensor:
        """Document lengths :math:`D = \\sum_k v_k`."""
        return self.data.sum(-1)

    def tensor(self) -> torch.Tensor:
        return self.data

    def top_words(self, scores: torch.Tensor, n: int = 10) -> list[list[str]]:
        """The ``n`` highest-scoring words of each row of ``scores`` (``(R, K)``)."""
        idx = torch.as_tensor(scores).topk(n, dim=-1).indices
        return [[self.vocabulary[i] for i in row] for row in idx.tolist()]

    def __repr__(self) -> str:
        return (
            f"CountDataset({self.name!r}, split={self.split!r}, documents={len(self)}, "
            f"vocabulary={len(self.vocabulary)})"
        )


def _strings(cells) -> tuple[str, ...]:
    out = []
    for c in np.asarray(cells, dtype=object).ravel():
        while isinstance(c, np.ndarray):  # MATLAB cells nest arrays
            c = c.ravel()[0] if c.size else ""
        out.append(str(c))
    return tuple(out)


def load_20news(split: str = "train", root: str | os.PathLike | None = None, download=True):
    """20 Newsgroups, 1,000-word vocabulary, as a :class:`CountDataset`.

    :param split: ``"train"`` (11,256 documents) or ``"test"`` (7,489).
    :param root: data folder to search (see :func:`pyrogen.data.data_roots`).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: 20news has 'train' and 'test', got {split!r}")
    import scipy.io

    path = find_file(NEWS_W1000, root, download, dataset="20news")
    mat = scipy.io.loadmat(path)
    key = "trainW" if split == "train" else "testW"
    counts = torch.from_numpy(np.asarray(mat[key].todense(), dtype=np.float32))
    onehot = np.asarray(mat["trainC" if split == "train" else "testC"].todense())
    labels = torch.from_numpy(onehot.argmax(1).astype(np.int64))
    return CountDataset(
        data=counts,
        labels=labels,
        vocabulary=_strings(mat["vocab"]),
        class_names=_strings(mat["class_names"]),
        name="20news",
        split=split,
    )
