"""Searching as of a time: only documents timestamped at or before it, found past better newer matches."""

from __future__ import annotations

import numpy as np

from storehelpers import doc, keyed


def test_the_search_looks_past_newer_better_matches_for_an_old_enough_one(make_store, rng):
    store = make_store(key_dim=8)
    target = rng.standard_normal(8).astype(np.float32)
    target /= np.linalg.norm(target)
    for i in range(40):                      # document 0 is old and matches worst; 39 newer ones match better
        key = target + (1.0 if i == 0 else 0.05) * rng.standard_normal(8).astype(np.float32)
        stamp = "2010-01-01T00:00:00+00:00" if i == 0 else "2020-01-01T00:00:00+00:00"
        store.add_document(doc(i, timestamp=stamp), [keyed((key / np.linalg.norm(key)).astype(np.float32))])
    store.add_document(doc(99), [keyed(target)])                        # no timestamp: never "as of" anything
    old = store.search_many(target[None], 2, with_text=True, as_of="2015-01-01T00:00:00+00:00")[0]
    assert [h.text for h in old] == [doc(0).text]
    assert len(store.search_many(target[None], 2, with_text=True)[0]) == 2
    assert store.search_many(target[None], 3, as_of="2000-01-01T00:00:00+00:00")[0] == []
    later = store.search_many(target[None], 50, with_text=True, as_of="2030-01-01T00:00:00+00:00")[0]
    assert len(later) == 40 and doc(99).text not in {h.text for h in later}
