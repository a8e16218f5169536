"""Helpers shared by the world tests: the small config most of them use."""

from __future__ import annotations

from experiments.world.entities import WorldConfig

SMALL = WorldConfig(seed=3, n_pretrain=40, n_train=120, n_test=80, update_prob=0.5)
