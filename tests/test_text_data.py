"""Bag-of-words data: 20 Newsgroups (1,000 words)."""

import pytest
import torch
from conftest import requires_data

from pyrogen.data import DatasetNotFoundError, load_20news


@requires_data
@pytest.mark.parametrize("split, n", [("train", 11256), ("test", 7489)])
def test_20news_counts_labels_and_vocabulary(split, n):
    d = load_20news(split)
    assert d.data.shape == (n, 1000) and d.data.dtype == torch.float32
    assert torch.all(d.data >= 0) and torch.equal(d.data, d.data.round())
    assert d.lengths.min() >= 1  # every document has a word of the vocabulary
    assert d.labels.shape == (n,) and set(d.labels.unique().tolist()) == set(range(20))
    assert len(d.vocabulary) == 1000 and d.vocabulary[0] == "windows"
    assert d.class_names[0] == "alt.atheism" and len(d.class_names) == 20
    assert d.top_words(torch.eye(1000)[:2], n=1) == [["windows"], ["games"]]


def test_20news_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROGEN_NO_DOWNLOAD", "1")
    with pytest.raises(DatasetNotFoundError, match="20news/20news_w1000.mat"):
        load_20news("train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_20news("valid", root=tmp_path)
